"""Why a marketplace request cannot be carried out, in the domain's terms.

Raised by the use cases and the records; the API turns each into its HTTP status and
``MARKET_*`` errcode (`bridge.api.errors`), admin commands into a reply.
"""

from __future__ import annotations


class MarketError(Exception):
    """The message is for people; ``fields`` names the request fields it is about."""

    def __init__(self, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class NotFound(MarketError):
    """No such transaction, dispute or marketplace user."""


class InvalidRequest(MarketError):
    """A value the marketplace sent cannot be used (a party on another server, say)."""


class Conflict(MarketError):
    """An id already stands for something else (the fields that differ are named)."""


class InvalidState(MarketError):
    """The object's state does not allow this now (payment after close, say)."""
