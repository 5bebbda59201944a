"""The homeserver -> appservice API (spec: "Application Service API", v1 paths only).

    PUT  /_matrix/app/v1/transactions/{txnId}   -> parse -> handler.store_transaction -> 200
    GET  /_matrix/app/v1/users/{userId}         -> handler.query_user  -> 200 or 404
    GET  /_matrix/app/v1/rooms/{roomAlias}      -> handler.query_alias -> 200 or 404
    POST /_matrix/app/v1/ping                   -> 200

A transaction is answered 200 only after the handler has stored it; when storing fails we
answer 500 and Synapse re-sends the same transaction later. The token comes only from the
``Authorization`` header (the deprecated ``access_token`` query parameter is not read) and is
compared in constant time. Legacy unprefixed paths are not served.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from aiohttp import web

from .tokens import TokenProblem, check_bearer
from .transactions import BadTransaction, Transaction, parse_transaction

PREFIX = "/_matrix/app/v1"


class HomeserverHandler(Protocol):
    async def store_transaction(self, txn: Transaction) -> None:
        """Persist the transaction durably; raise if that cannot be done."""

    async def query_user(self, user_id: str) -> bool:
        """Whether the user exists (creating it if the appservice owns it)."""

    async def query_alias(self, alias: str) -> bool:
        """Whether the alias exists (creating its room if the appservice owns it)."""


def matrix_error(status: int, errcode: str, error: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": error}, status=status)


class HomeserverRoutes:
    def __init__(self, hs_token: str, handler: HomeserverHandler, log: logging.Logger) -> None:
        self._hs_token = hs_token.encode("utf-8")
        self._handler = handler
        self._log = log

    def add_to(self, app: web.Application) -> None:
        app.router.add_put(PREFIX + "/transactions/{txn_id}", self._transaction)
        app.router.add_get(PREFIX + "/users/{user_id}", self._query_user)
        app.router.add_get(PREFIX + "/rooms/{alias}", self._query_alias)
        app.router.add_post(PREFIX + "/ping", self._ping)
        # Anything else under the appservice prefix gets Matrix's answer for unknown endpoints.
        app.router.add_route("*", "/_matrix/app/{tail:.*}", self._unrecognized)

    def _refusal(self, request: web.Request) -> web.Response | None:
        """A 401/403 answer when the request does not carry our hs_token, else None."""
        problem = check_bearer(request.headers.get("Authorization", ""), self._hs_token)
        if problem is TokenProblem.MISSING:
            return matrix_error(401, "M_UNAUTHORIZED", "Missing homeserver access token")
        if problem is TokenProblem.WRONG:
            return matrix_error(403, "M_FORBIDDEN", "Unknown homeserver access token")
        return None

    async def _transaction(self, request: web.Request) -> web.Response:
        if refusal := self._refusal(request):
            return refusal
        txn_id = request.match_info["txn_id"]
        body = await _read_json(request)
        if isinstance(body, web.Response):
            return body
        try:
            txn = parse_transaction(txn_id, body)
        except BadTransaction as e:
            return matrix_error(400, "M_BAD_JSON", str(e))
        try:
            await self._handler.store_transaction(txn)
        except Exception:
            # Not acknowledged: Synapse keeps the transaction and re-sends it.
            self._log.exception("Could not store homeserver transaction %s", txn_id)
            return matrix_error(500, "M_UNKNOWN", "Could not store the transaction; retry later")
        self._log.debug(
            "Stored transaction %s: %d events, %d receipts",
            txn_id,
            len(txn.events),
            len(txn.receipts),
        )
        return web.Response(body=b"{}", content_type="application/json")  # not encoded anew

    async def _query_user(self, request: web.Request) -> web.Response:
        if refusal := self._refusal(request):
            return refusal
        if await self._handler.query_user(request.match_info["user_id"]):
            return web.json_response({})
        return matrix_error(404, "M_NOT_FOUND", "No such user in this appservice")

    async def _query_alias(self, request: web.Request) -> web.Response:
        if refusal := self._refusal(request):
            return refusal
        if await self._handler.query_alias(request.match_info["alias"]):
            return web.json_response({})
        return matrix_error(404, "M_NOT_FOUND", "No such room alias in this appservice")

    async def _ping(self, request: web.Request) -> web.Response:
        if refusal := self._refusal(request):
            return refusal
        body = await _read_json(request)
        if isinstance(body, web.Response):
            return body
        return web.json_response({})

    async def _unrecognized(self, request: web.Request) -> web.Response:
        if refusal := self._refusal(request):
            return refusal
        return matrix_error(404, "M_UNRECOGNIZED", "Unrecognized request")


async def _read_json(request: web.Request) -> Any | web.Response:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return matrix_error(413, "M_TOO_LARGE", "Request body is too large")
    try:
        return json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        return matrix_error(400, "M_NOT_JSON", "Request body is not valid JSON")
