"""Managed accounts: the Matrix ID of a marketplace user who has none of their own.

A marketplace user id (1 to 128 of ``A-Z a-z 0-9 . _ : -``) maps to
``@<prefix><escaped id>:<domain>``; Matrix localparts allow only ``a-z 0-9 . _ = - / +``, so:

    a-z 0-9 . -   as they are
    _             __
    A-Z           _ and the letter in lower case      ("Bob_1" -> "_bob__1")
    :             =3a                                  ("shop:42" -> "shop=3a42")

The escaping (`policy.ids.escape_id`, the one room aliases use) is reversible
(`market_user_id`), so a managed Matrix ID names its marketplace user without a lookup, and two
marketplace ids never share an account. A Matrix ID is at most 255
bytes: an id whose escaped form does not fit is refused (`TooLong`).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from .ids import escape_id, unescape_id

MAX_USER_ID_BYTES = 255


class TooLong(ValueError):
    """The marketplace id's managed Matrix ID would exceed 255 bytes."""


def managed_user_id(prefix: str, domain: str, market_user_id: str) -> str:
    user_id = f"@{prefix}{escape_id(market_user_id)}:{domain}"
    if len(user_id.encode()) > MAX_USER_ID_BYTES:
        raise TooLong(f"its Matrix ID would be {len(user_id.encode())} bytes (at most 255)")
    return user_id


def market_user_id(prefix: str, domain: str, user_id: str) -> str | None:
    """The marketplace user a managed Matrix ID stands for; None for any other Matrix ID."""
    localpart, _, server = user_id.removeprefix("@").partition(":")
    if not user_id.startswith("@") or server != domain or not localpart.startswith(prefix):
        return None
    return unescape_id(localpart.removeprefix(prefix)) or None


def is_managed(prefix: str, domain: str, user_id: str) -> bool:
    return market_user_id(prefix, domain, user_id) is not None


DEFAULT_NAME = "Marketplace user"


def shown_name(name: str, mask: Callable[[str], str]) -> str:
    """A display name as the other party sees it: contact details masked, and no digits at
    all (a name holding half a phone number would complete it beside the first message of
    the chat: "Ann 07911" then "123456"); what is left, or a neutral name."""
    kept = "".join(" " if unicodedata.category(ch).startswith("N") else ch for ch in mask(name))
    return " ".join(kept.split()) or DEFAULT_NAME
