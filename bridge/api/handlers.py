"""The marketplace REST API under ``/api/v1``: Bearer token, JSON in and out, MARKET_* errors.

    request -> errors middleware -> token check (constant time) -> handler
            -> body: size limit (413) -> JSON (400 MARKET_BAD_JSON) -> model (400
               MARKET_INVALID_PARAM, unknown fields refused) -> `Market` use case -> JSON

Bad input is never a 5xx: only an unreachable or refusing homeserver (503) and bugs (500) are.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from appservice.matrix import HomeserverUnavailable, MatrixError
from bridge.api.models import (
    AuditEntryOut,
    AuditPageOut,
    ChatListOut,
    ChatOut,
    CloseTransactionRequest,
    CreateDisputeRequest,
    CreateTransactionRequest,
    DeadLetterOut,
    DeadLettersOut,
    DisputeOut,
    PartyOut,
    PaymentRequest,
    ReplayOut,
    ReplayRequest,
    ResolveDisputeRequest,
    TransactionOut,
    is_market_id,
    timestamp,
)
from bridge.api.openapi import openapi_document
from bridge.delivery.outbox import Outbox
from bridge.market.audit import AuditLog, AuditQuery
from bridge.market.errors import MarketError
from bridge.market.records.transactions import DisputeRecord, TransactionRecord
from bridge.market.transactions import Market
from bridge.policybot.transcripts import Transcripts
from policy.states import Access, dispute_access

PREFIX = "/api/v1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)


class MarketApi:
    def __init__(
        self,
        token: str,
        max_body_bytes: int,
        market: Market,
        outbox: Outbox,
        wake_outbox: Callable[[], None],
        retry_for_ms: int,
        transcripts: Transcripts,
        audit_log: AuditLog,
    ) -> None:
        self._transcripts = transcripts
        self._audit_log = audit_log
        self._token = token.encode("utf-8")
        self._max_body_bytes = max_body_bytes
        self._market = market
        self._outbox = outbox
        self._wake_outbox = wake_outbox
        self._retry_for_ms = retry_for_ms
        self._log = logging.getLogger("bridge.api")
        self._openapi = json.dumps(openapi_document()).encode()

    def add_to(self, app: web.Application) -> None:
        api = web.Application(middlewares=[self._errors, self._auth])
        api.router.add_get("/openapi.json", self._openapi_json, name="openapi")
        api.router.add_post("/transactions", self._create_transaction)
        api.router.add_get("/transactions/{transaction_id}", self._get_transaction)
        api.router.add_post("/transactions/{transaction_id}/payment", self._record_payment)
        api.router.add_post("/transactions/{transaction_id}/close", self._close_transaction)
        api.router.add_post("/disputes", self._open_dispute)
        api.router.add_get("/disputes/{dispute_id}", self._get_dispute)
        api.router.add_post("/disputes/{dispute_id}/resolve", self._resolve_dispute)
        api.router.add_get("/users/{user_id}/rooms", self._chat_list)
        api.router.add_get("/transactions/{transaction_id}/transcript", self._transcript)
        api.router.add_get("/disputes/{dispute_id}/transcript", self._dispute_transcript)
        api.router.add_get("/audit", self._audit)
        api.router.add_get("/webhooks/failed", self._dead_letters)
        api.router.add_post("/webhooks/replay", self._replay)
        app.add_subapp(PREFIX, api)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except MarketError as e:
            return web.json_response(e.body(), status=e.status)
        except HomeserverUnavailable as e:
            self._log.warning("%s %s: homeserver unavailable: %s", request.method, request.path, e)
            return _error(503, "MARKET_HOMESERVER_UNAVAILABLE", "The homeserver is unavailable")
        except MatrixError as e:
            self._log.warning("%s %s: homeserver refused: %s", request.method, request.path, e)
            return _error(503, "MARKET_HOMESERVER_UNAVAILABLE", f"The homeserver refused: {e}")
        except web.HTTPMethodNotAllowed:
            return _error(405, "MARKET_METHOD_NOT_ALLOWED", "Method not allowed here")
        except web.HTTPNotFound:
            return _error(404, "MARKET_NOT_FOUND", "No such endpoint")
        except web.HTTPException as e:
            return _error(e.status, "MARKET_INVALID_PARAM", e.reason)
        except Exception:
            self._log.exception("%s %s failed", request.method, request.path)
            return _error(500, "MARKET_INTERNAL", "Internal error; the call can be retried")

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        if route.name == "openapi":
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise MarketError(401, "MARKET_MISSING_TOKEN", "Missing Bearer token")
        if not hmac.compare_digest(token.strip().encode("utf-8"), self._token):
            raise MarketError(401, "MARKET_UNKNOWN_TOKEN", "Unknown token")
        return await handler(request)

    async def _openapi_json(self, _: web.Request) -> web.Response:
        return web.Response(body=self._openapi, content_type="application/json")

    async def _create_transaction(self, request: web.Request) -> web.Response:
        body = await self._parse(request, CreateTransactionRequest)
        record, created = await self._market.create(body)
        return self._transaction(record, status=201 if created else 200)

    async def _get_transaction(self, request: web.Request) -> web.Response:
        return self._transaction(await self._market.get(_transaction_id(request)))

    async def _record_payment(self, request: web.Request) -> web.Response:
        transaction_id = _transaction_id(request)
        await self._parse(request, PaymentRequest, empty_ok=True)
        return self._transaction(await self._market.record_payment(transaction_id))

    async def _close_transaction(self, request: web.Request) -> web.Response:
        transaction_id = _transaction_id(request)
        body = await self._parse(request, CloseTransactionRequest)
        return self._transaction(await self._market.close(transaction_id, body.outcome))

    def _transaction(self, record: TransactionRecord, status: int = 200) -> web.Response:
        return _transaction(record, self._market.access_for(record), status)

    async def _open_dispute(self, request: web.Request) -> web.Response:
        body = await self._parse(request, CreateDisputeRequest)
        dispute, created = await self._market.open_dispute(body)
        return _dispute(dispute, status=201 if created else 200)

    async def _get_dispute(self, request: web.Request) -> web.Response:
        return _dispute(await self._market.get_dispute(_path_id(request, "dispute_id")))

    async def _resolve_dispute(self, request: web.Request) -> web.Response:
        dispute_id = _path_id(request, "dispute_id")
        body = await self._parse(request, ResolveDisputeRequest)
        dispute = await self._market.resolve_dispute(
            dispute_id, body.decision, body.note, resolved_by="marketplace", source="api"
        )
        return _dispute(dispute)

    async def _chat_list(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        if not is_market_id(user_id):
            raise MarketError.invalid_param("user_id: not a marketplace id", fields=["user_id"])
        chats = await self._market.chat_list(user_id)
        if chats is None:
            raise MarketError.not_found(f"no marketplace user {user_id}")
        rooms = []
        for chat in chats:
            record, dispute, summary = chat.transaction, chat.dispute, chat.summary
            if dispute is not None:
                access = dispute_access(dispute.state)
            else:
                access = self._market.access_for(record)
            rooms.append(
                ChatOut(
                    kind="dispute" if dispute else "transaction",
                    transaction_id=record.transaction_id,
                    dispute_id=dispute.dispute_id if dispute else None,
                    title=record.title,
                    role="buyer" if record.buyer.user_id == user_id else "seller",
                    state=(dispute.state if dispute else record.state).value,
                    access=access,
                    room_id=dispute.room_id if dispute else record.room_id,
                    last_message=summary.last_message,
                    last_message_at=timestamp(summary.last_message_at),
                    unread=summary.unread,
                )
            )
        return _json(ChatListOut(user_id=user_id, rooms=rooms))

    async def _transcript(self, request: web.Request) -> web.Response:
        document = await self._transcripts.of_transaction(
            _transaction_id(request), actor="marketplace"
        )
        return web.json_response(document)

    async def _dispute_transcript(self, request: web.Request) -> web.Response:
        document = await self._transcripts.of_dispute(
            _path_id(request, "dispute_id"), actor="marketplace"
        )
        return web.json_response(document)

    async def _audit(self, request: web.Request) -> web.Response:
        query = request.query
        ids = {}
        for name in ("transaction_id", "dispute_id"):
            if name in query:
                if not is_market_id(query[name]):
                    raise MarketError.invalid_param(f"{name}: not a marketplace id", fields=[name])
                ids[name] = query[name]
        room_id = query.get("room_id")
        if room_id is not None and not (room_id.startswith("!") and len(room_id) <= 255):
            raise MarketError.invalid_param("room_id: not a Matrix room ID", fields=["room_id"])
        audit_query = AuditQuery(
            room_id=room_id,
            since=_time_param(query, "since"),
            until=_time_param(query, "until"),
            after=_int_param(query, "after", 0, 0, 2**62),
            limit=_int_param(query, "limit", 100, 1, 1000),
            **ids,
        )
        rows = await self._audit_log.read(audit_query)
        entries = [
            AuditEntryOut(**{**row, "id": row["seq"], "at": timestamp(row["at"])}) for row in rows
        ]
        more = len(rows) == audit_query.limit
        return _json(AuditPageOut(entries=entries, next=rows[-1]["seq"] if more else None))

    async def _dead_letters(self, request: web.Request) -> web.Response:
        limit = _int_param(request.query, "limit", 100, 1, 1000)
        failed = [
            DeadLetterOut(
                id=row["id"],
                type=row["type"],
                room_id=row["stream"],
                attempts=row["attempts"],
                last_error=row["last_error"],
                created_at=timestamp(row["created_at"]),
                body=json.loads(row["body"]),
            )
            for row in await self._outbox.dead_letters(limit)
        ]
        return _json(DeadLettersOut(failed=failed))

    async def _replay(self, request: web.Request) -> web.Response:
        body = await self._parse(request, ReplayRequest, empty_ok=True)
        replayed = await self._outbox.replay(body.ids, body.room_id, self._retry_for_ms)
        self._wake_outbox()
        return _json(ReplayOut(replayed=replayed))

    async def _parse(self, request: web.Request, model: type[M], *, empty_ok: bool = False) -> M:
        raw = await self._read_limited(request)
        if not raw.strip() and empty_ok:
            raw = b"{}"
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise MarketError(400, "MARKET_BAD_JSON", "The body is not valid JSON") from None
        if not isinstance(data, dict):
            raise MarketError(400, "MARKET_BAD_JSON", "The body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as e:
            problems = [
                {
                    "field": ".".join(str(p) for p in error["loc"]) or "body",
                    "problem": error["msg"],
                }
                for error in e.errors(include_url=False)
            ]
            summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
            raise MarketError.invalid_param(summary, problems=problems) from None

    async def _read_limited(self, request: web.Request) -> bytes:
        limit = self._max_body_bytes
        too_large = MarketError(413, "MARKET_TOO_LARGE", f"The body exceeds {limit} bytes")
        if request.content_length is not None and request.content_length > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(query.get(name, str(default)))
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise MarketError.invalid_param(f"{name}: must be {low} to {high}", fields=[name])
    return value


def _time_param(query: Mapping[str, str], name: str) -> int | None:
    """An ISO 8601 time with its offset (or Z), as ms since the epoch."""
    if name not in query:
        return None
    try:
        when = datetime.fromisoformat(query[name])
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise MarketError.invalid_param(
            f"{name}: must be an ISO 8601 time with an offset, like 2026-11-25T10:00:00Z",
            fields=[name],
        )
    return int(when.timestamp() * 1000)


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json"), status=status)


def _error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not is_market_id(value):
        raise MarketError.invalid_param(
            f"{name}: must be 1 to 128 of A-Z a-z 0-9 . _ : -", fields=[name]
        )
    return value


def _transaction_id(request: web.Request) -> str:
    return _path_id(request, "transaction_id")


def _dispute(dispute: DisputeRecord, status: int = 200) -> web.Response:
    view = DisputeOut(
        dispute_id=dispute.dispute_id,
        transaction_id=dispute.transaction_id,
        state=dispute.state,
        access=dispute_access(dispute.state),
        reason=dispute.reason,
        opened_by=dispute.opened_by,
        decision=dispute.decision,
        note=dispute.note,
        resolved_by=dispute.resolved_by,
        source=dispute.source,
        room_id=dispute.room_id,
        created_at=timestamp(dispute.created_at),
        resolved_at=timestamp(dispute.resolved_at),
    )
    return _json(view, status)


def _transaction(record: TransactionRecord, access: Access, status: int = 200) -> web.Response:
    view = TransactionOut(
        transaction_id=record.transaction_id,
        title=record.title,
        state=record.state,
        outcome=record.outcome,
        access=access,
        room_id=record.room_id,
        buyer=PartyOut(user_id=record.buyer.user_id, matrix_id=record.buyer.matrix_id),
        seller=PartyOut(user_id=record.seller.user_id, matrix_id=record.seller.matrix_id),
        created_at=timestamp(record.created_at),
        paid_at=timestamp(record.paid_at),
        closed_at=timestamp(record.closed_at),
    )
    return _json(view, status)
