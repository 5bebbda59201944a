"""The API's routes, in one table: the router, the OpenAPI document and the tests read it.

Each route names the `MarketApi` method that answers it; path parameters (``{name}``) are
marketplace ids. A route marked public is answered without a token and left out of the
document (it is the document).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from .holds import HoldRequest, HoldsOut, ReleaseRequest, TransactionHoldsOut
from .models import (
    ID_PATTERN,
    AuditPageOut,
    ChatListOut,
    CloseTransactionRequest,
    CreateDisputeRequest,
    CreateTransactionRequest,
    DeadLettersOut,
    DisputeOut,
    PaymentRequest,
    ReasonRequest,
    ReplayOut,
    ReplayRequest,
    ResolveDisputeRequest,
    SessionOut,
    SessionRequest,
    SessionsOut,
    TransactionOut,
    TranscriptOut,
    UserExportOut,
    UserIn,
    UserOut,
)
from .responsiveness import ResponsivenessPageOut, UserResponsivenessOut

LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
}
SINCE = {
    "name": "since",
    "in": "query",
    "description": "Start of the window: an ISO 8601 time or a date (UTC); default 30 days ago",
    "schema": {"type": "string"},
}
RESPONSIVENESS_QUERY = (
    SINCE,
    {
        "name": "format",
        "in": "query",
        "description": "json (default) or csv (text/csv, one row per seller, without matrix_id)",
        "schema": {"type": "string", "enum": ["json", "csv"]},
    },
    {
        "name": "after",
        "in": "query",
        "description": "`next` of the previous page (also in the Link header)",
        "schema": {"type": "string", "pattern": ID_PATTERN},
    },
    LIMIT,
)
AUDIT_QUERY = (
    {"name": "room_id", "in": "query", "schema": {"type": "string", "maxLength": 255}},
    {"name": "transaction_id", "in": "query", "schema": {"type": "string", "pattern": ID_PATTERN}},
    {"name": "dispute_id", "in": "query", "schema": {"type": "string", "pattern": ID_PATTERN}},
    {
        "name": "since",
        "in": "query",
        "description": "ISO 8601 time, inclusive",
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "until",
        "in": "query",
        "description": "ISO 8601 time, exclusive",
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "after",
        "in": "query",
        "description": "`next` of the previous page",
        "schema": {"type": "integer", "minimum": 0},
    },
    LIMIT,
)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # under /api/v1
    handler: str  # the MarketApi method that answers it
    summary: str
    ok: dict[str, str]  # each success status and what it means
    response: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: tuple[dict[str, Any], ...] = field(default=())
    public: bool = False
    csv: bool = False  # also answers text/csv (?format=csv)

    @property
    def path_params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]


ROUTES: tuple[Route, ...] = (
    Route("GET", "/openapi.json", "openapi", "This document", {"200": "OpenAPI 3.1"}, public=True),
    Route(
        "POST",
        "/transactions",
        "create_transaction",
        "Create a transaction and its locked room",
        {"201": "Created", "200": "The same transaction existed already"},
        TransactionOut,
        CreateTransactionRequest,
    ),
    Route(
        "GET",
        "/transactions/{transaction_id}",
        "get_transaction",
        "A transaction, its state and room",
        {"200": "Found"},
        TransactionOut,
    ),
    Route(
        "POST",
        "/transactions/{transaction_id}/payment",
        "record_payment",
        "Report payment: the room opens",
        {"200": "Paid (or already paid)"},
        TransactionOut,
        PaymentRequest,
        body_required=False,
    ),
    Route(
        "POST",
        "/transactions/{transaction_id}/close",
        "close_transaction",
        "Close the transaction: the room becomes a read-only archive",
        {"200": "Closed (or already closed with this outcome)"},
        TransactionOut,
        CloseTransactionRequest,
    ),
    Route(
        "GET",
        "/transactions/{transaction_id}/hold",
        "transaction_holds",
        "What holds a transaction's rooms now: its manual legal hold and its disputes",
        {"200": "The holds in force (none: not held)"},
        TransactionHoldsOut,
    ),
    Route(
        "POST",
        "/transactions/{transaction_id}/hold",
        "place_hold",
        "Place a legal hold: the transaction's rooms are never purged and its parties cannot"
        " be erased until it is released",
        {"201": "Placed", "200": "A manual hold was already in place (unchanged)"},
        TransactionHoldsOut,
        HoldRequest,
    ),
    Route(
        "DELETE",
        "/transactions/{transaction_id}/hold",
        "release_hold",
        "Release the manual legal hold (a dispute's hold ends by itself: 409)",
        {"200": "Released; the holds left"},
        TransactionHoldsOut,
        ReleaseRequest,
        body_required=False,
    ),
    Route(
        "GET",
        "/holds",
        "holds",
        "Every legal hold in force: manual ones, then those of disputes",
        {"200": "All of them"},
        HoldsOut,
    ),
    Route(
        "POST",
        "/disputes",
        "open_dispute",
        "Open a dispute on a paid transaction: its room, admins invited, the transaction room"
        " frozen",
        {"201": "Opened", "200": "The same dispute existed already"},
        DisputeOut,
        CreateDisputeRequest,
    ),
    Route(
        "GET", "/disputes/{dispute_id}", "get_dispute", "A dispute", {"200": "Found"}, DisputeOut
    ),
    Route(
        "POST",
        "/disputes/{dispute_id}/resolve",
        "resolve_dispute",
        "Resolve a dispute: its room is archived, the transaction room thawed",
        {"200": "Resolved (or already resolved with this decision)"},
        DisputeOut,
        ResolveDisputeRequest,
    ),
    Route(
        "PUT",
        "/users/{user_id}",
        "upsert_user",
        "Create or update a marketplace user: a managed account unless it brings a matrix_id",
        {"201": "Created", "200": "Updated (or unchanged)"},
        UserOut,
        UserIn,
    ),
    Route("GET", "/users/{user_id}", "get_user", "A marketplace user", {"200": "Found"}, UserOut),
    Route(
        "POST",
        "/users/{user_id}/sessions",
        "create_session",
        "A session for a managed user's Matrix client, ending by itself at expires_at",
        {"201": "Created"},
        SessionOut,
        SessionRequest,
        body_required=False,
    ),
    Route(
        "GET",
        "/users/{user_id}/sessions",
        "list_sessions",
        "A managed user's live sessions (not revoked, not expired)",
        {"200": "Oldest first"},
        SessionsOut,
    ),
    Route(
        "DELETE",
        "/users/{user_id}/sessions/{device_id}",
        "revoke_session",
        "End a session now: its token stops working",
        {"200": "Revoked; the sessions left"},
        SessionsOut,
    ),
    Route(
        "POST",
        "/users/{user_id}/suspend",
        "suspend_user",
        "Suspend a user: every session ended, out of every room (no posting, no reading)",
        {"200": "Suspended (or already suspended)"},
        UserOut,
        ReasonRequest,
        body_required=False,
    ),
    Route(
        "POST",
        "/users/{user_id}/unsuspend",
        "unsuspend_user",
        "Lift a suspension: the user is back in their rooms",
        {"200": "Not suspended (any more)"},
        UserOut,
        ReasonRequest,
        body_required=False,
    ),
    Route(
        "POST",
        "/users/{user_id}/erase",
        "erase_user",
        "Erase a user (GDPR): account deactivated with erasure, profile removed, messages"
        " redacted in rooms not archived; refused while a legal hold or a dispute holds them",
        {"200": "Erased (or already erased)"},
        UserOut,
        ReasonRequest,
        body_required=False,
    ),
    Route(
        "GET",
        "/users/{user_id}/export",
        "export_user",
        "Everything the bridge holds about a user: profile, rooms, messages, sessions, audit",
        {"200": "One JSON document"},
        UserExportOut,
    ),
    Route(
        "GET",
        "/users/{user_id}/rooms",
        "chat_list",
        "A marketplace user's chat list with unread counts",
        {"200": "The user's rooms, newest first"},
        ChatListOut,
    ),
    Route(
        "GET",
        "/users/{user_id}/responsiveness",
        "user_responsiveness",
        "How quickly a user answers, as seller and as buyer: first-response times and the"
        " reply rate within 24 h",
        {"200": "The figures over the window"},
        UserResponsivenessOut,
        query=(SINCE,),
    ),
    Route(
        "GET",
        "/responsiveness",
        "responsiveness",
        "Every seller's responsiveness, by user id, a page at a time; JSON or CSV",
        {"200": "One page"},
        ResponsivenessPageOut,
        query=RESPONSIVENESS_QUERY,
        csv=True,
    ),
    Route(
        "GET",
        "/transactions/{transaction_id}/transcript",
        "transaction_transcript",
        "The transaction room's transcript: hash-chained evidence from the bridge's own records"
        " (redacted originals kept)",
        {"200": "The transcript; its final hash is recorded in the audit log"},
        TranscriptOut,
    ),
    Route(
        "GET",
        "/disputes/{dispute_id}/transcript",
        "dispute_transcript",
        "The dispute room's transcript",
        {"200": "The transcript; its final hash is recorded in the audit log"},
        TranscriptOut,
    ),
    Route(
        "GET",
        "/audit",
        "audit",
        "The audit trail: every action of the bot and every command, oldest first",
        {"200": "One page"},
        AuditPageOut,
        query=AUDIT_QUERY,
    ),
    Route(
        "GET",
        "/webhooks/failed",
        "dead_letters",
        "Dead-lettered notifications (retried for webhooks.retry_for_seconds)",
        {"200": "Oldest first"},
        DeadLettersOut,
        query=(LIMIT,),
    ),
    Route(
        "POST",
        "/webhooks/replay",
        "replay",
        "Queue dead letters again: by ids, by room, or all (empty body)",
        {"200": "How many were queued"},
        ReplayOut,
        ReplayRequest,
        body_required=False,
    ),
)
