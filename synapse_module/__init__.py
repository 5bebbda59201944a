"""The marketplace's Synapse module: the homeserver refuses what would get around the lock.

Loaded by Synapse (``modules:`` in homeserver.yaml; `make run` and `generate-deployment` write
the entry from the bridge's config). Every decision is a pure function of `policy`
(`policy.lockdown`, `policy.rules`); this file only adapts Synapse's callbacks to them:

    user_may_create_room / user_may_invite / ..._alias / ..._publish -> Lockdown.may_*
    check_event_for_spam (reject_before_delivery) -> a managed room's access from its power
        levels -> policy.rules.judge_event -> refused with the rule's reason, or let through
    check_media_file_for_spam -> the bytes' type (magic numbers) against the global allow-list
    is_user_allowed_to_upload_media_of_size -> parties' size limit
    GET /_synapse/client/marketplace/user_exists?user=... -> for the bot only: whether a
        local user exists (profile lookups are limited to users who share a room, so the
        bridge has no other way to refuse a mistyped Matrix ID)

Synapse's media callback sees only the bytes (not the uploader, nor the type the client
claimed), so the type allow-list is global; the size limit is per user through the media
repository callback. It needs only the standard library, `policy` and Synapse itself.
"""

from __future__ import annotations

import logging
from typing import Any

from synapse.module_api import NOT_SPAM, DirectServeJsonResource, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from policy.lockdown import Lockdown, access_from_power_levels, is_managed_room, lockdown_from
from policy.rules import ContentRules, content_rules_from, judge_event

log = logging.getLogger("synapse_module")

# Read enough of an upload to know its type; JSON (transcripts) is parsed whole.
_SNIFF_BYTES = 64 * 1024
_MAX_JSON_BYTES = 16 * 1024 * 1024
USER_EXISTS_PATH = "/_synapse/client/marketplace/user_exists"


class MarketplaceModule:
    def __init__(self, config: dict[str, Any], api: ModuleApi) -> None:
        self._api = api
        self._lockdown: Lockdown = config["lockdown"]
        self._rules: ContentRules | None = config["rules"]
        api.register_spam_checker_callbacks(
            user_may_create_room=self.user_may_create_room,
            user_may_invite=self.user_may_invite,
            user_may_create_room_alias=self.user_may_create_room_alias,
            user_may_publish_room=self.user_may_publish_room,
            check_event_for_spam=self.check_event_for_spam if self._rules else None,
            check_media_file_for_spam=self.check_media_file_for_spam,
        )
        api.register_media_repository_callbacks(
            is_user_allowed_to_upload_media_of_size=self.is_user_allowed_to_upload_media_of_size
        )
        api.register_web_resource(USER_EXISTS_PATH, UserLookup(api, self._lockdown.bot))

    @staticmethod
    def parse_config(config: dict[str, Any]) -> dict[str, Any]:
        """Fail Synapse's start on a bad config, naming the key."""
        try:
            lockdown = lockdown_from(config)
            rules = None
            if config.get("reject_before_delivery"):
                rules = content_rules_from(config["policy"])
        except (KeyError, TypeError, ValueError) as e:
            raise Exception(f"synapse_module: invalid config: {e!r}") from e
        return {"lockdown": lockdown, "rules": rules}

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

    async def check_event_for_spam(self, event: Any) -> Any:
        """A party's event in a managed room that breaks a content rule never gets in."""
        assert self._rules is not None
        if event.is_state() or self._lockdown.exempt(event.sender):
            return NOT_SPAM
        if not self._api.is_mine(event.sender):
            return NOT_SPAM  # federation is off; a remote event is not ours to judge here
        state = await self._api.get_room_state(
            event.room_id, [("m.room.create", ""), ("m.room.power_levels", "")]
        )
        create = state.get(("m.room.create", ""))
        if create is None or not is_managed_room(create.sender, self._lockdown.bot):
            return NOT_SPAM
        levels = state.get(("m.room.power_levels", ""))
        access = access_from_power_levels(levels.content if levels else None)
        if access is None:
            return NOT_SPAM
        verdict = judge_event(
            event.type,
            event.content,
            self._rules,
            access,
            transaction_closed=False,  # a closed transaction's room is archived: nobody posts
            recent_messages=0,  # the flood rule needs history: the bridge's bot keeps it
            muted=False,
        )
        if not verdict.broken:
            return NOT_SPAM
        rules = [v.rule.value for v in verdict.violations]
        reason = "; ".join(v.reason for v in verdict.violations)
        log.info("Refused %s from %s in %s: %s", event.type, event.sender, event.room_id, rules)
        return Codes.FORBIDDEN, {
            "error": f"Not sent: {reason}.",
            "org.marketplace.rules": rules,
        }

    async def check_media_file_for_spam(self, file_wrapper: Any, file_info: Any) -> Any:
        """Uploads (and Synapse's thumbnails) must be of an allowed type by their bytes."""
        chunks: list[bytes] = []
        size = 0

        def collect(chunk: bytes) -> None:
            nonlocal size
            if size < _MAX_JSON_BYTES:
                chunks.append(chunk)
            size += len(chunk)

        await file_wrapper.write_chunks_to(collect)
        content = b"".join(chunks)
        if size > _MAX_JSON_BYTES:
            content = content[:_SNIFF_BYTES]  # too big to be a transcript; magic numbers only
        if self._lockdown.upload_allowed(content):
            return NOT_SPAM
        return Codes.FORBIDDEN, {"error": "This type of file is not allowed here."}

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
