"""The homeserver behind the gateway: requests passed on as they came, and the gateway's own
reads (as a user, or as the bot)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import ClientError, ClientSession, web
from multidict import CIMultiDict
from yarl import URL

# Headers that belong to one connection, not to the request or answer passed along.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
CHUNK = 64 * 1024
# A POST form body the gateway read whole (`requesters.read_form_body`): forwarded as read.
FORM_BODY = web.RequestKey("gateway_form_body", bytes)


class Unreachable(Exception):
    """The homeserver did not answer one of the gateway's own requests."""


class Upstream:
    """The homeserver behind the gateway."""

    def __init__(self, session: ClientSession, url: str, public_url: str) -> None:
        self._session = session
        self.url = url.rstrip("/")
        # Synapse builds redirects (single sign-on) from the host and scheme it is told, and
        # sends a request whose host is not its public_baseurl's there: tell it the address
        # clients use, from the config (never a client's own Host or X-Forwarded-* headers).
        public = URL(public_url)
        self._public_host = public.raw_authority
        self._public_scheme = public.scheme
        self._log = logging.getLogger("bridge.gateway")

    async def forward(self, request: web.Request, body: bytes | None) -> web.StreamResponse:
        """The request passed on (``body`` when a guard read it already), and its answer
        streamed back. Its headers go as they came, every one of a repeated name in its order
        (never one of them chosen here), and its path and query as the guards matched them."""
        headers = CIMultiDict(
            (k, v)
            for k, v in request.headers.items()
            if k.lower() not in HOP_BY_HOP and not k.lower().startswith("x-forwarded-")
        )
        headers["Host"] = headers["X-Forwarded-Host"] = self._public_host
        headers["X-Forwarded-For"] = request.remote or ""
        headers["X-Forwarded-Proto"] = self._public_scheme
        if body is None:
            body = request.get(FORM_BODY)
        data = body if body is not None else _stream(request) if request.can_read_body else None
        decoded = "Content-Encoding" in request.headers  # aiohttp decoded it: another length
        if body is None and request.content_length is not None and not decoded:
            # Streamed on with its length (Synapse wants one for uploads), not chunked.
            headers["Content-Length"] = str(request.content_length)
        url = URL(self.url + request.rel_url.raw_path_qs, encoded=True)
        answer: web.StreamResponse | None = None
        try:
            async with self._session.request(
                request.method, url, headers=headers, data=data, allow_redirects=False
            ) as upstream:
                answer = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name, value in upstream.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        answer.headers.add(name, value)
                await answer.prepare(request)
                async for chunk in upstream.content.iter_chunked(CHUNK):
                    await answer.write(chunk)
                await answer.write_eof()
                return answer
        except (ClientError, TimeoutError, OSError) as e:
            self._log.warning("%s %s: the homeserver failed: %s", request.method, request.path, e)
            if answer is not None and answer.prepared:
                return answer  # cut short: the client sees the connection end
            return web.json_response(
                {"errcode": "M_UNKNOWN", "error": "The homeserver is not reachable"}, status=502
            )

    async def call(
        self, method: str, path: str, token: str, body: bytes | None = None
    ) -> tuple[int, Any]:
        """One request of the gateway's own: its status and its JSON (None when not JSON).
        Raises Unreachable when the homeserver does not answer."""
        headers = {"Authorization": f"Bearer {token}"}
        url = URL(self.url + path, encoded=True)
        try:
            async with self._session.request(method, url, data=body, headers=headers) as answer:
                text = await answer.read()
        except (ClientError, TimeoutError, OSError) as e:
            raise Unreachable(f"{method} {path}: {e}") from e
        try:
            return answer.status, json.loads(text)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return answer.status, None


async def _stream(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK):
        yield chunk
