"""The room keeper: makes one managed room match what its object says it must be.

    ensure(room)
      no room yet    create it from the plan under the alias reserved for its object; a taken
                     alias means an earlier attempt (or another process) made it: join it and
                     adopt it; an alias naming a room that was never made is freed, and the
                     room made again
      room exists    read its state once and put back what departs from the plan (power
                     levels last); read the object again, and repeat while another process
                     changed it meanwhile (the last writer's plan is the right one)
      members        invite whom the plan wants and lacks, remove whoever is not allowed;
                     managed accounts (policy.accounts) are joined at once, as the appservice
                     may act for them: nobody has to accept an invitation for them; an
                     invitation the invitee blocks (M_INVITE_BLOCKED) is recorded and told to
                     the marketplace, and tried again on the next repair (a new room invites
                     after createRoom, whose own invitations would fail it half-made)
      notices        post each of the room's notices once (recorded in bot_actions)

The same for transaction, dispute and moderation rooms (`bridge.market.rooms` says what each
must be). Every step is idempotent, so a call that failed half-way (the homeserver down) is
completed by the next. Homeserver failures propagate as `HomeserverUnavailable`/`MatrixError`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from appservice.matrix import HomeserverUnavailable, MatrixBot, MatrixError, txn_id
from bridge.runtime.clock import Clock
from policy.ids import RoomId, UserId
from policy.membership import strays
from policy.notices import Notice
from policy.rooms import RoomPlan, alias_localpart, departs_from_plan

from .records.audit import AuditEntry, AuditLog
from .records.blocked_invites import BlockedInvites
from .records.bot_actions import BotActions
from .rooms import ManagedRoom, RoomSpec

# How long a room an alias names may stay unknown before it counts as never made (Synapse
# writes a new room's first events right after taking its alias, normally within milliseconds).
UNMADE_ROOM_GRACE_SECONDS = 5.0
UNMADE_ROOM_POLL_SECONDS = 0.25


class RoomKeeper:
    def __init__(
        self,
        bot: MatrixBot,
        clock: Clock,
        audit: AuditLog,
        sent: BotActions,
        alias_prefix: str,
        domain: str,
        blocked: BlockedInvites,
        joins_directly: Callable[[UserId], bool] = lambda _: False,
    ) -> None:
        self._bot = bot
        self._clock = clock
        self._audit = audit
        self._sent = sent
        self._alias_prefix = alias_prefix
        self._domain = domain
        self._joins_directly = joins_directly
        self._blocked = blocked
        self._log = logging.getLogger("bridge.market.keeper")

    async def ensure(
        self, room: ManagedRoom, *, check_members: bool = False, changing: bool = False
    ) -> RoomSpec:
        """Make the room match its spec; the spec it ended with (its room id set).

        ``check_members`` also invites missing people and removes strays (a room just made
        from the plan needs neither its state nor its members checked; one adopted needs
        both). ``changing``: the caller changed what the room must be (a payment, a mute), so
        what is sent is that change; otherwise whatever is put back is audited as a repair.
        """
        spec = await room.spec()
        fresh = False
        if spec.room_id is None:
            room_id, fresh = await self._create_or_adopt(spec)
            await room.remember(room_id)
            if fresh:
                await self._audit.write(
                    AuditEntry(self._bot.user_id, "room.created", room_id, detail=spec.what)
                )
            spec, check_members = replace(spec, room_id=room_id), not fresh
        room_id = spec.room_id
        assert room_id is not None
        if not fresh and spec.holds_state:
            await self._ensure_state(room_id, spec.plan, changing=changing)
            while (latest := await room.spec()).plan != spec.plan:
                spec = replace(latest, room_id=room_id)
                await self._ensure_state(room_id, spec.plan, changing=changing)
            spec = replace(latest, room_id=room_id)
        if check_members:
            await self._ensure_members(spec, room_id)
        elif fresh:  # at once: each invitation is its own request, and none waits on another
            await asyncio.gather(
                *(self._admit(spec, room_id, u, fresh=True) for u in spec.plan.invitees)
            )
        await self.post_once(room_id, *spec.notices, fresh=fresh)
        return spec

    async def post_once(
        self, room_id: RoomId, *notices: tuple[str, Notice], fresh: bool = False
    ) -> None:
        """Post each notice the room has not had yet, recorded under its key in bot_actions
        (``fresh``: the room was just made, so it has had none)."""
        if not notices:
            return
        done = set() if fresh else await self._sent.done(room_id)
        for key, notice in notices:
            if key in done:
                continue
            # The txn id is derived from the key, so a resend after a crash is deduplicated.
            event_id = await self._bot.send_message(
                room_id, "m.room.message", notice.content(), txn_id("notice", key)
            )
            await self._sent.record(key, room_id, event_id)

    async def _create_or_adopt(self, spec: RoomSpec) -> tuple[RoomId, bool]:
        """The object's room, made from the plan (True), or the one its alias names if an
        earlier attempt made it (False; joined, so its state can be read and repaired)."""
        localpart = alias_localpart(self._alias_prefix, spec.kind, spec.key)
        alias = f"#{localpart}:{self._domain}"
        plan = spec.plan
        for _ in range(2):
            try:
                room_id = await self._bot.create_room(
                    alias_localpart=localpart,
                    name=plan.name,
                    topic=plan.topic,
                    room_version=spec.room_version,
                    power_levels=plan.power_levels,
                    initial_state=plan.initial_state(),
                )
            except MatrixError as e:
                if e.errcode != "M_ROOM_IN_USE":
                    raise
                found = await self._bot.resolve_alias(alias)
                if found is None:
                    raise HomeserverUnavailable(f"{alias} is taken but resolves to no room") from e
                if await self._join_when_made(found):
                    self._log.info("Adopted room %s of %s", found, spec.what)
                    return found, False
                self._log.warning("%s names %s, a room never made: replacing it", alias, found)
                await self._bot.delete_alias(alias)
                continue
            self._log.info("Created room %s for %s", room_id, spec.what)
            return room_id, True
        raise HomeserverUnavailable(f"{alias} was taken again while being replaced")

    async def _join_when_made(self, room_id: RoomId) -> bool:
        """Join a room an alias names; False if it stays unknown (404) for the grace period.

        Synapse takes a new room's alias before it writes the room's first events: another
        bridge process may be between the two, or a Synapse stopped there left a room never
        made, whose alias must be freed."""
        deadline = self._clock.monotonic() + UNMADE_ROOM_GRACE_SECONDS
        while True:
            try:
                await self._bot.join(room_id)
                return True
            except MatrixError as e:
                if e.status != 404:
                    raise
                if self._clock.monotonic() >= deadline:
                    return False
            await self._clock.sleep(UNMADE_ROOM_POLL_SECONDS)

    async def _ensure_state(self, room_id: RoomId, plan: RoomPlan, *, changing: bool) -> None:
        """Read the room's state once and put back every planned event that departs from it."""
        current = await self._bot.room_state(room_id)
        changed = []
        wanted: list[tuple[str, dict[str, Any]]] = [
            ("m.room.name", {"name": plan.name}),
            ("m.room.topic", {"topic": plan.topic}),
            *((event["type"], event["content"]) for event in plan.initial_state()),
        ]
        for event_type, content in wanted:
            if departs_from_plan(current.get(event_type), content):
                await self._bot.send_state(room_id, event_type, content)
                changed.append(event_type)
        # Power levels last: the bot may lower what it could still change before.
        levels = current.get("m.room.power_levels")
        if departs_from_plan(levels, plan.power_levels):
            content = {**(levels or {}), **plan.power_levels}
            await self._bot.send_state(room_id, "m.room.power_levels", content)
            changed.append("m.room.power_levels")
            self._log.info("Set the power levels of %s to the plan", room_id)
        if changed and not changing:
            await self._audit.write(
                AuditEntry(
                    actor=self._bot.user_id,
                    action="state.repaired",
                    room_id=room_id,
                    reason="the room departed from its plan",
                    detail=", ".join(changed),
                )
            )

    async def _admit(
        self, spec: RoomSpec, room_id: RoomId, user_id: UserId, *, fresh: bool = False
    ) -> None:
        """Invite the user, and join a managed account at once (``fresh``: into a room just
        made, where no refusal can be on record)."""
        try:
            await self._bot.invite(room_id, user_id)
        except MatrixError as e:
            if e.errcode != "M_INVITE_BLOCKED":
                raise
            about = {"room_kind": spec.kind.value, f"{spec.kind.value}_id": spec.key}
            if await self._blocked.record(room_id, user_id, about, self._clock.now_ms()):
                self._log.info("%s blocks invitations: not in %s", user_id, spec.what)
            return
        if not fresh:
            await self._blocked.clear(room_id, user_id)
        if self._joins_directly(user_id):
            await self._bot.join_as(room_id, user_id)

    async def _ensure_members(self, spec: RoomSpec, room_id: RoomId) -> None:
        """Invite whoever the plan wants and lacks; remove whoever is there and not allowed."""
        memberships = await self._bot.memberships(room_id)
        for user_id in spec.plan.invitees:
            membership = memberships.get(user_id)
            if membership not in ("invite", "join", "ban"):
                await self._admit(spec, room_id, user_id)
            elif membership == "invite" and self._joins_directly(user_id):
                await self._bot.join_as(room_id, user_id)
        allowed = spec.allowed
        for user_id in strays(memberships, allowed):
            reason = "not a party or an admin of this room"
            try:
                await self._bot.kick(room_id, user_id, reason)
            except MatrixError as e:
                # Gone meanwhile (a deactivated account leaves its rooms in the background).
                if e.status != 403 or user_id in strays(
                    await self._bot.memberships(room_id), allowed
                ):
                    raise
                continue
            await self._audit.write(
                AuditEntry(
                    actor=self._bot.user_id,
                    action="member.removed",
                    room_id=room_id,
                    subject=user_id,
                    reason=reason,
                    detail=f"was {memberships[user_id]}",
                )
            )
