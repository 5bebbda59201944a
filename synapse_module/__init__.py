"""The marketplace's Synapse module: the homeserver refuses what would get around the lock.

Loaded by Synapse (``modules:`` in homeserver.yaml; `make run` and `generate-deployment` write
the entry from the bridge's config). Every decision is a pure function of `policy`
(`policy.lockdown`, `policy.rules`, `policy.delivery`, `policy.masking`, `policy.channels`,
`policy.uploads`); this file only adapts Synapse's callbacks to them:

    user_may_create_room / user_may_invite / ..._alias / ..._publish -> Lockdown.may_*
    check_event_for_spam (before_delivery refuse or mask) -> a managed room's access from its
        power levels -> policy.rules.judge_event -> refused with the rules' names, or let
        through (in mask mode, contact details are left to the masking below)
    check_event_allowed (third-party rules, before the event is stored)
        a party's own membership in a managed room -> its reason and extra keys dropped
        a party's message in mask mode -> contact details masked (the original kept for the
        bot, synapse_module/originals.py); a marker key a client set itself is dropped
    check_media_file_for_spam -> the whole file judged (policy.uploads), off the main thread
    is_user_allowed_to_upload_media_of_size -> parties' size limit
    GET /_synapse/client/marketplace/user_exists?user=... -> for the bot only: whether a
        local user exists (profile lookups are limited to users who share a room, so the
        bridge has no other way to refuse a mistyped Matrix ID)
    GET /_synapse/client/marketplace/masked?id=... -> for the bot only: a masked original
    /_synapse/client/marketplace/account, .../sessions and .../deactivate -> for the bot
        only: managed accounts' profiles, sign-in links, sessions and erasure
        (synapse_module/accounts.py)
    POST /_synapse/client/marketplace/rooms/purge -> for the bot only: a room it created
        removed for good (members out, room blocked, history purged; synapse_module/rooms.py)

Judging and masking run in Synapse's thread pool, so a long message never holds the main
thread. Synapse's media callback sees only the bytes (not the uploader), so the type
allow-list here is global: a party's upload is judged again, with its text, by the client
gateway (bridge/gateway/). It needs only the standard library, `policy` and Synapse itself.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Mapping
from typing import Any

from synapse.module_api import NOT_SPAM, DirectServeJsonResource, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from policy.channels import own_membership_content
from policy.delivery import BeforeDelivery, refused_for
from policy.lockdown import Lockdown, access_from_power_levels, is_managed_room, lockdown_from
from policy.masking import MASKED_KEY, mask_content
from policy.messages import shown_body
from policy.rules import (
    ACROSS_MESSAGES,
    ACROSS_WINDOW_MS,
    MALFORMED,
    ContentRules,
    Rule,
    content_rules_from,
    judge_event,
)
from policy.states import Access
from policy.uploads import judge_upload

from .accounts import (
    ACCOUNT_PATH,
    DEACTIVATE_PATH,
    SESSIONS_PATH,
    AccountResource,
    DeactivateResource,
    SessionsResource,
)
from .originals import MASKED_PATH, Originals, OriginalsResource
from .rooms import PURGE_PATH, RoomPurgeResource

log = logging.getLogger("synapse_module")

# Uploads are judged whole up to this size; a larger one is refused (parties' limit is far
# below it; the bot's transcripts too).
_MAX_UPLOAD_BYTES = 64 * 1024 * 1024
USER_EXISTS_PATH = "/_synapse/client/marketplace/user_exists"


class MarketplaceModule:
    def __init__(self, config: dict[str, Any], api: ModuleApi) -> None:
        self._api = api
        self._lockdown: Lockdown = config["lockdown"]
        self._rules: ContentRules = config["rules"]
        self._mode: BeforeDelivery = config["before_delivery"]
        self._originals = Originals(api)
        self._recent = RecentBodies()
        judging = self._mode is not BeforeDelivery.OFF
        api.register_spam_checker_callbacks(
            user_may_create_room=self.user_may_create_room,
            user_may_invite=self.user_may_invite,
            user_may_create_room_alias=self.user_may_create_room_alias,
            user_may_publish_room=self.user_may_publish_room,
            check_event_for_spam=self.check_event_for_spam if judging else None,
            check_media_file_for_spam=self.check_media_file_for_spam,
        )
        api.register_third_party_rules_callbacks(check_event_allowed=self.check_event_allowed)
        api.register_media_repository_callbacks(
            is_user_allowed_to_upload_media_of_size=self.is_user_allowed_to_upload_media_of_size
        )
        bot = self._lockdown.bot
        api.register_web_resource(USER_EXISTS_PATH, UserLookup(api, bot))
        api.register_web_resource(MASKED_PATH, OriginalsResource(api, self._originals, bot))
        prefix = config["managed_prefix"]
        api.register_web_resource(ACCOUNT_PATH, AccountResource(api, bot, prefix))
        api.register_web_resource(SESSIONS_PATH, SessionsResource(api, bot, prefix))
        api.register_web_resource(
            DEACTIVATE_PATH, DeactivateResource(api, bot, prefix, self._originals)
        )
        api.register_web_resource(PURGE_PATH, RoomPurgeResource(api, bot, self._originals))

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, Any]:
        """Fail Synapse's start on a bad config, naming the key."""
        try:
            mode = config.get("before_delivery")
            if mode is None:  # the setting's former name, a boolean
                mode = "refuse" if config.get("reject_before_delivery") else "off"
            return {
                "lockdown": lockdown_from(config),
                "rules": content_rules_from(config["policy"]),
                "before_delivery": BeforeDelivery(mode),
                "managed_prefix": str(config.get("managed_prefix", "market_")),
            }
        except (KeyError, TypeError, ValueError) as e:
            raise Exception(f"synapse_module: invalid config: {e!r}") from e

    async def user_may_create_room(self, user_id: str, *_: Any) -> Any:
        if self._lockdown.may_create_room(user_id):
            return NOT_SPAM
        return Codes.FORBIDDEN, {"error": "Only the marketplace creates rooms on this server."}

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Any:
        if self._lockdown.may_invite(inviter):
            return NOT_SPAM
        return Codes.FORBIDDEN, {"error": "Only the marketplace invites people on this server."}

    async def user_may_create_room_alias(self, user_id: str, alias: Any) -> Any:
        return NOT_SPAM if self._lockdown.may_create_room(user_id) else Codes.FORBIDDEN

    async def user_may_publish_room(self, user_id: str, room_id: str) -> Any:
        return NOT_SPAM if self._lockdown.may_create_room(user_id) else Codes.FORBIDDEN

    def _party(self, sender: str) -> bool:
        """A local user the rules apply to (federation is off; the bot and admins exempt)."""
        return self._api.is_mine(sender) and not self._lockdown.exempt(sender)

    async def check_event_for_spam(self, event: Any) -> Any:
        """A party's event in a managed room that breaks a content rule never gets in (but
        contact details, in mask mode: they are masked instead)."""
        if event.is_state() or not self._party(event.sender):
            return NOT_SPAM
        state = await self._api.get_room_state(
            event.room_id, [("m.room.create", ""), ("m.room.power_levels", "")]
        )
        access = self._managed_access(state)
        if access is None:
            return NOT_SPAM
        # In mask mode a number split across messages is masked by check_event_allowed, which
        # keeps the sender's recent bodies; here (refuse mode) this callback keeps them.
        refusing = self._mode is BeforeDelivery.REFUSE
        verdict = await self._api.defer_to_thread(
            judge_event,
            event.type,
            event.content,
            self._rules,
            access,
            transaction_closed=False,  # a closed transaction's room is archived: nobody posts
            recent_messages=0,  # the flood rule needs history: the bridge's bot keeps it
            muted=False,
            earlier=self._recent.before(event) if refusing else (),
        )
        rules = refused_for(verdict, self._mode)
        if not rules:
            if refusing:
                self._recent.add(event, event.content)
            return NOT_SPAM
        log.info("Refused %s from %s in %s: %s", event.type, event.sender, event.room_id, rules)
        # The rules' own sentences: nothing of what the sender wrote.
        reason = "; ".join(v.reason for v in verdict.violations if v.rule.value in rules)
        return Codes.FORBIDDEN, {"error": f"Not sent: {reason}.", "org.marketplace.rules": rules}

    async def check_event_allowed(
        self, event: Any, state_events: Mapping[tuple[str, str], Any]
    ) -> tuple[bool, dict[str, Any] | None]:
        """Rewrite a party's event in a managed room before it is stored (see the module's
        docstring); everything else is left as it is."""
        if not self._party(event.sender) or self._managed_access(state_events) is None:
            return True, None
        replacement = event.get_dict()  # plain JSON values, to change and hand back
        content = replacement["content"]
        if event.type == "m.room.member":
            if event.state_key != event.sender:
                return True, None
            cleaned = own_membership_content(content)
            return True, ({**replacement, "content": cleaned} if cleaned != content else None)
        if event.is_state():
            return True, None
        forged = content.pop(MASKED_KEY, None) is not None  # only the module sets it
        access = self._managed_access(state_events)
        if self._mode is BeforeDelivery.MASK and self._rules.applies(Rule.CONTACT_DETAILS, access):
            earlier = self._recent.before(event)
            self._recent.add(event, content)
            try:
                masked = await self._api.defer_to_thread(
                    mask_content, content, self._rules, earlier
                )
            except Exception as e:  # never a pass: refused as the malformed-content rule says
                log.exception("Could not mask an event from %s in %s", event.sender, event.room_id)
                reason = f"Not sent: {MALFORMED.reason}."
                raise SynapseError(403, reason, Codes.FORBIDDEN) from e
            if masked is not None:
                mask_id = secrets.token_urlsafe(18)
                await self._originals.keep(mask_id, event.room_id, event.sender, content)
                masked[MASKED_KEY] = {"rules": [Rule.CONTACT_DETAILS.value], "id": mask_id}
                log.info("Masked contact details in %s from %s", event.room_id, event.sender)
                return True, {**replacement, "content": masked}
        return True, (replacement if forged else None)

    def _managed_access(self, state: Mapping[tuple[str, str], Any]) -> Access | None:
        """The access of a room the bot manages, from its state; None for any other room."""
        create = state.get(("m.room.create", ""))
        if create is None or not is_managed_room(create.sender, self._lockdown.bot):
            return None
        levels = state.get(("m.room.power_levels", ""))
        return access_from_power_levels(levels.content if levels else None)

    async def check_media_file_for_spam(self, file_wrapper: Any, file_info: Any) -> Any:
        """Uploads (and Synapse's thumbnails) are judged whole, by their bytes."""
        chunks: list[bytes] = []
        size = 0

        def collect(chunk: bytes) -> None:
            nonlocal size
            if size <= _MAX_UPLOAD_BYTES:
                chunks.append(chunk)
            size += len(chunk)

        await file_wrapper.write_chunks_to(collect)
        if size > _MAX_UPLOAD_BYTES:
            return Codes.FORBIDDEN, {"error": "This file is too large."}
        refusal = await self._api.defer_to_thread(
            judge_upload, b"".join(chunks), self._lockdown.upload_types, None
        )
        if refusal is None:
            return NOT_SPAM
        return Codes.FORBIDDEN, {"error": f"Not uploaded. {refusal}"}

    async def is_user_allowed_to_upload_media_of_size(self, user_id: str, size: int) -> bool:
        return self._lockdown.may_upload(user_id, size)


class UserLookup(DirectServeJsonResource):
    """Whether a local user exists, answered to the bot alone (`{"exists": bool}`)."""

    def __init__(self, api: ModuleApi, bot: str) -> None:
        super().__init__()
        self._api = api
        self._bot = bot

    async def _async_render_GET(self, request: Any) -> tuple[int, dict[str, Any]]:
        requester = await self._api.get_user_by_req(request)
        if requester.user.to_string() != self._bot:
            raise SynapseError(403, "Only the marketplace's bot may ask", Codes.FORBIDDEN)
        values = request.args.get(b"user") or [b""]
        user_id = values[0].decode("utf-8", "replace")
        if not user_id.startswith("@") or not self._api.is_mine(user_id):
            raise SynapseError(400, "user: a local Matrix user ID", Codes.INVALID_PARAM)
        return 200, {"exists": await self._api.check_user_exists(user_id) is not None}


class RecentBodies:
    """The last few message bodies of each sender in each room, in this process's memory, so
    a number split across consecutive messages is judged whole (policy.rules.ACROSS_*).

    Bounded: at most ``ACROSS_MESSAGES`` bodies per sender and room, and ``MAX_KEYS`` senders
    and rooms, the least recently active forgotten first. A restart forgets them all: the
    bridge's bot, which reads the room's history, still redacts what this misses."""

    MAX_KEYS = 10_000

    def __init__(self) -> None:
        self._bodies: OrderedDict[tuple[str, str], deque[tuple[int, str]]] = OrderedDict()

    def before(self, event: Any) -> list[str]:
        """The sender's bodies in this room in the window before ``event``, oldest first."""
        recent = self._bodies.get((event.room_id, event.sender), ())
        since = event.origin_server_ts - ACROSS_WINDOW_MS
        return [body for ts, body in recent if since <= ts <= event.origin_server_ts]

    def add(self, event: Any, content: Mapping[str, Any]) -> None:
        body = shown_body(content)
        if not body:
            return
        key = (event.room_id, event.sender)
        recent = self._bodies.pop(key, None) or deque(maxlen=ACROSS_MESSAGES)
        recent.append((event.origin_server_ts, body))
        self._bodies[key] = recent
        while len(self._bodies) > self.MAX_KEYS:
            self._bodies.popitem(last=False)
