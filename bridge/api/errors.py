"""The API's errors: an HTTP status and a machine-readable ``MARKET_*`` errcode.

The market's own errors (`bridge.market.errors`) keep their meaning here: not found 404,
invalid 400, conflicting or in the wrong state 409. `ApiError` is for what only HTTP knows:
tokens, bodies, parameters.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.identity.avatars import AvatarRefused
from bridge.identity.errors import NotManaged, UnknownUser, UserErased, UserSuspended
from bridge.identity.lifecycle import UserOnHold
from bridge.market.errors import Conflict, InvalidRequest, InvalidState, MarketError, NotFound

# The most specific kind an error is decides (a subclass before its base).
DOMAIN_ERRORS: dict[type[MarketError], tuple[int, str]] = {
    UnknownUser: (400, "MARKET_UNKNOWN_USER"),
    AvatarRefused: (400, "MARKET_BAD_AVATAR"),
    NotManaged: (409, "MARKET_NOT_MANAGED"),
    UserSuspended: (409, "MARKET_USER_SUSPENDED"),
    UserErased: (409, "MARKET_USER_ERASED"),
    UserOnHold: (409, "MARKET_USER_ON_HOLD"),
    NotFound: (404, "MARKET_NOT_FOUND"),
    InvalidRequest: (400, "MARKET_INVALID_PARAM"),
    Conflict: (409, "MARKET_CONFLICT"),
    InvalidState: (409, "MARKET_INVALID_STATE"),
}


class ApiError(Exception):
    def __init__(self, status: int, errcode: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode
        self.message = message
        self.details = details

    @classmethod
    def invalid_param(cls, message: str, **details: Any) -> ApiError:
        return cls(400, "MARKET_INVALID_PARAM", message, **details)

    @classmethod
    def of(cls, error: MarketError) -> ApiError:
        status, errcode = next(
            (DOMAIN_ERRORS[kind] for kind in type(error).__mro__ if kind in DOMAIN_ERRORS),
            (500, "MARKET_INTERNAL"),  # a MarketError of no known kind: a bug of ours
        )
        details = {"fields": error.fields} if error.fields is not None else {}
        return cls(status, errcode, error.message, **details)

    def response(self) -> web.Response:
        return error_response(self.status, self.errcode, self.message, **self.details)


def error_response(status: int, errcode: str, message: str, **details: Any) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message, **details}, status=status)
