"""Who is asking: the user an access token belongs to, asked of the homeserver and cached.

A token never changes hands, so a cached answer can only be stale for a token revoked since;
the homeserver refuses such a token itself when the request is forwarded.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from aiohttp import web

from bridge.runtime.clock import Clock
from policy.ids import UserId

from .upstream import Unreachable, Upstream

CACHE_SECONDS = 300
CACHE_SIZE = 10_000


def access_token(request: web.Request) -> str | None:
    """The request's access token, where the homeserver reads it too."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.query.get("access_token") or None


class Requesters:
    def __init__(self, upstream: Upstream, clock: Clock) -> None:
        self._upstream = upstream
        self._clock = clock
        self._known: OrderedDict[str, tuple[UserId, float]] = OrderedDict()

    async def of(self, request: web.Request) -> UserId | None:
        """The requester, or None when the request carries no token the homeserver knows (it
        refuses the request itself then). Raises Unreachable when the homeserver cannot say:
        a guarded request is never let through unguarded."""
        token = access_token(request)
        if token is None:
            return None
        key = hashlib.sha256(token.encode()).hexdigest()  # no token kept in memory as is
        known = self._known.get(key)
        if known is not None and known[1] > self._clock.monotonic():
            self._known.move_to_end(key)
            return known[0]
        user = await self._whoami(token)
        if user is not None:
            self._known[key] = (user, self._clock.monotonic() + CACHE_SECONDS)
            while len(self._known) > CACHE_SIZE:
                self._known.popitem(last=False)
        return user

    async def _whoami(self, token: str) -> UserId | None:
        status, body = await self._upstream.call("GET", "/_matrix/client/v3/account/whoami", token)
        if status in (401, 403):  # unknown, expired or locked: refused on forwarding too
            return None
        user = body.get("user_id") if status == 200 and isinstance(body, dict) else None
        if not isinstance(user, str):
            raise Unreachable(f"whoami answered {status}")
        return UserId(user)
