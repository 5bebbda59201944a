"""What the homeserver itself refuses, decided purely: the Synapse module asks these.

    room creation, invites, aliases, publishing  -> only the bot and the admins (configurable)
    a party's event in a managed room            -> policy.rules, before delivery (optional)
    an upload                                    -> policy.uploads.judge_upload: its bytes'
                                                    type against one global allow-list, no
                                                    archives, polyglots or active PDFs; its
                                                    size per user

A room is managed when the bot created it; its access follows from its power levels (the
plans in `rooms.py` set `events_default` per access), so the module needs no database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .rooms import EVENTS_DEFAULT
from .states import Access


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
