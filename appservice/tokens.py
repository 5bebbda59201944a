"""Bearer tokens: read from an ``Authorization`` header, compared in constant time."""

from __future__ import annotations

import hmac
from enum import Enum


class TokenProblem(Enum):
    MISSING = "missing"  # no header, another scheme, or an empty token
    WRONG = "wrong"


def bearer_token(header: str) -> str | None:
    """The header's Bearer token; None for no header, another scheme or an empty token."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def check_bearer(header: str, expected: bytes) -> TokenProblem | None:
    """What is wrong with the header's Bearer token, or None when it is ``expected``."""
    token = bearer_token(header)
    if token is None:
        return TokenProblem.MISSING
    if not hmac.compare_digest(token.encode("utf-8"), expected):
        return TokenProblem.WRONG
    return None
