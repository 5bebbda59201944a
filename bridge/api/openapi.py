"""The API's OpenAPI 3.1 document, generated from the route table and the pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .models import ID_PATTERN, ErrorOut
from .routes import ROUTES, Route

ERRORS = {
    "400": "MARKET_BAD_JSON or MARKET_INVALID_PARAM",
    "401": "MARKET_MISSING_TOKEN or MARKET_UNKNOWN_TOKEN",
    "404": "MARKET_NOT_FOUND",
    "409": "MARKET_CONFLICT (fields named) or MARKET_INVALID_STATE",
    "413": "MARKET_TOO_LARGE",
    "503": "MARKET_HOMESERVER_UNAVAILABLE: retry; the call completes the same room",
}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": _ref(model)}}}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _operation(route: Route) -> dict[str, Any]:
    assert route.response is not None, f"{route.path} declares no response"
    responses = {
        code: {"description": text, **_json(route.response)} for code, text in route.ok.items()
    }
    if route.csv:  # the same rows as text/csv, on ?format=csv
        for response in responses.values():
            response["content"]["text/csv"] = {"schema": {"type": "string"}}
    responses.update(
        {code: {"description": text, **_json(ErrorOut)} for code, text in ERRORS.items()}
    )
    operation: dict[str, Any] = {"summary": route.summary, "responses": responses}
    if route.query:
        operation["parameters"] = list(route.query)
    if route.body is not None:
        operation["requestBody"] = {"required": route.body_required, **_json(route.body)}
    return operation


def _path_parameter(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": ID_PATTERN},
    }


def openapi_document() -> dict[str, Any]:
    documented = [route for route in ROUTES if not route.public]
    requests = {route.body for route in documented if route.body is not None}
    responses = {route.response for route in documented if route.response is not None}
    _, schemas = models_json_schema(
        [(model, "validation") for model in sorted(requests, key=lambda m: m.__name__)]
        + [
            (model, "serialization")
            for model in sorted(responses | {ErrorOut}, key=lambda m: m.__name__)
        ],
        ref_template="#/components/schemas/{model}",
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in documented:
        item = paths.setdefault(route.path, {})
        if route.path_params:
            item["parameters"] = [_path_parameter(name) for name in route.path_params]
        item[route.method.lower()] = _operation(route)
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
        "paths": paths,
    }
