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

# What each room says of its deal, in words: its name is the title and this status; its topic
# says what the status means for who may post. Element shows the name in the room list and the
# header, and the topic under it.
TRANSACTION_STATUS = {
    Access.LOCKED: "awaiting payment",
    Access.OPEN: "open",
    Access.FROZEN: "frozen (dispute open)",
    Access.ARCHIVED: "closed",
}
TRANSACTION_TOPICS = {
    Access.LOCKED: "Awaiting payment: the chat opens once the marketplace confirms payment.",
    Access.OPEN: "Open: payment confirmed, buyer and seller can talk here.",
    Access.FROZEN: "Frozen while a dispute is open: only the marketplace's moderators can post.",
    Access.ARCHIVED: "Closed: the deal is over; this chat stays as a read-only archive.",
}
# An admin's lock or unlock (`by_admins`) gives a room another access than its deal's state:
# said as such, so that a paid room an admin locked does not read "awaiting payment".
OVERRIDE_STATUS = {
    Access.LOCKED: "locked by moderators",
    Access.OPEN: "open",
}
OVERRIDE_TOPICS = {
    Access.LOCKED: "Locked by the marketplace's moderators: only they can post for now.",
    Access.OPEN: "Opened by the marketplace's moderators: buyer and seller can talk here.",
}
DISPUTE_STATUS = {
    Access.LOCKED: "on hold",
    Access.OPEN: "open",
    Access.FROZEN: "moderators only",
    Access.ARCHIVED: "resolved",
}
DISPUTE_TOPICS = {
    Access.LOCKED: "Dispute on hold: read-only for now.",
    Access.OPEN: "Dispute open: buyer, seller and the marketplace's moderators talk here.",
    Access.FROZEN: "Dispute: only the marketplace's moderators can post.",
    Access.ARCHIVED: "Dispute resolved: this chat is a read-only archive.",
}
NAME_SEPARATOR = " · "  # "Vintage bike · open"


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
    *,
    by_admins: bool = False,
) -> RoomPlan:
    """The room's plan; ``by_admins``: its access is an admin's lock or unlock, not what its
    deal's state gives (a transaction room only)."""
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
        status, topics = (
            (OVERRIDE_STATUS, OVERRIDE_TOPICS)
            if by_admins and access in OVERRIDE_STATUS
            else (TRANSACTION_STATUS, TRANSACTION_TOPICS)
        )
        name = f"{title}{NAME_SEPARATOR}{status[access]}"
        topic, invitees = topics[access], participants.parties
    elif kind is RoomKind.MANAGEMENT:
        name, topic, invitees = (
            title,
            "Marketplace moderation: disputes, alerts, commands.",
            (participants.admins),
        )
    else:
        name = f"Dispute: {title}{NAME_SEPARATOR}{DISPUTE_STATUS[access]}"
        topic = DISPUTE_TOPICS[access]
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
