"""Who is asking: the user an access token belongs to, asked of the homeserver and cached.

The token is read exactly where and as the homeserver reads it (Synapse's
`get_access_token_from_request`: one ``Authorization: Bearer <token>`` header, or else the
``access_token`` parameter, over Twisted's parsing of the query string and of a POST form
body), and a request that could be read two ways is refused before anything else
(`Refused`, 401, as Synapse's own errors):

    more than one Authorization header (whatever their case)
    an Authorization header and an access_token parameter (Synapse refuses the mix too)
    more than one access_token parameter (Twisted splits the query at ``&`` and at ``;``)
    an Authorization header that is not exactly ``Bearer <token>`` (no other scheme, case or
        spacing: Synapse reads no other, and the gateway reads none it does not)
    an access_token field in a POST form body (Twisted adds those fields to the query's);
        a multipart/form-data POST is refused whole (415, as Synapse does)
    a token of anything but printable ASCII (no token Synapse makes)

A token never changes hands, so a cached answer can only be stale for a token revoked since;
the homeserver refuses such a token itself when the request is forwarded.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from email.message import EmailMessage
from urllib.parse import unquote_to_bytes

from aiohttp import web

from bridge.runtime.clock import Clock
from policy.ids import UserId

from .upstream import FORM_BODY, Unreachable, Upstream

CACHE_SECONDS = 300
CACHE_SIZE = 10_000
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
TOKEN = re.compile(r"[!-~]+")  # printable ASCII, no space


class Refused(Exception):
    """A request whose access token the gateway and the homeserver could read differently."""

    def __init__(self, status: int, errcode: str, error: str) -> None:
        super().__init__(error)
        self.status, self.errcode, self.error = status, errcode, error

    def answer(self) -> web.Response:
        return web.json_response(
            {"errcode": self.errcode, "error": self.error}, status=self.status
        )


def _missing(error: str) -> Refused:
    return Refused(401, "M_MISSING_TOKEN", error)


def media_type(content_type: str) -> str:
    """A Content-Type's media type as Twisted reads it (`twisted.web.http._parseContentType`)."""
    message = EmailMessage()
    try:
        message["content-type"] = content_type
        return message.get_content_type()
    except (ValueError, TypeError, IndexError):  # Synapse fails on it too; read as its text
        return content_type.lower()


async def read_form_body(request: web.Request) -> None:
    """Read a POST form body whole (`FORM_BODY`) before its fields are looked at: Twisted
    adds them to the query's parameters, an access_token among them."""
    if request.method.upper() != "POST" or not request.body_exists:
        return
    declared = [text.lower() for text in request.headers.getall("Content-Type", [])]
    kinds = {media_type(text) for text in declared}
    if MULTIPART in kinds or any(MULTIPART in text for text in declared):
        raise Refused(415, "M_UNKNOWN", "multipart/form-data is not accepted")
    if FORM in kinds or any(FORM in text for text in declared):
        try:
            request[FORM_BODY] = await request.read()
        except web.HTTPRequestEntityTooLarge as e:
            raise Refused(413, "M_TOO_LARGE", "The request is too large") from e


def _access_tokens(raw: bytes) -> list[bytes]:
    """The access_token parameters of a query string or form body, as Twisted parses them
    (`twisted.web.http.parse_qs`: split at ``&`` and ``;``, ``+`` a space, percent-decoded,
    a blank value kept, an item without ``=`` skipped)."""
    found = []
    for item in re.split(rb"[&;]", raw):
        key, equals, value = item.partition(b"=")
        if equals and unquote_to_bytes(key.replace(b"+", b" ")) == b"access_token":
            found.append(unquote_to_bytes(value.replace(b"+", b" ")))
    return found


def access_token(request: web.Request) -> str | None:
    """The request's access token, read as the homeserver reads it; None without one. Raises
    Refused where the gateway could read another token than the homeserver, or none where
    it reads one."""
    headers = request.headers.getall("Authorization", [])
    query = request.rel_url.raw_query_string.encode("utf-8", "surrogateescape")
    in_query = _access_tokens(query)
    in_body = _access_tokens(request.get(FORM_BODY) or b"")
    if len(headers) > 1:
        raise _missing("Too many Authorization headers.")
    if headers and (in_query or in_body):
        raise _missing("Mixing Authorization headers and access_token query parameters.")
    if in_body:
        raise _missing("Access tokens are not accepted in a form body.")
    if len(in_query) > 1:
        raise _missing("Too many access_token query parameters.")
    if headers:
        parts = headers[0].split(" ")
        if parts[0] != "Bearer" or len(parts) != 2:
            raise _missing("Invalid Authorization header.")
        token = parts[1]
    elif in_query:
        token = in_query[0].decode("utf-8", "replace")
    else:
        return None
    if not TOKEN.fullmatch(token):
        raise Refused(401, "M_UNKNOWN_TOKEN", "Unrecognised access token.")
    return token


class Requesters:
    def __init__(self, upstream: Upstream, clock: Clock) -> None:
        self._upstream = upstream
        self._clock = clock
        self._known: OrderedDict[str, tuple[UserId, float]] = OrderedDict()

    async def of(self, request: web.Request) -> UserId | None:
        """The requester, or None when the request carries no token the homeserver knows (it
        refuses the request itself then). Raises Unreachable when the homeserver cannot say:
        a guarded request is never let through unguarded; Refused for a request whose token
        could be read two ways (`access_token`)."""
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
