"""The channels around a room's lock that the homeserver never shows the bridge, and what the
client gateway lets through them (the gateway, `bridge.gateway`, asks these).

    to-device messages      a party's only to their own devices (verification, key sharing)
    profile fields          set by the marketplace, never by a party (display name, avatar and
                            any custom field)
    typing                  only where the typist may post
    device keys and names   each party sees only their own, the bot's and the admins'
    aliases of our rooms    resolved (or joined, or previewed) only by the room's members
    a managed account       (`policy.accounts`: the marketplace signs its user in) gets no
                            password, e-mail or phone number, no login tokens for new devices,
                            deletes no device and is not deactivated by its user, and cannot
                            refuse invitations (it would stay out of a dispute's room)

Presence is switched off on the homeserver (`presence.enabled: false`), and a party's own
membership event in a managed room loses its reason and extra keys in the Synapse module
(`own_membership_content`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, auto
from typing import Any

from .accounts import is_managed
from .ids import UserId


def to_device_allowed(sender: UserId, body: Any) -> bool:
    """Whether a to-device send (``{"messages": {user: {device: content}}}``) goes only to the
    sender's own devices."""
    if not isinstance(body, Mapping) or not isinstance(body.get("messages"), Mapping):
        return False
    return all(recipient == sender for recipient in body["messages"])


def may_post(power_levels: Mapping[str, Any] | None, user: UserId) -> bool:
    """Whether the room's power levels let the user send a message."""
    if not isinstance(power_levels, Mapping):
        return False
    users = power_levels.get("users") if isinstance(power_levels.get("users"), Mapping) else {}
    events = power_levels.get("events") if isinstance(power_levels.get("events"), Mapping) else {}
    level = _int(users.get(user), _int(power_levels.get("users_default"), 0))
    needed = _int(events.get("m.room.message"), _int(power_levels.get("events_default"), 0))
    return level >= needed


# The sections of a /keys/query or /keys/claim answer, each keyed by user.
KEY_SECTIONS = (
    "device_keys",
    "one_time_keys",
    "master_keys",
    "self_signing_keys",
    "user_signing_keys",
)


def keys_seen_by(answer: Any, requester: UserId, visible: frozenset[UserId]) -> Any:
    """A /keys/query or /keys/claim answer with only the requester's own keys and those of
    ``visible`` users (the bot and the admins): any local user may ask for anyone's keys, and
    every part of them is chosen by their owner's client (device ids and names, key ids and
    values, extra fields), so another party's keys would be a channel. Managed rooms are
    never encrypted: a party needs no other party's keys."""
    if not isinstance(answer, dict):
        return answer
    for section in KEY_SECTIONS:
        users = answer.get(section)
        if isinstance(users, dict):
            answer[section] = {
                user: keys for user, keys in users.items() if user == requester or user in visible
            }
    return answer


# What a party's own membership event may hold: Synapse fills the name and avatar from the
# profile the marketplace set. A reason, or any other key, would be text the other party reads.
MEMBERSHIP_KEYS = frozenset(
    {"membership", "displayname", "avatar_url", "join_authorised_via_users_server"}
)


def own_membership_content(content: Mapping[str, Any]) -> dict[str, Any]:
    """A party's own membership content without a reason or any key clients do not need."""
    return {key: value for key, value in content.items() if key in MEMBERSHIP_KEYS}


def is_managed_alias(alias: str, prefix: str) -> bool:
    """Whether a room alias is one of the bridge's (``#<prefix>...``): which exist tells an
    outsider which orders exist."""
    return alias.lower().startswith(f"#{prefix.lower()}")


class AccountChange(Enum):
    """What a user may do to their own account that gives it a way in besides the
    marketplace's sessions, or takes it away from the marketplace."""

    PASSWORD = auto()  # a password: logins that never expire, whatever the marketplace says
    THIRD_PARTY_IDS = auto()  # an e-mail address or phone number: password resets, lookups
    LOGIN_TOKEN = auto()  # MSC3882: a logged-in session mints logins for new devices
    DELETE_DEVICES = auto()  # the marketplace's sessions are the marketplace's
    DEACTIVATE = auto()  # erasure goes through the marketplace (disputes hold it)


MANAGED = "Your account is managed by the marketplace"
ACCOUNT_REFUSALS = {
    AccountChange.PASSWORD: f"{MANAGED}: you sign in through the marketplace, with no password.",
    AccountChange.THIRD_PARTY_IDS: f"{MANAGED}: no e-mail address or phone number is added.",
    AccountChange.LOGIN_TOKEN: f"{MANAGED}: new sessions come from the marketplace.",
    AccountChange.DELETE_DEVICES: f"{MANAGED}: a session ends when you sign out of it.",
    AccountChange.DEACTIVATE: f"{MANAGED}: ask the marketplace to close it.",
}

# Account data Synapse reads to refuse invitations (MSC4380, and MSC4155 before it; only as
# global account data, never per room).
INVITE_PERMISSION_TYPES = frozenset(
    {"m.invite_permission_config", "org.matrix.msc4155.invite_permission_config"}
)
INVITES_REFUSAL = f"{MANAGED}: it cannot refuse invitations (disputes need you in their rooms)."


def account_change_refusal(
    change: AccountChange, user: UserId, user_prefix: str, domain: str
) -> str | None:
    """Why the user may not make the change to their own account, or None when they may: a
    managed account (``@<user_prefix>...:<domain>``) may not; an account the user brought
    is theirs to change."""
    return ACCOUNT_REFUSALS[change] if is_managed(user_prefix, domain, user) else None


def account_data_refusal(
    data_type: str, user: UserId, user_prefix: str, domain: str
) -> str | None:
    """Why the user may not set this (global) account data, or None when they may: a managed
    account may not refuse invitations; an account the user brought may (the bridge then
    reports the party's membership as invite_blocked)."""
    if data_type in INVITE_PERMISSION_TYPES and is_managed(user_prefix, domain, user):
        return INVITES_REFUSAL
    return None


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
