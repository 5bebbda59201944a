"""What every API request passes through: errors turned into answers, then the token check.

request -> errors (any failure -> a MARKET_* answer, never a stack trace)
        -> auth (Bearer token, constant time; the OpenAPI document is public) -> handler
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from appservice.matrix import HomeserverUnavailable, MatrixError
from appservice.tokens import TokenProblem, check_bearer
from bridge.market.errors import MarketError

from .errors import ApiError, error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
PUBLIC = "public"  # the name of routes answered without a token


def errors(log: logging.Logger) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as e:
            return e.response()
        except MarketError as e:
            return ApiError.of(e).response()
        except HomeserverUnavailable as e:
            log.warning("%s %s: homeserver unavailable: %s", request.method, request.path, e)
            return error_response(
                503, "MARKET_HOMESERVER_UNAVAILABLE", "The homeserver is unavailable"
            )
        except MatrixError as e:
            log.warning("%s %s: homeserver refused: %s", request.method, request.path, e)
            return error_response(
                503, "MARKET_HOMESERVER_UNAVAILABLE", f"The homeserver refused: {e}"
            )
        except web.HTTPMethodNotAllowed:
            return error_response(405, "MARKET_METHOD_NOT_ALLOWED", "Method not allowed here")
        except web.HTTPNotFound:
            return error_response(404, "MARKET_NOT_FOUND", "No such endpoint")
        except web.HTTPException as e:
            return error_response(e.status, "MARKET_INVALID_PARAM", e.reason)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return error_response(
                500, "MARKET_INTERNAL", "Internal error; the call can be retried"
            )

    return middleware


def auth(token: str) -> Middleware:
    expected = token.encode("utf-8")

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route.name != PUBLIC:
            problem = check_bearer(request.headers.get("Authorization", ""), expected)
            if problem is TokenProblem.MISSING:
                raise ApiError(401, "MARKET_MISSING_TOKEN", "Missing Bearer token")
            if problem is TokenProblem.WRONG:
                raise ApiError(401, "MARKET_UNKNOWN_TOKEN", "Unknown token")
        return await handler(request)

    return middleware
