"""Who may be in a managed room, and which live state changes the bot must look at.

A transaction's or dispute's room is for its buyer, its seller, the marketplace's admins and
the bot; the moderation room for the admins and the bot. Anyone else who joins (or knocks) is
removed at once. A stray invite alone shows nothing of the history (history visibility
`shared` starts at the join), so invites are revoked by the scheduled repair, not live.
"""

from __future__ import annotations

from collections.abc import Mapping

from .ids import UserId
from .rooms import Participants, RoomKind

# State the room plans set; a change to one of these by anyone but the bot is checked.
PLANNED_STATE_TYPES = frozenset(
    {
        "m.room.power_levels",
        "m.room.name",
        "m.room.topic",
        "m.room.join_rules",
        "m.room.guest_access",
        "m.room.history_visibility",
    }
)
PRESENT = frozenset({"invite", "join", "knock"})


def allowed_members(kind: RoomKind, participants: Participants) -> frozenset[UserId]:
    people = (
        participants.admins
        if kind is RoomKind.MANAGEMENT
        else (participants.parties + participants.admins)
    )
    return frozenset({participants.bot, *people})


def removes_on_arrival(membership: str, user_id: str, allowed: frozenset[UserId]) -> bool:
    """Whether a live membership change brings in someone who must be removed."""
    return membership in ("join", "knock") and user_id not in allowed


def strays(memberships: Mapping[UserId, str], allowed: frozenset[UserId]) -> list[UserId]:
    """Everyone invited, joined or knocking who is not allowed (for the scheduled repair)."""
    return sorted(
        user
        for user, membership in memberships.items()
        if membership in PRESENT and user not in allowed
    )


def needs_state_check(event_type: str, state_key: str | None, sender: str, bot: str) -> bool:
    """Whether a live state event may have moved the room away from its plan."""
    return state_key == "" and event_type in PLANNED_STATE_TYPES and sender != bot
