"""The gateway's guards: each closes one channel around a room's lock (see the package's
docstring); `policy.channels` and `policy.uploads` decide, this module asks and answers.

A guard runs only for a party (anyone but the bot and the admins) with a token the homeserver
knows. It refuses with Matrix's own error shape, or forwards the request (`Forward`), possibly
with a body it has read, and may rewrite the answer.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from bridge.runtime.clock import Clock
from policy.channels import (
    AccountChange,
    account_change_refusal,
    account_data_refusal,
    is_managed_alias,
    keys_seen_by,
    may_post,
    to_device_allowed,
)
from policy.ids import RoomId, UserId
from policy.uploads import judge_upload

from .requesters import access_token
from .upstream import FORM_BODY, Upstream

Guard = Callable[[web.Request, UserId], Awaitable[web.StreamResponse]]
CLIENT_V3 = "/_matrix/client/v3"
POWER_LEVELS_SECONDS = 2.0  # how long a room's power levels are reused for typing checks


def matrix_error(status: int, errcode: str, error: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": error}, status=status)


def forbidden(error: str) -> web.Response:
    return matrix_error(403, "M_FORBIDDEN", error)


@dataclass(frozen=True, slots=True)
class UploadRules:
    allowed_types: frozenset[str]  # what a party's upload may be, by its bytes
    max_bytes: int
    breaks_rules: Callable[[str], bool]  # a text (the file's, its name) breaks a content rule


@dataclass(frozen=True, slots=True)
class ChannelRules:
    """What the guards hold parties to (from the bridge's config)."""

    alias_prefix: str  # our rooms' aliases: #<prefix>...
    visible: frozenset[UserId]  # whose keys everyone may read: the bot and the admins
    parties_may_create_rooms: bool
    uploads: UploadRules
    user_prefix: str  # managed accounts: @<user_prefix>...:<domain> (`policy.accounts`)
    domain: str


class Guards:
    """Every guard, and which request each one takes."""

    def __init__(
        self, upstream: Upstream, bot_token: str, rules: ChannelRules, clock: Clock
    ) -> None:
        self._upstream = upstream
        self._bot_token = bot_token
        self._rules = rules
        self._alias_prefix = rules.alias_prefix
        self._uploads = rules.uploads
        self._clock = clock
        self._levels: dict[RoomId, tuple[Any, float]] = {}
        # Matched as the homeserver routes: on the raw path, its segments still encoded (an
        # encoded slash inside a segment stays one segment), under any version prefix
        # (`v3`, `r0`, `api/v1`, `unstable/...`), whatever follows the endpoint's name.
        client = r"^/_matrix/client/(?:.*/)?"
        writes = frozenset({"PUT", "POST", "DELETE", "PATCH"})
        # What a managed account may not change of its own (`policy.channels.AccountChange`).
        self._account_changes: list[tuple[frozenset[str], re.Pattern[str], AccountChange]] = [
            (writes, re.compile(client + r"account/password(?:/|$)"), AccountChange.PASSWORD),
            (writes, re.compile(client + r"account/3pid(?:/|$)"), AccountChange.THIRD_PARTY_IDS),
            (writes, re.compile(client + r"account/deactivate(?:/|$)"), AccountChange.DEACTIVATE),
            (writes, re.compile(client + r"delete_devices(?:/|$)"), AccountChange.DELETE_DEVICES),
            (
                frozenset({"DELETE"}),
                re.compile(client + r"devices/"),
                AccountChange.DELETE_DEVICES,
            ),
            # MSC3882: v1/login/get_token, and unstable/org.matrix.msc3882/login/token
            (
                writes,
                re.compile(client + r"login/(?:get_)?token(?:/|$)"),
                AccountChange.LOGIN_TOKEN,
            ),
        ]
        # Global account data (a type Synapse reads to refuse invitations); the last
        # `user/{user}/account_data/{type}` of the path, as Synapse's route would read it.
        self._account_data = re.compile(client + r"user/[^/]*/account_data/([^/]*)")
        self._table: list[tuple[frozenset[str], re.Pattern[str], Guard]] = [
            (writes, re.compile(client + r"sendToDevice(?:/|$)"), self.to_device),
            (writes, re.compile(client + r"profile(?:/|$)"), self.profile),
            (writes, re.compile(client + r"rooms/[^/]*/typing(?:/|$)"), self.typing),
            (writes, re.compile(client + r"keys/(?:query|claim)/?$"), self.others_keys),
            (writes, re.compile(client + r"createRoom/?$"), self.create_room),
            (
                writes,
                re.compile(r"^/_matrix/(?:media/|client/(?:.*/)?media/)(?:.*/)?upload(?:/|$)"),
                self.upload,
            ),
        ]

    def match(self, request: web.Request) -> Guard | None:
        """The guard a request needs, or None to forward it as it is."""
        path = request.rel_url.raw_path
        if any(is_managed_alias(unquote(part), self._alias_prefix) for part in path.split("/")):
            return self.managed_alias
        for methods, pattern, guard in self._table:
            if request.method in methods and pattern.match(path):
                return guard
        if self._account_change(request) is not None:
            return self.own_account
        if request.method in ("PUT", "POST", "PATCH") and self._account_data.match(path):
            return self.account_data
        return None

    def _account_change(self, request: web.Request) -> AccountChange | None:
        path = request.rel_url.raw_path
        for methods, pattern, change in self._account_changes:
            if request.method in methods and pattern.match(path):
                return change
        return None

    async def to_device(self, request: web.Request, requester: UserId) -> web.StreamResponse:
        body = await request.read()
        if not to_device_allowed(requester, _json(body)):
            return forbidden("Device messages go only to your own devices on this server.")
        return await self._upstream.forward(request, body)

    async def profile(self, request: web.Request, requester: UserId) -> web.StreamResponse:
        return forbidden("Profiles are set by the marketplace.")

    async def typing(self, request: web.Request, requester: UserId) -> web.StreamResponse:
        body = await request.read()
        typing = _json(body)
        if not isinstance(typing, dict) or typing.get("typing") is not False:
            raw_room = request.rel_url.raw_path.split("/rooms/", 1)[1].split("/", 1)[0]
            levels = await self._power_levels(RoomId(unquote(raw_room)))
            if levels is not None and not may_post(levels, requester):
                return forbidden("Nobody types where they cannot post.")
        return await self._upstream.forward(request, body)

    async def others_keys(self, request: web.Request, requester: UserId) -> web.StreamResponse:
        """/keys/query and /keys/claim: only one's own keys, the bot's and the admins'."""
        token = access_token(request) or ""
        status, body = await self._upstream.call(
            request.method, request.rel_url.raw_path_qs, token, await request.read()
        )
        if status != 200 or not isinstance(body, dict):
            return web.json_response(body, status=status)
        return web.json_response(keys_seen_by(body, requester, self._rules.visible))

    async def create_room(self, request: web.Request, requester: UserId) -> web.StreamResponse:
        """Refused here when parties may not create rooms (the module refuses it too, but
        Synapse first tells whether the alias asked for is taken: which orders exist)."""
        body = await request.read()
        if not self._rules.parties_may_create_rooms:
            return forbidden("Only the marketplace creates rooms on this server.")
        wanted = _json(body)
        alias = wanted.get("room_alias_name") if isinstance(wanted, dict) else None
        if isinstance(alias, str) and is_managed_alias(f"#{alias}", self._alias_prefix):
            return forbidden("Only the marketplace creates rooms on this server.")
        return await self._upstream.forward(request, body)

    async def managed_alias(self, request: web.Request, requester: UserId) -> web.StreamResponse:
        """A path naming one of our rooms' aliases: only for a member (joined or invited) of
        the room; anyone else gets the answer an unknown alias gets."""
        alias = next(
            unquote(part)
            for part in request.path.split("/")
            if is_managed_alias(unquote(part), self._alias_prefix)
        )
        room_id = await self._resolve(alias)
        if room_id is None or await self._membership(room_id, requester) not in ("join", "invite"):
            return matrix_error(404, "M_NOT_FOUND", "Room alias not found")
        return await self._upstream.forward(request, None)

    async def own_account(self, request: web.Request, requester: UserId) -> web.StreamResponse:
        """A password, an e-mail or phone number, login tokens, deleted devices, deactivation:
        a managed account's are the marketplace's; an account the user brought is theirs."""
        change = self._account_change(request)
        assert change is not None  # matched by it
        refusal = account_change_refusal(
            change, requester, self._rules.user_prefix, self._rules.domain
        )
        if refusal is not None:
            return forbidden(refusal)
        return await self._upstream.forward(request, None)

    async def account_data(self, request: web.Request, requester: UserId) -> web.StreamResponse:
        """Account data: a managed account may not refuse invitations."""
        found = self._account_data.match(request.rel_url.raw_path)
        assert found is not None  # matched by it
        refusal = account_data_refusal(
            unquote(found[1]), requester, self._rules.user_prefix, self._rules.domain
        )
        if refusal is not None:
            return forbidden(refusal)
        return await self._upstream.forward(request, None)

    async def upload(self, request: web.Request, requester: UserId) -> web.StreamResponse:
        rules = self._uploads
        # The file's name and its declared type come back to whoever downloads it.
        declared = (request.query.get("filename", ""), request.headers.get("Content-Type", ""))
        if any(rules.breaks_rules(text) for text in declared if text):
            return forbidden("Not uploaded. The file's name or type breaks the content rules.")
        too_large = matrix_error(413, "M_TOO_LARGE", "The file is too large")
        if (request.content_length or 0) > rules.max_bytes:
            return too_large
        content = request.get(FORM_BODY)  # read already (a form's fields could hold a token)
        if content is None:
            chunks, size = [], 0
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > rules.max_bytes:
                    return too_large
                chunks.append(chunk)
            content = b"".join(chunks)
        elif len(content) > rules.max_bytes:
            return too_large
        # In a thread: judging a text upload's words takes up to some 0.2 s a MiB.
        refusal = await asyncio.to_thread(
            judge_upload, content, rules.allowed_types, rules.breaks_rules
        )
        if refusal is not None:
            return forbidden(f"Not uploaded. {refusal}")
        return await self._upstream.forward(request, content)

    async def _resolve(self, alias: str) -> RoomId | None:
        body = await self._bot_get(f"/directory/room/{quote(alias, safe='')}")
        room_id = body.get("room_id") if isinstance(body, dict) else None
        return RoomId(room_id) if isinstance(room_id, str) else None

    async def _membership(self, room_id: RoomId, user: UserId) -> str | None:
        path = f"/rooms/{quote(room_id, safe='')}/state/m.room.member/{quote(user, safe='')}"
        body = await self._bot_get(path)
        membership = body.get("membership") if isinstance(body, dict) else None
        return membership if isinstance(membership, str) else None

    async def _power_levels(self, room_id: RoomId) -> Any:
        cached = self._levels.get(room_id)
        if cached is not None and cached[1] > self._clock.monotonic():
            return cached[0]
        levels = await self._bot_get(f"/rooms/{quote(room_id, safe='')}/state/m.room.power_levels")
        if len(self._levels) > 10_000:
            self._levels.clear()
        self._levels[room_id] = (levels, self._clock.monotonic() + POWER_LEVELS_SECONDS)
        return levels

    async def _bot_get(self, path: str) -> Any:
        """A read as the bot (in every managed room); None where it cannot read."""
        status, body = await self._upstream.call("GET", CLIENT_V3 + path, self._bot_token)
        return body if status == 200 else None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
