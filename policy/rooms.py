"""Room plans: what a managed room's state must be, for each kind of room and access.

`plan_room` is the single source of the power levels, join rule, guest access, history
visibility, name and topic of every room the bridge manages. The bridge creates rooms from a
plan and puts them back to it when they drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .ids import UserId, escape_id
from .states import Access

BOT_LEVEL = 100
ADMIN_LEVEL = 50
PARTY_LEVEL = 0
MUTED_LEVEL = -1  # below every events_default: a muted party posts nothing

# Every state type that matters, at 100: only the bot changes a managed room's state.
# Listing them all is required, not decoration: Synapse's createRoom merges the power-level
# override shallowly, so our `events` replaces its defaults entirely.
STATE_EVENT_TYPES = (
    "m.room.power_levels",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.encryption",
    "m.room.server_acl",
    "m.room.tombstone",
    "m.room.pinned_events",
)

# Parties post in an open room; admins also while it is locked or frozen; nobody when archived.
EVENTS_DEFAULT = {
    Access.LOCKED: ADMIN_LEVEL,
    Access.OPEN: PARTY_LEVEL,
    Access.FROZEN: ADMIN_LEVEL,
    Access.ARCHIVED: BOT_LEVEL,
}

TRANSACTION_TOPICS = {
    Access.LOCKED: "Read-only until the marketplace confirms payment.",
    Access.OPEN: "Payment confirmed: buyer and seller can talk here.",
    Access.FROZEN: "Frozen while a dispute is open: only admins can post.",
    Access.ARCHIVED: "Closed: this chat is a read-only archive.",
}
DISPUTE_TOPICS = {
    Access.LOCKED: "Dispute: read-only for now.",
    Access.OPEN: "Dispute: buyer, seller and the marketplace's admins.",
    Access.FROZEN: "Dispute: only admins can post.",
    Access.ARCHIVED: "Dispute resolved: this chat is a read-only archive.",
}


class RoomKind(StrEnum):
    TRANSACTION = "transaction"
    DISPUTE = "dispute"
    MANAGEMENT = "management"


@dataclass(frozen=True, slots=True)
class Participants:
    bot: UserId
    parties: tuple[UserId, ...]
    admins: tuple[UserId, ...] = ()


@dataclass(frozen=True, slots=True)
class RoomPlan:
    name: str
    topic: str
    power_levels: dict[str, Any]
    join_rule: str = "invite"
    guest_access: str = "forbidden"
    history_visibility: str = "shared"
    invitees: tuple[UserId, ...] = field(default=())

    def initial_state(self) -> list[dict[str, Any]]:
        """The state events createRoom needs beside its preset (which allows guests)."""
        return [
            {
                "type": "m.room.join_rules",
                "state_key": "",
                "content": {"join_rule": self.join_rule},
            },
            {
                "type": "m.room.guest_access",
                "state_key": "",
                "content": {"guest_access": self.guest_access},
            },
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": self.history_visibility},
            },
        ]


def creators_have_unlimited_power(room_version: str) -> bool:
    """Room version 12 (and later) gives creators unlimited power and bars them from `users`."""
    return room_version.isdigit() and int(room_version) >= 12


def plan_room(
    kind: RoomKind,
    access: Access,
    participants: Participants,
    room_version: str,
    title: str,
    muted: tuple[UserId, ...] = (),
) -> RoomPlan:
    users: dict[UserId, int] = {user: MUTED_LEVEL for user in muted}
    users.update({admin: ADMIN_LEVEL for admin in participants.admins})  # admins never muted
    if not creators_have_unlimited_power(room_version):
        users[participants.bot] = BOT_LEVEL
    power_levels = {
        "users": users,
        "users_default": PARTY_LEVEL,
        "events": {
            **dict.fromkeys(STATE_EVENT_TYPES, BOT_LEVEL),
            # Parties cannot erase evidence; admins can remove what breaks the rules.
            "m.room.redaction": ADMIN_LEVEL,
        },
        "events_default": EVENTS_DEFAULT[access],
        "state_default": BOT_LEVEL,
        # The bot invites, kicks and bans on the marketplace's and the admins' behalf.
        "invite": BOT_LEVEL,
        "kick": BOT_LEVEL,
        "ban": BOT_LEVEL,
        "redact": ADMIN_LEVEL,
        "notifications": {"room": ADMIN_LEVEL},
    }
    if kind is RoomKind.TRANSACTION:
        name, topic, invitees = title, TRANSACTION_TOPICS[access], participants.parties
    elif kind is RoomKind.MANAGEMENT:
        name, topic, invitees = (
            title,
            "Marketplace moderation: disputes, alerts, commands.",
            (participants.admins),
        )
    else:
        name, topic = f"Dispute: {title}", DISPUTE_TOPICS[access]
        invitees = participants.parties + participants.admins
    return RoomPlan(name=name, topic=topic, power_levels=power_levels, invitees=invitees)


def departs_from_plan(current: dict[str, Any] | None, planned: dict[str, Any]) -> bool:
    """Whether a state event's content departs from the plan in any key the plan sets.

    Keys the plan does not set (Synapse adds some of its own, like ``m.topic``) are left alone.
    """
    if current is None:
        return True
    return any(current.get(key) != value for key, value in planned.items())


def alias_localpart(prefix: str, kind: RoomKind, object_id: str) -> str:
    """The room alias localpart reserved for one marketplace object.

    Synapse refuses a second room with the same alias, which makes room creation idempotent
    across retries, restarts and processes. Ids may hold upper case and ':' (not allowed or
    ambiguous in aliases): they are escaped reversibly, '_' first.
    """
    return f"{prefix}{kind.value}_{escape_id(object_id)}"
