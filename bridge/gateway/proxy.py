"""The gateway's HTTP side: every request forwarded to the homeserver as it came (streamed both
ways, long polls included), unless a guard takes it (`guards.py`).

    request -> its access token readable two ways (`requesters.access_token`)? -> 401 (415
               for a multipart form), never forwarded
            -> a guard for it? no -> forward
            -> the requester (token -> user, cached) is the bot or an admin -> forward
            -> the guard: refuse, or forward (with the body it read), or rewrite the answer
            -> the homeserver cannot say who asks, or a guard's read fails -> 502, never
               forwarded unchecked
"""

from __future__ import annotations

import logging

from aiohttp import web

from policy.ids import UserId

from .guards import Guards
from .requesters import Refused, Requesters, access_token, read_form_body
from .upstream import Unreachable, Upstream

log = logging.getLogger("bridge.gateway")


class ClientGateway:
    def __init__(
        self,
        upstream: Upstream,
        guards: Guards,
        requesters: Requesters,
        exempt: frozenset[UserId],
    ) -> None:
        self._upstream = upstream
        self._guards = guards
        self._requesters = requesters
        self._exempt = exempt

    def add_to(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:  # before anything else: the token checked is the token Synapse reads
            await read_form_body(request)
            access_token(request)
        except Refused as refused:
            return refused.answer()
        guard = self._guards.match(request)
        if guard is None:
            return await self._upstream.forward(request, None)
        try:
            requester = await self._requesters.of(request)
            if requester is None or requester in self._exempt:
                return await self._upstream.forward(request, None)
            return await guard(request, requester)
        except Refused as refused:  # read above already: never raised here
            return refused.answer()
        except Unreachable as e:  # fail closed: a guarded request never passes unchecked
            log.warning(
                "%s %s: refused, the homeserver did not answer: %s",
                request.method,
                request.path,
                e,
            )
            return web.json_response(
                {"errcode": "M_UNKNOWN", "error": "The homeserver is not reachable"}, status=502
            )
