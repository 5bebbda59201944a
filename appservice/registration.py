"""The appservice registration the homeserver loads (spec: "Registration")."""

from __future__ import annotations

import re
from typing import Any


def build_registration(
    *,
    appservice_id: str,
    url: str,
    as_token: str,
    hs_token: str,
    domain: str,
    bot_localpart: str,
    alias_prefix: str,
    user_prefix: str,
) -> dict[str, Any]:
    """The registration: the bot, the managed accounts and our aliases held exclusively,
    receipts delivered to us.

    ``rate_limited: false`` matters: without it Synapse throttles the bot's room creations and
    invites like a person's (10 rooms, 5 invites in a burst).
    """
    server = re.escape(domain)
    return {
        "id": appservice_id,
        "url": url,
        "as_token": as_token,
        "hs_token": hs_token,
        "sender_localpart": bot_localpart,
        "rate_limited": False,
        "receive_ephemeral": True,
        "namespaces": {
            "users": [
                {"regex": f"^@{re.escape(bot_localpart)}:{server}$", "exclusive": True},
                {"regex": f"^@{re.escape(user_prefix)}.*:{server}$", "exclusive": True},
            ],
            "aliases": [{"regex": f"^#{re.escape(alias_prefix)}.*:{server}$", "exclusive": True}],
            "rooms": [],
        },
    }
