"""The marketplace API's errors: an HTTP status and a machine-readable ``MARKET_*`` errcode."""

from __future__ import annotations

from typing import Any


class MarketError(Exception):
    def __init__(self, status: int, errcode: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.errcode = errcode
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.message, **self.details}

    @classmethod
    def invalid_param(cls, message: str, **details: Any) -> MarketError:
        return cls(400, "MARKET_INVALID_PARAM", message, **details)

    @classmethod
    def not_found(cls, message: str) -> MarketError:
        return cls(404, "MARKET_NOT_FOUND", message)

    @classmethod
    def conflict(cls, message: str, fields: list[str]) -> MarketError:
        return cls(409, "MARKET_CONFLICT", message, fields=fields)

    @classmethod
    def invalid_state(cls, message: str) -> MarketError:
        return cls(409, "MARKET_INVALID_STATE", message)

    @classmethod
    def homeserver_unavailable(cls, message: str) -> MarketError:
        return cls(503, "MARKET_HOMESERVER_UNAVAILABLE", message)
