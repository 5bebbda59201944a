"""The responsiveness routes' parameters and answers: JSON models, and CSV for spreadsheets."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel, Field

from bridge.deals.responsiveness import SellerFigures, UserFigures
from policy.follow_ups import iso
from policy.responsiveness import WINDOW_MS
from policy.responsiveness import Responsiveness as Figures

from .errors import ApiError
from .models import is_market_id
from .requests import int_param, time_param

MAX_WINDOW_MS = 366 * 86_400_000


class FiguresOut(BaseModel):
    exchanges: int = Field(description="Exchanges started in the window.")
    answered: int = Field(description="Of those, answered (at any delay).")
    answered_within_24h: int
    pending: int = Field(description="Unanswered and younger than 24 h: not in the rate.")
    reply_rate_24h: float | None = Field(
        description="answered_within_24h / (exchanges - pending); null when nothing counts."
    )
    median_first_response_seconds: float | None
    mean_first_response_seconds: float | None


class UserResponsivenessOut(BaseModel):
    user_id: str
    matrix_id: str
    since: str
    until: str
    as_seller: FiguresOut
    as_buyer: FiguresOut


class SellerResponsivenessOut(FiguresOut):
    user_id: str
    matrix_id: str


class ResponsivenessPageOut(BaseModel):
    since: str
    until: str
    sellers: list[SellerResponsivenessOut]
    next: str | None = Field(description="`after` for the next page; null on the last one.")


# No matrix_id: every one starts with "@", which spreadsheets take for a formula.
CSV_COLUMNS = ("user_id", *FiguresOut.model_fields)
FORMULA_STARTS = ("=", "+", "-", "@")


def window(query: Mapping[str, str], now: int) -> int:
    """``since``: the window's start, by default 30 days ago; not in the future, at most a
    year back."""
    since = time_param(query, "since")
    if since is None:
        return now - WINDOW_MS
    if not now - MAX_WINDOW_MS <= since <= now:
        raise ApiError.invalid_param("since: must be within the last 366 days", fields=["since"])
    return since


def page_params(query: Mapping[str, str]) -> tuple[str, int, str]:
    """(after, limit, format)."""
    after = query.get("after", "")
    if after and not is_market_id(after):
        raise ApiError.invalid_param("after: not a marketplace id", fields=["after"])
    fmt = query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ApiError.invalid_param("format: must be json or csv", fields=["format"])
    return after, int_param(query, "limit", 100, 1, 1000), fmt


def figures_out(figures: Figures) -> FiguresOut:
    return FiguresOut(
        exchanges=figures.exchanges,
        answered=figures.answered,
        answered_within_24h=figures.answered_within_24h,
        pending=figures.pending,
        reply_rate_24h=figures.reply_rate_24h,
        median_first_response_seconds=figures.median_response_seconds,
        mean_first_response_seconds=figures.mean_response_seconds,
    )


def user_out(user: UserFigures, since: int, now: int) -> UserResponsivenessOut:
    return UserResponsivenessOut(
        user_id=user.user_id,
        matrix_id=user.matrix_id,
        since=iso(since),
        until=iso(now),
        as_seller=figures_out(user.as_seller),
        as_buyer=figures_out(user.as_buyer),
    )


def sellers_response(
    request: web.Request,
    sellers: list[SellerFigures],
    next_after: str | None,
    since: int,
    now: int,
    fmt: str,
) -> web.Response:
    rows = [
        SellerResponsivenessOut(
            user_id=s.user_id, matrix_id=s.matrix_id, **figures_out(s.figures).model_dump()
        )
        for s in sellers
    ]
    headers = {}
    if next_after is not None:  # RFC 8288, for either format
        query = {**request.query, "after": next_after}
        headers["Link"] = f'<{request.rel_url.path}?{urlencode(query)}>; rel="next"'
    if fmt == "json":
        page = ResponsivenessPageOut(
            since=iso(since), until=iso(now), sellers=rows, next=next_after
        )
        return web.json_response(page.model_dump(mode="json"), headers=headers)
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        values = row.model_dump(include=set(CSV_COLUMNS))
        if values["user_id"].startswith(FORMULA_STARTS):  # OWASP's CSV injection advice
            values["user_id"] = "'" + values["user_id"]
        writer.writerow({k: "" if v is None else v for k, v in values.items()})
    return web.Response(
        text=out.getvalue(), content_type="text/csv", charset="utf-8", headers=headers
    )
