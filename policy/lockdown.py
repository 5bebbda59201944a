"""What the homeserver itself refuses, decided purely: the Synapse module asks these.

    room creation, invites, aliases, publishing  -> only the bot and the admins (configurable)
    a party's event in a managed room            -> policy.rules, before delivery (optional)
    an upload                                    -> its bytes' type (magic numbers) against one
                                                    global allow-list; its size per user

A room is managed when the bot created it; its access follows from its power levels (the
plans in `rooms.py` set `events_default` per access), so the module needs no database.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .rooms import EVENTS_DEFAULT
from .states import Access

# The types an upload can be, by its first bytes. Synapse's thumbnails are JPEG or PNG.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),  # after "RIFF" and a length
    (b"%PDF-", 0, "application/pdf"),
)
KNOWN_UPLOAD_TYPES = frozenset({t for _, _, t in _SIGNATURES} | {"application/json"})


@dataclass(frozen=True, slots=True)
class Lockdown:
    bot: str
    admins: frozenset[str]
    parties_may_create_rooms: bool = False
    parties_may_invite: bool = False
    upload_types: frozenset[str] = frozenset()
    party_max_upload_bytes: int = 0

    def exempt(self, user_id: str) -> bool:
        return user_id == self.bot or user_id in self.admins

    def may_create_room(self, user_id: str) -> bool:
        """Rooms (and direct chats) are the bot's to make: no side channel before payment."""
        return self.parties_may_create_rooms or self.exempt(user_id)

    def may_invite(self, inviter: str) -> bool:
        return self.parties_may_invite or self.exempt(inviter)

    def may_upload(self, user_id: str, size: int) -> bool:
        return self.exempt(user_id) or size <= self.party_max_upload_bytes

    def upload_allowed(self, content: bytes) -> bool:
        return sniff_media_type(content) in self.upload_types


def lockdown_from(settings: Mapping[str, Any]) -> Lockdown:
    """The module's `config:` block (as the deployment writes it) as a `Lockdown`."""
    return Lockdown(
        bot=settings["bot"],
        admins=frozenset(settings.get("admins", ())),
        parties_may_create_rooms=bool(settings.get("parties_may_create_rooms", False)),
        parties_may_invite=bool(settings.get("parties_may_invite", False)),
        upload_types=frozenset(settings.get("upload_types", ())),
        party_max_upload_bytes=int(settings["party_max_upload_bytes"]),
    )


def sniff_media_type(content: bytes) -> str | None:
    """The type the bytes are, whatever the upload claimed; None when not one we know."""
    for magic, offset, media_type in _SIGNATURES:
        if content[offset : offset + len(magic)] == magic:
            if media_type == "image/webp" and content[:4] != b"RIFF":
                continue
            return media_type
    stripped = content.lstrip(b" \t\r\n")
    if stripped[:1] in (b"{", b"["):
        try:
            json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return "application/json"
    return None


def access_from_power_levels(levels: Mapping[str, Any] | None) -> Access | None:
    """The access a managed room's power levels give parties; None when they fit no plan.

    Locked and frozen rooms look alike (parties may not post in either): LOCKED stands for
    both, which is what the content rules need.
    """
    if not isinstance(levels, Mapping):
        return None
    default = levels.get("events_default", 0)
    for access in (Access.OPEN, Access.LOCKED, Access.ARCHIVED):
        if default == EVENTS_DEFAULT[access]:
            return access
    return None


def is_managed_room(creator: str | None, bot: str) -> bool:
    """Managed rooms are those the bot created (transactions, disputes, moderation)."""
    return creator == bot
