"""The channels around a room's lock that the homeserver never shows the bridge, and what the
client gateway lets through them (the gateway, `bridge.gateway`, asks these).

    to-device messages      a party's only to their own devices (verification, key sharing)
    profile fields          set by the marketplace, never by a party (display name, avatar and
                            any custom field)
    typing                  only where the typist may post
    device names, keys      each user sees only their own devices' names; other users' keys
                            cut to the spec's shape (no field a client added)
    aliases of our rooms    resolved (or joined, or previewed) only by the room's members

Presence is switched off on the homeserver (`presence.enabled: false`), and a party's own
membership event in a managed room loses its reason and extra keys in the Synapse module
(`own_membership_content`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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


# The fields of keys that other users read (/keys/query, /keys/claim), by the spec. Anything
# else a client uploaded with its keys would be text the other party reads.
DEVICE_KEY_FIELDS = frozenset({"user_id", "device_id", "algorithms", "keys", "signatures"})
CROSS_SIGNING_FIELDS = frozenset({"user_id", "usage", "keys", "signatures"})
ONE_TIME_KEY_FIELDS = frozenset({"key", "signatures", "fallback"})
CROSS_SIGNING_KINDS = ("master_keys", "self_signing_keys", "user_signing_keys")


def others_keys_in_shape(answer: Any, requester: UserId) -> Any:
    """A /keys/query or /keys/claim answer with other users' keys cut to their spec's fields:
    no device display names (any local user may query anyone's keys) and no field a client
    added. Each user's own keys are left as they are."""
    if not isinstance(answer, dict):
        return answer
    for devices in _others(answer.get("device_keys"), requester).values():
        for device, keys in devices.items():
            devices[device] = _shaped(keys, DEVICE_KEY_FIELDS)
    for devices in _others(answer.get("one_time_keys"), requester).values():
        for device, keys in devices.items():
            if isinstance(keys, dict):
                devices[device] = {k: _shaped(key, ONE_TIME_KEY_FIELDS) for k, key in keys.items()}
    for kind in CROSS_SIGNING_KINDS:
        section = answer.get(kind)
        for user, key in _others(section, requester).items():
            section[user] = _shaped(key, CROSS_SIGNING_FIELDS)
    return answer


def _others(section: Any, requester: UserId) -> dict[str, dict[str, Any]]:
    """Of a section keyed by user, the other users' entries."""
    if not isinstance(section, dict):
        return {}
    return {
        user: value
        for user, value in section.items()
        if user != requester and isinstance(value, dict)
    }


def _shaped(value: Any, fields: frozenset[str]) -> Any:
    """Only the spec's fields, where the value is an object (else unchanged: not a key)."""
    if not isinstance(value, dict):
        return value
    return {key: item for key, item in value.items() if key in fields}


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


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
