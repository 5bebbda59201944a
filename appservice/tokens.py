"""Bearer tokens: read from an ``Authorization`` header, compared in constant time."""

from __future__ import annotations

import hmac
from enum import Enum


class TokenProblem(Enum):
    MISSING = "missing"  # no header, another scheme, or an empty token
    WRONG = "wrong"


def check_bearer(header: str, expected: bytes) -> TokenProblem | None:
    """What is wrong with the header's Bearer token, or None when it is ``expected``."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return TokenProblem.MISSING
    if not hmac.compare_digest(token.strip().encode("utf-8"), expected):
        return TokenProblem.WRONG
    return None
