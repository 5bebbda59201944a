"""Reading a request: its body (size limit, JSON, model) and its path and query parameters.

Every problem is a 400 (or 413) with a MARKET_* errcode that says which field is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from .errors import ApiError
from .models import is_market_id

M = TypeVar("M", bound=BaseModel)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def parse_body(
    request: web.Request, model: type[M], max_bytes: int, *, empty_ok: bool = False
) -> M:
    raw = await read_limited(request, max_bytes)
    if not raw.strip() and empty_ok:
        raw = b"{}"
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "MARKET_BAD_JSON", "The body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "MARKET_BAD_JSON", "The body must be a JSON object")
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
        raise ApiError.invalid_param(summary, problems=problems) from None


async def read_limited(request: web.Request, limit: int) -> bytes:
    too_large = ApiError(413, "MARKET_TOO_LARGE", f"The body exceeds {limit} bytes")
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


def path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not is_market_id(value):
        raise ApiError.invalid_param(
            f"{name}: must be 1 to 128 of A-Z a-z 0-9 . _ : -", fields=[name]
        )
    return value


def int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(query.get(name, str(default)))
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError.invalid_param(f"{name}: must be {low} to {high}", fields=[name])
    return value


def time_param(query: Mapping[str, str], name: str) -> int | None:
    """An ISO 8601 time with its offset (or Z), or a date (its start in UTC), as ms since
    the epoch."""
    if name not in query:
        return None
    try:
        when = datetime.fromisoformat(query[name])
    except ValueError:
        when = None
    if when is not None and len(query[name]) == 10:  # a date: 2026-11-25
        when = when.replace(tzinfo=UTC)
    if when is None or when.tzinfo is None:
        raise ApiError.invalid_param(
            f"{name}: must be an ISO 8601 time with an offset, like 2026-11-25T10:00:00Z,"
            " or a date, like 2026-11-25",
            fields=[name],
        )
    # Exact arithmetic: a float timestamp times 1000 can land a millisecond short.
    return (when - EPOCH) // timedelta(milliseconds=1)
