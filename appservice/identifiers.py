"""Matrix identifier grammar (spec appendix, "Identifier grammar")."""

from __future__ import annotations

import re

# Localparts of user IDs created today; historical IDs with other characters are not accepted.
LOCALPART = re.compile(r"^[a-z0-9._=/+-]+$")
SERVER_NAME = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
MAX_ID_BYTES = 255


def is_server_name(value: str) -> bool:
    return bool(SERVER_NAME.match(value))


def is_matrix_user_id(value: str) -> bool:
    """A user ID in today's grammar: @localpart:server, at most 255 bytes."""
    localpart, sep, server = value.removeprefix("@").partition(":")
    return (
        value.startswith("@")
        and bool(sep)
        and len(value.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES
        and bool(LOCALPART.match(localpart))
        and is_server_name(server)
    )


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]
