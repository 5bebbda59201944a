"""The marketplace API's OpenAPI 3.1 document, generated from the same pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .models import (
    ID_PATTERN,
    CloseTransactionRequest,
    CreateTransactionRequest,
    ErrorOut,
    PaymentRequest,
    TransactionOut,
)

REQUESTS: list[type[BaseModel]] = [
    CreateTransactionRequest,
    PaymentRequest,
    CloseTransactionRequest,
]
RESPONSES: list[type[BaseModel]] = [TransactionOut, ErrorOut]

ERRORS = {
    "400": "MARKET_BAD_JSON or MARKET_INVALID_PARAM",
    "401": "MARKET_MISSING_TOKEN or MARKET_UNKNOWN_TOKEN",
    "404": "MARKET_NOT_FOUND",
    "409": "MARKET_CONFLICT (fields named) or MARKET_INVALID_STATE",
    "413": "MARKET_TOO_LARGE",
    "503": "MARKET_HOMESERVER_UNAVAILABLE: retry; the call completes the same room",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(model)}}}


def _operation(
    summary: str, ok: dict[str, str], body: type[BaseModel] | None = None, **extra: Any
) -> dict[str, Any]:
    responses = {code: {"description": text, **_json(TransactionOut)} for code, text in ok.items()}
    responses.update(
        {code: {"description": text, **_json(ErrorOut)} for code, text in ERRORS.items()}
    )
    operation: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if body is not None:
        operation["requestBody"] = {"required": body is not PaymentRequest, **_json(body)}
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
