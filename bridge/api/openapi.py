"""The marketplace API's OpenAPI 3.1 document, generated from the same pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bridge.api.models import (
    ID_PATTERN,
    AuditPageOut,
    ChatListOut,
    CloseTransactionRequest,
    CreateDisputeRequest,
    CreateTransactionRequest,
    DeadLettersOut,
    DisputeOut,
    ErrorOut,
    PaymentRequest,
    ReplayOut,
    ReplayRequest,
    ResolveDisputeRequest,
    TransactionOut,
    TranscriptOut,
)

REQUESTS: list[type[BaseModel]] = [
    CreateTransactionRequest,
    CreateDisputeRequest,
    ResolveDisputeRequest,
    PaymentRequest,
    CloseTransactionRequest,
    ReplayRequest,
]
RESPONSES: list[type[BaseModel]] = [
    TransactionOut,
    DisputeOut,
    ChatListOut,
    DeadLettersOut,
    ReplayOut,
    AuditPageOut,
    TranscriptOut,
    ErrorOut,
]

ERRORS = {
    "400": "MARKET_BAD_JSON or MARKET_INVALID_PARAM",
    "401": "MARKET_MISSING_TOKEN or MARKET_UNKNOWN_TOKEN",
    "404": "MARKET_NOT_FOUND",
    "409": "MARKET_CONFLICT (fields named) or MARKET_INVALID_STATE",
    "413": "MARKET_TOO_LARGE",
    "503": "MARKET_HOMESERVER_UNAVAILABLE: retry; the call completes the same room",
}


AUDIT_PARAMETERS = [
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
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(model)}}}


def _operation(
    summary: str,
    ok: dict[str, str],
    body: type[BaseModel] | None = None,
    response: type[BaseModel] = TransactionOut,
    **extra: Any,
) -> dict[str, Any]:
    responses = {code: {"description": text, **_json(response)} for code, text in ok.items()}
    responses.update(
        {code: {"description": text, **_json(ErrorOut)} for code, text in ERRORS.items()}
    )
    operation: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if body is not None:
        optional = body in (PaymentRequest, ReplayRequest)
        operation["requestBody"] = {"required": not optional, **_json(body)}
    return operation


def openapi_document() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(model, "validation") for model in REQUESTS]
        + [(model, "serialization") for model in RESPONSES],
        ref_template="#/components/schemas/{model}",
    )
    transaction_id = {
        "name": "transaction_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": ID_PATTERN},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Marketplace Matrix bridge API",
            "version": "1",
            "description": "Transaction rooms: locked until payment, open after, archived on "
            "close. Every call can be retried safely.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas["$defs"],
        },
        "paths": {
            "/transactions": {
                "post": _operation(
                    "Create a transaction and its locked room",
                    {"201": "Created", "200": "The same transaction existed already"},
                    CreateTransactionRequest,
                )
            },
            "/transactions/{transaction_id}": {
                "parameters": [transaction_id],
                "get": _operation("A transaction, its state and room", {"200": "Found"}),
            },
            "/transactions/{transaction_id}/payment": {
                "parameters": [transaction_id],
                "post": _operation(
                    "Report payment: the room opens",
                    {"200": "Paid (or already paid)"},
                    PaymentRequest,
                ),
            },
            "/disputes": {
                "post": _operation(
                    "Open a dispute on a paid transaction: its room, admins invited, the"
                    " transaction room frozen",
                    {"201": "Opened", "200": "The same dispute existed already"},
                    CreateDisputeRequest,
                    response=DisputeOut,
                )
            },
            "/disputes/{dispute_id}": {
                "parameters": [{**transaction_id, "name": "dispute_id"}],
                "get": _operation("A dispute", {"200": "Found"}, response=DisputeOut),
            },
            "/disputes/{dispute_id}/resolve": {
                "parameters": [{**transaction_id, "name": "dispute_id"}],
                "post": _operation(
                    "Resolve a dispute: its room is archived, the transaction room thawed",
                    {"200": "Resolved (or already resolved with this decision)"},
                    ResolveDisputeRequest,
                    response=DisputeOut,
                ),
            },
            "/users/{user_id}/rooms": {
                "parameters": [{**transaction_id, "name": "user_id"}],
                "get": _operation(
                    "A marketplace user's chat list with unread counts",
                    {"200": "The user's rooms, newest first"},
                    response=ChatListOut,
                ),
            },
            "/webhooks/failed": {
                "get": _operation(
                    "Dead-lettered notifications (retried for webhooks.retry_for_seconds)",
                    {"200": "Oldest first"},
                    response=DeadLettersOut,
                    parameters=[
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        }
                    ],
                ),
            },
            "/webhooks/replay": {
                "post": _operation(
                    "Queue dead letters again: by ids, by room, or all (empty body)",
                    {"200": "How many were queued"},
                    ReplayRequest,
                    response=ReplayOut,
                ),
            },
            "/transactions/{transaction_id}/transcript": {
                "parameters": [transaction_id],
                "get": _operation(
                    "The transaction room's transcript: hash-chained evidence from the"
                    " bridge's own records (redacted originals kept)",
                    {"200": "The transcript; its final hash is recorded in the audit log"},
                    response=TranscriptOut,
                ),
            },
            "/disputes/{dispute_id}/transcript": {
                "parameters": [{**transaction_id, "name": "dispute_id"}],
                "get": _operation(
                    "The dispute room's transcript",
                    {"200": "The transcript; its final hash is recorded in the audit log"},
                    response=TranscriptOut,
                ),
            },
            "/audit": {
                "get": _operation(
                    "The audit trail: every action of the bot and every command, oldest first",
                    {"200": "One page"},
                    response=AuditPageOut,
                    parameters=AUDIT_PARAMETERS,
                ),
            },
            "/transactions/{transaction_id}/close": {
                "parameters": [transaction_id],
                "post": _operation(
                    "Close the transaction: the room becomes a read-only archive",
                    {"200": "Closed (or already closed with this outcome)"},
                    CloseTransactionRequest,
                ),
            },
        },
    }
