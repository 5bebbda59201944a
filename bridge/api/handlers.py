"""The marketplace REST API under ``/api/v1``: Bearer token, JSON in and out, MARKET_* errors.

    request -> middleware (errors, then the token) -> the route's handler (api.routes)
            -> body: size limit (413) -> JSON (400 MARKET_BAD_JSON) -> model (400
               MARKET_INVALID_PARAM, unknown fields refused) -> the market's use case -> JSON

Bad input is never a 5xx: only an unreachable or refusing homeserver (503) and bugs (500) are.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bridge.deals.responsiveness import Responsiveness
from bridge.delivery.outbox import Outbox
from bridge.identity import Identity
from bridge.identity.records import Profile, UserRecord
from bridge.market.chat_list import ChatList
from bridge.market.disputes import Disputes
from bridge.market.holds import LegalHolds
from bridge.market.models import (
    DisputeRecord,
    NewDispute,
    NewTransaction,
    Party,
    Resolution,
    TransactionRecord,
)
from bridge.market.records.audit import AuditLog, AuditQuery
from bridge.market.transactions import Transactions
from bridge.policybot.transcripts import Transcripts
from bridge.runtime.clock import Clock
from bridge.runtime.workers import Wakeup
from policy.ids import DisputeId, MarketUserId, TransactionId, UserId
from policy.rooms import RoomKind

from . import holds as hold_answers
from . import middleware
from . import responsiveness as answers
from .errors import ApiError
from .models import (
    AuditPageOut,
    ChatListOut,
    CloseTransactionRequest,
    CreateDisputeRequest,
    CreateTransactionRequest,
    DeadLettersOut,
    PartyIn,
    PaymentRequest,
    ReasonRequest,
    ReplayOut,
    ReplayRequest,
    ResolveDisputeRequest,
    SessionRequest,
    UserIn,
    is_market_id,
)
from .openapi import openapi_document
from .requests import int_param, parse_body, path_id, time_param
from .routes import ROUTES
from .views import (
    audit_entry_out,
    chat_out,
    dead_letter_out,
    dispute_out,
    export_out,
    json_response,
    session_out,
    sessions_out,
    transaction_out,
    user_out,
)

PREFIX = "/api/v1"


MARKETPLACE = "marketplace"  # the actor of what the API does, in the audit trail


class MarketApi:
    def __init__(
        self,
        token: str,
        max_body_bytes: int,
        transactions: Transactions,
        disputes: Disputes,
        chat_list: ChatList,
        transcripts: Transcripts,
        holds: LegalHolds,
        audit: AuditLog,
        identity: Identity,
        responsiveness: Responsiveness,
        outbox: Outbox,
        outbox_wakeup: Wakeup,
        retry_for_ms: int,
        clock: Clock,
    ) -> None:
        self._token = token
        self._max_body_bytes = max_body_bytes
        self._transactions = transactions
        self._disputes = disputes
        self._chat_list = chat_list
        self._transcripts = transcripts
        self._holds = holds
        self._audit = audit
        self._identity = identity
        self._responsiveness = responsiveness
        self._outbox = outbox
        self._outbox_wakeup = outbox_wakeup
        self._retry_for_ms = retry_for_ms
        self._clock = clock
        self._document = json.dumps(openapi_document()).encode()

    def add_to(self, app: web.Application) -> None:
        log = logging.getLogger("bridge.api")
        api = web.Application(middlewares=[middleware.errors(log), middleware.auth(self._token)])
        for route in ROUTES:
            name = middleware.PUBLIC if route.public else None
            api.router.add_route(route.method, route.path, getattr(self, route.handler), name=name)
        app.add_subapp(PREFIX, api)

    async def openapi(self, _: web.Request) -> web.Response:
        return web.Response(body=self._document, content_type="application/json")

    async def create_transaction(self, request: web.Request) -> web.Response:
        body = await parse_body(request, CreateTransactionRequest, self._max_body_bytes)
        existing = await self._transactions.find(TransactionId(body.transaction_id))
        if existing is None:
            buyer = await self._party("buyer", body.buyer)
            seller = await self._party("seller", body.seller)
        else:  # a repeat: its parties compared as sent (a difference is the 409 of its create)
            buyer = _as_sent(body.buyer, existing.buyer)
            seller = _as_sent(body.seller, existing.seller)
        new = NewTransaction(TransactionId(body.transaction_id), body.title, buyer, seller)
        record, created = await self._transactions.create(new)
        return self._transaction(record, status=201 if created else 200)

    async def get_transaction(self, request: web.Request) -> web.Response:
        return self._transaction(await self._transactions.get(_transaction_id(request)))

    async def record_payment(self, request: web.Request) -> web.Response:
        transaction_id = _transaction_id(request)
        await parse_body(request, PaymentRequest, self._max_body_bytes, empty_ok=True)
        return self._transaction(await self._transactions.record_payment(transaction_id))

    async def close_transaction(self, request: web.Request) -> web.Response:
        transaction_id = _transaction_id(request)
        body = await parse_body(request, CloseTransactionRequest, self._max_body_bytes)
        return self._transaction(await self._transactions.close(transaction_id, body.outcome))

    async def _party(self, role: str, party: PartyIn) -> Party:
        profile = (
            Profile(party.display_name, party.avatar_url, party.email)
            if party.has_profile
            else None
        )
        matrix_id = UserId(party.matrix_id) if party.matrix_id else None
        user_id = MarketUserId(party.user_id)
        return await self._identity.accounts.party(role, user_id, profile, matrix_id)

    def _transaction(self, record: TransactionRecord, status: int = 200) -> web.Response:
        links = self._links_of(RoomKind.TRANSACTION, record.transaction_id)
        return json_response(
            transaction_out(record, self._transactions.access(record), links), status
        )

    def _links_of(self, kind: RoomKind, object_id: str) -> dict[str, str]:
        links = self._identity.links
        return links.of(kind, object_id) if links else {}

    def _dispute(self, dispute: DisputeRecord, status: int = 200) -> web.Response:
        links = self._links_of(RoomKind.DISPUTE, dispute.dispute_id)
        return json_response(dispute_out(dispute, links), status)

    async def open_dispute(self, request: web.Request) -> web.Response:
        body = await parse_body(request, CreateDisputeRequest, self._max_body_bytes)
        new = NewDispute(
            DisputeId(body.dispute_id),
            TransactionId(body.transaction_id),
            body.reason,
            body.opened_by,
        )
        dispute, created = await self._disputes.open(new)
        return self._dispute(dispute, 201 if created else 200)

    async def get_dispute(self, request: web.Request) -> web.Response:
        return self._dispute(await self._disputes.get(_dispute_id(request)))

    async def resolve_dispute(self, request: web.Request) -> web.Response:
        dispute_id = _dispute_id(request)
        body = await parse_body(request, ResolveDisputeRequest, self._max_body_bytes)
        resolution = Resolution(body.decision, body.note, "marketplace", "api")
        return self._dispute(await self._disputes.resolve(dispute_id, resolution))

    async def upsert_user(self, request: web.Request) -> web.Response:
        user_id = _user_id(request)
        body = await parse_body(request, UserIn, self._max_body_bytes)
        profile = Profile(body.display_name, body.avatar_url, body.email)
        matrix_id = UserId(body.matrix_id) if body.matrix_id else None
        user, created = await self._identity.accounts.upsert(user_id, profile, matrix_id)
        return json_response(user_out(user), 201 if created else 200)

    async def get_user(self, request: web.Request) -> web.Response:
        return json_response(user_out(await self._identity.accounts.get(_user_id(request))))

    async def create_session(self, request: web.Request) -> web.Response:
        user_id = _user_id(request)
        body = await parse_body(request, SessionRequest, self._max_body_bytes, empty_ok=True)
        new = await self._identity.sessions.create(user_id, body.ttl_seconds)
        return json_response(session_out(new, self._identity.client_url), 201)

    async def list_sessions(self, request: web.Request) -> web.Response:
        user_id = _user_id(request)
        return json_response(sessions_out(user_id, await self._identity.sessions.live(user_id)))

    async def revoke_session(self, request: web.Request) -> web.Response:
        user_id, device_id = _user_id(request), path_id(request, "device_id")
        await self._identity.sessions.revoke(user_id, device_id)
        return json_response(sessions_out(user_id, await self._identity.sessions.live(user_id)))

    async def suspend_user(self, request: web.Request) -> web.Response:
        return await self._change_user(request, self._identity.lifecycle.suspend)

    async def unsuspend_user(self, request: web.Request) -> web.Response:
        return await self._change_user(request, self._identity.lifecycle.unsuspend)

    async def erase_user(self, request: web.Request) -> web.Response:
        return await self._change_user(request, self._identity.lifecycle.erase)

    async def _change_user(
        self,
        request: web.Request,
        change: Callable[[MarketUserId, str | None], Awaitable[UserRecord]],
    ) -> web.Response:
        user_id = _user_id(request)
        body = await parse_body(request, ReasonRequest, self._max_body_bytes, empty_ok=True)
        return json_response(user_out(await change(user_id, body.reason)))

    async def export_user(self, request: web.Request) -> web.Response:
        user_id = _user_id(request)
        export = await self._identity.lifecycle.export(user_id)
        return json_response(export_out(export, self._transactions.access))

    async def chat_list(self, request: web.Request) -> web.Response:
        user_id = request.match_info["user_id"]
        if not is_market_id(user_id):
            raise ApiError.invalid_param("user_id: not a marketplace id", fields=["user_id"])
        chats = await self._chat_list.of(MarketUserId(user_id))
        if chats is None:
            raise ApiError(404, "MARKET_NOT_FOUND", f"no marketplace user {user_id}")
        rooms = [chat_out(chat, self._transactions.access(chat)) for chat in chats]
        return json_response(ChatListOut(user_id=user_id, rooms=rooms))

    async def user_responsiveness(self, request: web.Request) -> web.Response:
        user_id, now = _user_id(request), self._clock.now_ms()
        since = answers.window(request.query, now)
        figures = await self._responsiveness.of_user(user_id, since, now)
        if figures is None:
            raise ApiError(404, "MARKET_NOT_FOUND", f"no marketplace user {user_id}")
        return json_response(answers.user_out(figures, since, now))

    async def responsiveness(self, request: web.Request) -> web.Response:
        now = self._clock.now_ms()
        since = answers.window(request.query, now)
        after, limit, fmt = answers.page_params(request.query)
        sellers, next_after = await self._responsiveness.sellers(since, now, after, limit)
        return answers.sellers_response(request, sellers, next_after, since, now, fmt)

    async def transaction_holds(self, request: web.Request) -> web.Response:
        record = await self._transactions.get(transaction_id := _transaction_id(request))
        holds = await self._holds.on(transaction_id)
        return json_response(
            hold_answers.transaction_holds_out(transaction_id, holds, record.purged_at)
        )

    async def place_hold(self, request: web.Request) -> web.Response:
        transaction_id = _transaction_id(request)
        body = await parse_body(request, hold_answers.HoldRequest, self._max_body_bytes)
        record, holds, placed = await self._holds.place(transaction_id, body.reason, MARKETPLACE)
        answer = hold_answers.transaction_holds_out(transaction_id, holds, record.purged_at)
        return json_response(answer, 201 if placed else 200)

    async def release_hold(self, request: web.Request) -> web.Response:
        transaction_id = _transaction_id(request)
        body = await parse_body(
            request, hold_answers.ReleaseRequest, self._max_body_bytes, empty_ok=True
        )
        record, holds = await self._holds.release(transaction_id, body.reason or "", MARKETPLACE)
        return json_response(
            hold_answers.transaction_holds_out(transaction_id, holds, record.purged_at)
        )

    async def holds(self, _: web.Request) -> web.Response:
        holds = await self._holds.all()
        return json_response(
            hold_answers.HoldsOut(holds=[hold_answers.hold_out(h) for h in holds])
        )

    async def transaction_transcript(self, request: web.Request) -> web.Response:
        document = await self._transcripts.of_transaction(
            _transaction_id(request), actor="marketplace"
        )
        return web.json_response(document)

    async def dispute_transcript(self, request: web.Request) -> web.Response:
        document = await self._transcripts.of_dispute(_dispute_id(request), actor="marketplace")
        return web.json_response(document)

    async def audit(self, request: web.Request) -> web.Response:
        query = request.query
        ids = {}
        for name in ("transaction_id", "dispute_id"):
            if name in query:
                if not is_market_id(query[name]):
                    raise ApiError.invalid_param(f"{name}: not a marketplace id", fields=[name])
                ids[name] = query[name]
        room_id = query.get("room_id")
        if room_id is not None and not (room_id.startswith("!") and len(room_id) <= 255):
            raise ApiError.invalid_param("room_id: not a Matrix room ID", fields=["room_id"])
        audit_query = AuditQuery(
            room_id=room_id,
            since=time_param(query, "since"),
            until=time_param(query, "until"),
            after=int_param(query, "after", 0, 0, 2**62),
            limit=int_param(query, "limit", 100, 1, 1000),
            **ids,
        )
        rows = await self._audit.read(audit_query)
        more = len(rows) == audit_query.limit
        page = AuditPageOut(
            entries=[audit_entry_out(row) for row in rows],
            next=rows[-1]["seq"] if more else None,
        )
        return json_response(page)

    async def dead_letters(self, request: web.Request) -> web.Response:
        limit = int_param(request.query, "limit", 100, 1, 1000)
        failed = [dead_letter_out(row) for row in await self._outbox.dead_letters(limit)]
        return json_response(DeadLettersOut(failed=failed))

    async def replay(self, request: web.Request) -> web.Response:
        body = await parse_body(request, ReplayRequest, self._max_body_bytes, empty_ok=True)
        replayed = await self._outbox.replay(
            body.ids, body.room_id, self._retry_for_ms, self._clock.now_ms()
        )
        self._outbox_wakeup.set()
        return json_response(ReplayOut(replayed=replayed))


def _transaction_id(request: web.Request) -> TransactionId:
    return TransactionId(path_id(request, "transaction_id"))


def _dispute_id(request: web.Request) -> DisputeId:
    return DisputeId(path_id(request, "dispute_id"))


def _as_sent(party: PartyIn, recorded: Party) -> Party:
    same_user = party.user_id == recorded.user_id
    matrix_id = party.matrix_id or (recorded.matrix_id if same_user else "")
    return Party(MarketUserId(party.user_id), UserId(matrix_id))


def _user_id(request: web.Request) -> MarketUserId:
    return MarketUserId(path_id(request, "user_id"))
