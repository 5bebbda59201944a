"""Transaction use cases: create, pay, close, read; and keeping each room as its state says.

    API call -> lock the transaction -> decide (policy.states) -> store -> ensure the room:
        no room yet?   create it from the plan under its reserved alias; if the alias exists
                       (a retry after a failure, another process), adopt that room instead
        room exists?   read its state once, put back whatever departs from the plan
        notices        post each reached milestone's notice once (recorded in bot_actions)

Every step is idempotent, so a call that failed half-way (homeserver down: the API answers 503)
completes the same room when the marketplace retries, and `reconcile` on start repairs drift.
Homeserver failures propagate as `HomeserverUnavailable` or `MatrixError`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from html import escape
from itertools import chain
from typing import Any

from appservice.identifiers import server_of
from appservice.matrix import HomeserverUnavailable, MatrixBot, MatrixError
from bridge.api.models import CreateDisputeRequest, CreateTransactionRequest
from bridge.config.settings import Config
from bridge.market.audit import AuditEntry
from bridge.market.errors import MarketError
from bridge.market.records.transactions import (
    Chat,
    DisputeRecord,
    Party,
    Records,
    TransactionRecord,
    room_access,
    room_context,
)
from bridge.runtime.locks import KeyedLocks
from policy.membership import allowed_members, strays
from policy.notices import (
    Milestone,
    Notice,
    dispute_link_notice,
    dispute_opened_notice,
    dispute_resolved_notice,
    transaction_notice,
)
from policy.notifications import dispute_notification, state_notification
from policy.rooms import (
    Participants,
    RoomKind,
    RoomPlan,
    alias_localpart,
    departs_from_plan,
    plan_room,
)
from policy.states import (
    Access,
    DisputeState,
    InvalidTransition,
    Outcome,
    TransactionState,
    Transition,
    decide_close,
    decide_open_dispute,
    decide_payment,
    decide_resolve,
    dispute_access,
)

RECONCILE_CONCURRENCY = 8
# How long a room an alias names may stay unknown before it counts as never made (Synapse
# writes a new room's first events right after taking its alias, normally within milliseconds).
UNMADE_ROOM_GRACE_SECONDS = 5.0
UNMADE_ROOM_POLL_SECONDS = 0.25


class Market:
    def __init__(
        self,
        config: Config,
        records: Records,
        bot: MatrixBot,
        on_queued: Callable[[], None] = lambda: None,
    ) -> None:
        self._config = config
        self._records = records
        self._bot = bot
        self._on_queued = on_queued
        self._locks = KeyedLocks()
        self.management_room: str | None = None
        self._log = logging.getLogger("bridge.market")

    async def get(self, transaction_id: str) -> TransactionRecord:
        record = await self._records.get_transaction(transaction_id)
        if record is None:
            raise MarketError.not_found(f"no transaction {transaction_id}")
        return record

    async def create(self, request: CreateTransactionRequest) -> tuple[TransactionRecord, bool]:
        """The transaction and its room; True when this call created the transaction."""
        buyer = Party(request.buyer.user_id, request.buyer.matrix_id)
        seller = Party(request.seller.user_id, request.seller.matrix_id)
        async with self._locks.hold(request.transaction_id):
            if await self._records.get_transaction(request.transaction_id) is None:
                await self._check_parties(buyer, seller)
            record, created = await self._records.insert_transaction(
                request.transaction_id, request.title, buyer, seller, self._config.rooms.version
            )
            return await self._ensure_room(record), created

    async def record_payment(self, transaction_id: str) -> TransactionRecord:
        return await self._transition(
            transaction_id,
            "payment",
            lambda record: decide_payment(
                record.state, record.outcome, record.open_dispute is not None
            ),
        )

    async def close(self, transaction_id: str, outcome: Outcome) -> TransactionRecord:
        return await self._transition(
            transaction_id,
            outcome.value,
            lambda record: decide_close(
                record.state, record.outcome, outcome, record.open_dispute is not None
            ),
        )

    async def _transition(
        self,
        transaction_id: str,
        cause: str,
        decide: Callable[[TransactionRecord], Transition],
    ) -> TransactionRecord:
        async with self._locks.hold(transaction_id):
            while True:  # again only if another process changed the state meanwhile
                record = await self.get(transaction_id)
                try:
                    transition = decide(record)
                except InvalidTransition as e:
                    raise MarketError.invalid_state(str(e)) from None
                if not transition.changed:
                    break
                previous = self.access_for(record).value
                access = self.access_for(replace(record, state=transition.state)).value
                notification = state_notification(
                    room_context(record, self._bot.user_id, self._config.rooms.admins),
                    access,
                    previous,
                    cause,
                    int(time.time() * 1000),
                )
                audit = AuditEntry(
                    actor="marketplace",
                    action="room.state_changed",
                    room_id=record.room_id or "",
                    reason=cause,
                    detail=f"{record.state} -> {transition.state}; room {previous} -> {access}",
                    transaction_id=record.transaction_id,
                )
                applied = await self._records.apply_transition(
                    record,
                    transition,
                    notification,
                    audit,
                    self._config.webhooks.retry_for_seconds * 1000,
                )
                if applied is not None:
                    record = applied
                    self._on_queued()
                    break
            return await self._ensure_room(record, changing=True)

    async def chat_list(self, user_id: str) -> list[Chat] | None:
        return await self._records.chat_list(user_id)

    async def reconcile(self, *, active_only: bool = False) -> None:
        """Bring managed rooms back to their plans: state, power levels and members (missing
        ones invited, strays removed). On start every transaction and dispute (a room a
        failed call never made is made now); on schedule ``active_only``: the rooms of
        transactions not closed and of open disputes.

        A fixed pool of workers pulls from one iterator of ids: memory and event-loop time
        stay flat however many rooms there are (a task per room, or every record loaded at
        once, stalled the loop for seconds at 100,000 rooms; see docs/performance.md)."""
        jobs: Iterator[tuple[Callable[[str], Awaitable[None]], str]]
        if active_only:
            jobs = ((self.repair_room, room) for room in await self._records.active_rooms())
        else:
            transactions = await self._records.transaction_ids()
            disputes = await self._records.dispute_ids()
            jobs = chain(
                ((self._reconcile_transaction, t) for t in transactions),
                ((self._reconcile_dispute, d) for d in disputes),
            )
        if self.management_room is not None:
            jobs = chain(jobs, [(self.repair_room, self.management_room)])
        done = 0

        async def worker() -> None:
            nonlocal done
            for job, object_id in jobs:  # shared: each job is taken by one worker
                try:
                    await job(object_id)
                except (MarketError, HomeserverUnavailable, MatrixError) as e:
                    self._log.warning("Could not bring %s back to its plan: %s", object_id, e)
                done += 1

        await asyncio.gather(*(worker() for _ in range(RECONCILE_CONCURRENCY)))
        self._log.info("Compared %d rooms with their plans", done)

    async def repair_room(self, room_id: str, *, changing: bool = False) -> None:
        """Put one managed room back to its plan (what the policy bot does on drift);
        ``changing``: the plan itself changed (a mute), so this is no repair."""
        if room_id == self.management_room:
            await self._ensure_management_members(room_id)
        elif (record := await self._records.transaction_by_room(room_id)) is not None:
            await self._reconcile_transaction(record.transaction_id, changing=changing)
        elif (found := await self._records.dispute_by_room(room_id)) is not None:
            await self._reconcile_dispute(found[0].dispute_id, changing=changing)

    async def _reconcile_transaction(self, transaction_id: str, *, changing: bool = False) -> None:
        async with self._locks.hold(transaction_id):
            record = await self.get(transaction_id)
            await self._ensure_room(record, check_members=True, changing=changing)

    async def _reconcile_dispute(self, dispute_id: str, *, changing: bool = False) -> None:
        dispute = await self.get_dispute(dispute_id)
        async with self._locks.hold(dispute.transaction_id):
            dispute = await self.get_dispute(dispute_id)
            transaction = await self.get(dispute.transaction_id)
            await self._ensure_dispute_room(dispute, transaction, changing=changing)

    def access_for(self, record: TransactionRecord) -> Access:
        return room_access(record, self._config.disputes.freeze_transaction_room)

    # --- moderation -------------------------------------------------------------------------

    async def set_override(
        self, transaction_id: str, access: Access, actor: str
    ) -> TransactionRecord:
        """An admin's lock (Access.LOCKED) or unlock (Access.OPEN) of a transaction room."""
        async with self._locks.hold(transaction_id):
            record = await self.get(transaction_id)
            if record.state is TransactionState.CLOSED:
                raise MarketError.invalid_state("the transaction is closed; its room is archived")
            await self._records.set_override(transaction_id, access.value)
            updated = await self.get(transaction_id)
            await self._records.audit(
                AuditEntry(
                    actor=actor,
                    action="room.state_changed",
                    room_id=record.room_id or "",
                    reason="lock" if access is Access.LOCKED else "unlock",
                    detail=f"room {self.access_for(record)} -> {self.access_for(updated)}",
                    transaction_id=transaction_id,
                )
            )
            return await self._ensure_room(updated, changing=True)

    async def ensure_management_room(self) -> str | None:
        """The admins' room: configured, or created once by the bot and remembered."""
        configured = self._config.rooms.management_room
        room_id = configured or await self._records.setting("management_room")
        admins = tuple(self._config.rooms.admins)
        if room_id is None:
            if not admins:
                return None
            participants = Participants(bot=self._bot.user_id, parties=(), admins=admins)
            version = self._config.rooms.version
            plan = plan_room(
                RoomKind.MANAGEMENT, Access.OPEN, participants, version, "Marketplace moderation"
            )
            room_id, fresh = await self._create_or_adopt_room(
                RoomKind.MANAGEMENT, "room", version, plan
            )
            await self._records.set_setting("management_room", room_id)
            if fresh:
                await self._audit_created(room_id, "the moderation room")
            else:
                await self._ensure_management_members(room_id)
        else:
            await self._ensure_management_members(room_id)
        self.management_room = room_id
        return room_id

    async def _ensure_management_members(self, room_id: str) -> None:
        participants = Participants(
            bot=self._bot.user_id, parties=(), admins=tuple(self._config.rooms.admins)
        )
        await self._ensure_members(
            room_id, participants.admins, allowed_members(RoomKind.MANAGEMENT, participants)
        )

    async def announce(self, key: str, text: str) -> None:
        """Tell the admins in their room (once per key); quiet when there is no such room."""
        if self.management_room is None:
            return
        await self._post_notice(
            self.management_room, f"announce:{key}", Notice(text, escape(text))
        )

    async def remove_member(self, user_id: str, object_id: str, actor: str) -> str:
        """Kick someone who is not a party from a transaction's or dispute's room."""
        record = await self._records.get_transaction(object_id)
        dispute = None if record else await self._records.get_dispute(object_id)
        if dispute is not None:
            record = await self.get(dispute.transaction_id)
        if record is None:
            raise MarketError.not_found(f"no transaction or dispute {object_id}")
        if user_id in (record.buyer.matrix_id, record.seller.matrix_id, self._bot.user_id):
            raise MarketError.invalid_state("parties and the bot stay while the deal lasts")
        room_id = dispute.room_id if dispute else record.room_id
        if room_id is None:
            raise MarketError.invalid_state(f"{object_id} has no room yet")
        reason = "removed by the marketplace's admins"
        await self._bot.kick(room_id, user_id, reason)
        await self._records.audit(
            AuditEntry(
                actor=actor,
                action="member.removed",
                room_id=room_id,
                subject=user_id,
                reason=reason,
            )
        )
        return room_id

    def _participants(self, record: TransactionRecord) -> Participants:
        return Participants(
            bot=self._bot.user_id,
            parties=(record.buyer.matrix_id, record.seller.matrix_id),
            admins=tuple(self._config.rooms.admins),
        )

    async def _muted(self, room_id: str | None) -> tuple[str, ...]:
        if room_id is None:
            return ()
        return await self._records.muted(room_id, int(time.time() * 1000))

    async def plan_for(self, record: TransactionRecord) -> RoomPlan:
        participants = self._participants(record)
        plan = plan_room(
            RoomKind.TRANSACTION,
            self.access_for(record),
            participants,
            record.room_version,
            record.title,
            await self._muted(record.room_id),
        )
        if record.open_dispute is not None:
            # Admins join the transaction room to read its history as evidence.
            plan = replace(plan, invitees=plan.invitees + participants.admins)
        return plan

    # --- disputes ---------------------------------------------------------------------------

    async def get_dispute(self, dispute_id: str) -> DisputeRecord:
        dispute = await self._records.get_dispute(dispute_id)
        if dispute is None:
            raise MarketError.not_found(f"no dispute {dispute_id}")
        return dispute

    async def open_dispute(self, request: CreateDisputeRequest) -> tuple[DisputeRecord, bool]:
        """The dispute and its room; True when this call opened it."""
        async with self._locks.hold(request.transaction_id):
            transaction = await self.get(request.transaction_id)
            existing = await self._records.get_dispute(request.dispute_id)
            if existing is None:
                try:
                    decide_open_dispute(transaction.state, transaction.open_dispute)
                except InvalidTransition as e:
                    raise MarketError.invalid_state(str(e)) from None
            # dispute.* notifications belong to the transaction room's stream and context.
            context = room_context(transaction, self._bot.user_id, self._config.rooms.admins)
            notification = dispute_notification(
                replace(context, dispute_id=request.dispute_id),
                "dispute.opened",
                {"reason": request.reason, "opened_by": request.opened_by},
                int(time.time() * 1000),
            )
            dispute, created = await self._records.insert_dispute(
                request.dispute_id,
                transaction,
                request.reason,
                request.opened_by,
                notification,
                AuditEntry(
                    actor="marketplace",
                    action="dispute.opened",
                    room_id=transaction.room_id or "",
                    reason=request.reason,
                    detail=f"opened by the {request.opened_by}",
                    transaction_id=transaction.transaction_id,
                    dispute_id=request.dispute_id,
                ),
                self._config.webhooks.retry_for_seconds * 1000,
            )
            if created:
                self._on_queued()
                await self.announce(
                    f"dispute:{dispute.dispute_id}",
                    f"Dispute {dispute.dispute_id} opened by the {dispute.opened_by} on "
                    f"transaction {transaction.transaction_id} (“{transaction.title}”): "
                    f"{dispute.reason}",
                )
            transaction = await self.get(request.transaction_id)
            dispute = await self._ensure_dispute_room(dispute, transaction)
            transaction = await self._ensure_room(transaction, check_members=True, changing=True)
            if dispute.state is DisputeState.OPEN and transaction.room_id and dispute.room_id:
                await self._post_notice(
                    transaction.room_id,
                    f"transaction:{transaction.transaction_id}:notice:dispute:{dispute.dispute_id}",
                    dispute_link_notice(dispute.room_id),
                )
            return dispute, created

    async def resolve_dispute(
        self, dispute_id: str, decision: str, note: str, resolved_by: str, source: str
    ) -> DisputeRecord:
        if decision not in self._config.disputes.decisions:
            raise MarketError.invalid_param(
                "decision: must be one of " + ", ".join(self._config.disputes.decisions),
                fields=["decision"],
            )
        dispute = await self.get_dispute(dispute_id)
        async with self._locks.hold(dispute.transaction_id):
            while True:  # again only if another process resolved it meanwhile
                dispute = await self.get_dispute(dispute_id)
                try:
                    changed = decide_resolve(dispute.state, dispute.decision, decision)
                except InvalidTransition as e:
                    raise MarketError.invalid_state(str(e)) from None
                if not changed:
                    break
                transaction = await self.get(dispute.transaction_id)
                context = room_context(transaction, self._bot.user_id, self._config.rooms.admins)
                details = {
                    "decision": decision,
                    "note": note,
                    "resolved_by": resolved_by,
                    "source": source,
                }
                notification = dispute_notification(
                    replace(context, dispute_id=dispute.dispute_id),
                    "dispute.resolved",
                    details,
                    int(time.time() * 1000),
                )
                resolved = await self._records.resolve_dispute(
                    dispute,
                    decision,
                    note,
                    resolved_by,
                    source,
                    notification,
                    AuditEntry(
                        actor=resolved_by,
                        action="dispute.resolved",
                        room_id=dispute.room_id or "",
                        reason=decision,
                        detail=note,
                        transaction_id=transaction.transaction_id,
                        dispute_id=dispute.dispute_id,
                    ),
                    transaction.room_id or f"transaction:{transaction.transaction_id}",
                    self._config.webhooks.retry_for_seconds * 1000,
                )
                if resolved is not None:
                    dispute = resolved
                    self._on_queued()
                    break
            transaction = await self.get(dispute.transaction_id)
            dispute = await self._ensure_dispute_room(dispute, transaction, changing=True)
            await self._ensure_room(transaction, changing=True)
            return dispute

    async def _ensure_dispute_room(
        self,
        dispute: DisputeRecord,
        transaction: TransactionRecord,
        *,
        check_members: bool = True,
        changing: bool = False,
    ) -> DisputeRecord:
        participants = self._participants(transaction)
        plan = plan_room(
            RoomKind.DISPUTE,
            dispute_access(dispute.state),
            participants,
            dispute.room_version,
            transaction.title,
            await self._muted(dispute.room_id),
        )
        fresh = False
        if dispute.room_id is None:
            room_id, fresh = await self._create_or_adopt_room(
                RoomKind.DISPUTE, dispute.dispute_id, dispute.room_version, plan
            )
            dispute = await self._records.set_dispute_room(dispute.dispute_id, room_id)
            if fresh:
                await self._audit_created(room_id, f"dispute {dispute.dispute_id}")
        assert dispute.room_id is not None
        if not fresh:
            await self._ensure_state(dispute.room_id, plan, changing=changing)
            if check_members:
                allowed = allowed_members(RoomKind.DISPUTE, participants)
                await self._ensure_members(dispute.room_id, plan.invitees, allowed)
        key = f"dispute:{dispute.dispute_id}:notice"
        await self._post_notice(
            dispute.room_id,
            key + ":opened",
            dispute_opened_notice(
                transaction.title, transaction.transaction_id, dispute.reason, dispute.opened_by
            ),
        )
        if dispute.state is DisputeState.RESOLVED:
            await self._post_notice(
                dispute.room_id,
                key + ":resolved",
                dispute_resolved_notice(dispute.decision or "", dispute.note or ""),
            )
        return dispute

    async def _check_parties(self, *parties: Party) -> None:
        servers = self._config.party_servers
        for role, party in zip(("buyer", "seller"), parties, strict=True):
            field = f"{role}.matrix_id"
            if server_of(party.matrix_id) not in servers:
                raise MarketError.invalid_param(
                    f"{field}: {party.matrix_id} is not on an allowed server", fields=[field]
                )
            if party.matrix_id == self._bot.user_id:
                raise MarketError.invalid_param(
                    f"{field}: the bot cannot be a party", fields=[field]
                )
        # Both lookups at once: they are the only homeserver calls before the room is made.
        exists = await asyncio.gather(*(self._bot.user_exists(p.matrix_id) for p in parties))
        for role, party, found in zip(("buyer", "seller"), parties, exists, strict=True):
            if not found:
                field = f"{role}.matrix_id"
                raise MarketError.invalid_param(
                    f"{field}: {party.matrix_id} does not exist on the homeserver", fields=[field]
                )

    async def _ensure_room(
        self, record: TransactionRecord, *, check_members: bool = False, changing: bool = False
    ) -> TransactionRecord:
        """Make the room match the record. ``check_members`` also invites missing parties and
        removes strays (a room just created from the plan needs neither its state nor its
        members checked). ``changing``: this call changed the room's access, so what it sends
        is that change; otherwise whatever is put back is audited as a repair."""
        plan = await self.plan_for(record)
        fresh = False
        if record.room_id is None:
            room_id, fresh = await self._create_or_adopt_room(
                RoomKind.TRANSACTION, record.transaction_id, record.room_version, plan
            )
            record = await self._records.set_room(record.transaction_id, room_id)
            if fresh:
                await self._audit_created(room_id, f"transaction {record.transaction_id}")
            check_members = not fresh  # an adopted room may lack its invites
        assert record.room_id is not None
        if not fresh:
            await self._ensure_state(record.room_id, plan, changing=changing)
            # Another bridge process may have changed the transaction while this one wrote the
            # room's state from an older record, and written first: whoever reads the change
            # after writing puts the room to the latest access (the last writer's is right).
            while (
                latest := await self._records.get_transaction(record.transaction_id)
            ) is not None and self.access_for(latest) is not self.access_for(record):
                record = latest
                plan = await self.plan_for(record)
                await self._ensure_state(record.room_id, plan, changing=changing)
        if check_members:
            allowed = allowed_members(RoomKind.TRANSACTION, self._participants(record))
            await self._ensure_members(record.room_id, plan.invitees, allowed)
        await self._ensure_notices(record)
        return record

    async def _create_or_adopt_room(
        self, kind: RoomKind, object_id: str, room_version: str, plan: RoomPlan
    ) -> tuple[str, bool]:
        """The object's room: made from the plan, or the one its alias names if an earlier
        attempt made it (joined, so its state can be read and repaired)."""
        localpart = alias_localpart(self._config.appservice.alias_prefix, kind, object_id)
        alias = f"#{localpart}:{self._config.homeserver.domain}"
        for _ in range(2):
            try:
                room_id = await self._bot.create_room(
                    alias_localpart=localpart,
                    name=plan.name,
                    topic=plan.topic,
                    room_version=room_version,
                    power_levels=plan.power_levels,
                    initial_state=plan.initial_state(),
                    invitees=plan.invitees,
                )
            except MatrixError as e:
                if e.errcode != "M_ROOM_IN_USE":
                    raise
                room_id = await self._bot.resolve_alias(alias)
                if room_id is None:
                    raise HomeserverUnavailable(f"{alias} is taken but resolves to no room") from e
                if await self._join_when_made(room_id):
                    self._log.info("Adopted room %s of %s %s", room_id, kind, object_id)
                    return room_id, False
                self._log.warning("%s names %s, a room never made: replacing it", alias, room_id)
                await self._bot.delete_alias(alias)
                continue
            self._log.info("Created room %s for %s %s", room_id, kind, object_id)
            return room_id, True
        raise HomeserverUnavailable(f"{alias} was taken again while being replaced")

    async def _join_when_made(self, room_id: str) -> bool:
        """Join a room an alias names; False if it stays unknown (404) for the grace period.

        Synapse takes a new room's alias before it writes the room's first events: another
        bridge process may be between the two, or a Synapse stopped there left a room never
        made, whose alias must be freed."""
        deadline = time.monotonic() + UNMADE_ROOM_GRACE_SECONDS
        while True:
            try:
                await self._bot.join(room_id)
                return True
            except MatrixError as e:
                if e.status != 404:
                    raise
                if time.monotonic() >= deadline:
                    return False
            await asyncio.sleep(UNMADE_ROOM_POLL_SECONDS)

    async def _ensure_state(self, room_id: str, plan: RoomPlan, *, changing: bool) -> None:
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
            await self._records.audit(
                AuditEntry(
                    actor=self._bot.user_id,
                    action="state.repaired",
                    room_id=room_id,
                    reason="the room departed from its plan",
                    detail=", ".join(changed),
                )
            )

    async def _ensure_members(
        self, room_id: str, invitees: tuple[str, ...], allowed: frozenset[str]
    ) -> None:
        """Invite whoever the plan wants and lacks; remove whoever is there and not allowed."""
        memberships = await self._bot.memberships(room_id)
        for user_id in invitees:
            if memberships.get(user_id) not in ("invite", "join", "ban"):
                await self._bot.invite(room_id, user_id)
        for user_id in strays(memberships, allowed):
            reason = "not a party or an admin of this room"
            await self._bot.kick(room_id, user_id, reason)
            await self._records.audit(
                AuditEntry(
                    actor=self._bot.user_id,
                    action="member.removed",
                    room_id=room_id,
                    subject=user_id,
                    reason=reason,
                    detail=f"was {memberships[user_id]}",
                )
            )

    async def _audit_created(self, room_id: str, what: str) -> None:
        await self._records.audit(
            AuditEntry(
                actor=self._bot.user_id, action="room.created", room_id=room_id, detail=what
            )
        )

    async def _ensure_notices(self, record: TransactionRecord) -> None:
        assert record.room_id is not None
        reached = [Milestone.CREATED]
        if record.paid_at is not None:
            reached.append(Milestone.PAID)
        if record.state is TransactionState.CLOSED:
            reached.append(Milestone.CLOSED)
        for milestone in reached:
            await self._post_notice(
                record.room_id,
                f"transaction:{record.transaction_id}:notice:{milestone.value}",
                transaction_notice(milestone, record.title, record.outcome),
            )

    async def _post_notice(self, room_id: str, key: str, notice: Notice) -> None:
        """Post a notice once: recorded under ``key`` in bot_actions once sent."""
        if key in await self._records.done_actions(room_id):
            return
        # The txn id is derived from the key, so a resend after a crash is deduplicated.
        txn_id = "notice-" + hashlib.sha256(key.encode()).hexdigest()[:32]
        event_id = await self._bot.send_message(
            room_id, "m.room.message", notice.content(), txn_id
        )
        await self._records.record_action(key, room_id, event_id)
