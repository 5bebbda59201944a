"""Why a request about a marketplace user cannot be carried out (the API maps each to its own
``MARKET_*`` errcode, bridge.api.errors)."""

from __future__ import annotations

from bridge.market.errors import InvalidRequest, InvalidState


class UnknownUser(InvalidRequest):
    """A party named by its marketplace user id alone, which the bridge does not know."""


class NotManaged(InvalidState):
    """Sessions are for managed accounts; the marketplace brought this one."""


class UserSuspended(InvalidState):
    """The user is suspended: no new sessions, no new rooms."""


class UserErased(InvalidState):
    """The user was erased; the id cannot be used again."""
