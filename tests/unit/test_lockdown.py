"""Policy tables for the homeserver's lockdown: who may open side doors, upload types by their
bytes, and a managed room's access as the Synapse module reads it from its power levels."""

from __future__ import annotations

import pytest

from policy.lockdown import (
    KNOWN_UPLOAD_TYPES,
    Lockdown,
    access_from_power_levels,
    is_managed_room,
    lockdown_from,
    sniff_media_type,
)
from policy.rooms import Participants, RoomKind, plan_room
from policy.states import Access

BOT, ADMIN, BUYER = "@bot:hs", "@admin:hs", "@buyer:hs"
LOCKDOWN = Lockdown(
    bot=BOT,
    admins=frozenset({ADMIN}),
    upload_types=frozenset({"image/png", "image/jpeg", "application/pdf", "application/json"}),
    party_max_upload_bytes=1000,
)


@pytest.mark.parametrize(
    ("user", "parties_may", "allowed"),
    [
        (BOT, False, True),
        (ADMIN, False, True),
        (BUYER, False, False),
        (BUYER, True, True),
    ],
)
def test_who_may_create_rooms_and_invite(user: str, parties_may: bool, allowed: bool) -> None:
    lockdown = Lockdown(
        BOT,
        frozenset({ADMIN}),
        parties_may_create_rooms=parties_may,
        parties_may_invite=parties_may,
    )
    assert lockdown.may_create_room(user) is allowed
    assert lockdown.may_invite(user) is allowed


@pytest.mark.parametrize(
    ("user", "size", "allowed"),
    [(BUYER, 1000, True), (BUYER, 1001, False), (ADMIN, 10**9, True), (BOT, 10**9, True)],
)
def test_upload_sizes_per_user(user: str, size: int, allowed: bool) -> None:
    assert LOCKDOWN.may_upload(user, size) is allowed


@pytest.mark.parametrize(
    ("content", "media_type"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),  # a RIFF that is not WebP
        (b"%PDF-1.7\n", "application/pdf"),
        (b'  {"format": "marketplace-transcript/1"}', "application/json"),
        (b"[1, 2]", "application/json"),
        (b"{not json", None),
        (b"MZ\x90\x00\x03", None),  # a Windows executable, whatever it claims to be
        (b"\x7fELF\x02\x01", None),
        (b"PK\x03\x04", None),  # zip (and docx, apk, jar)
        (b"<svg xmlns='http://www.w3.org/2000/svg'>", None),  # scriptable
        (b"<html><script>", None),
        (b"", None),
    ],
)
def test_uploads_are_known_by_their_first_bytes(content: bytes, media_type: str | None) -> None:
    assert sniff_media_type(content) == media_type
    assert LOCKDOWN.upload_allowed(content) is (media_type in LOCKDOWN.upload_types)


def test_every_sniffed_type_is_a_known_upload_type() -> None:
    assert {"image/jpeg", "image/png", "application/pdf", "application/json"} <= (
        KNOWN_UPLOAD_TYPES
    )


@pytest.mark.parametrize("access", list(Access))
def test_the_module_reads_each_plans_access_back(access: Access) -> None:
    people = Participants(bot=BOT, parties=(BUYER,), admins=(ADMIN,))
    levels = plan_room(RoomKind.TRANSACTION, access, people, "12", "A bike").power_levels
    expected = Access.LOCKED if access is Access.FROZEN else access  # alike for parties
    assert access_from_power_levels(levels) is expected


@pytest.mark.parametrize(
    ("levels", "access"),
    [
        (None, None),
        ("not levels", None),
        ({"events_default": 7}, None),  # fits no plan: not judged
        ({}, Access.OPEN),  # Matrix's default events_default is 0
    ],
)
def test_power_levels_outside_the_plans(levels: object, access: Access | None) -> None:
    assert access_from_power_levels(levels) is access


def test_managed_rooms_are_the_bots() -> None:
    assert is_managed_room(BOT, BOT)
    assert not is_managed_room(BUYER, BOT) and not is_managed_room(None, BOT)


def test_the_modules_config_block_reads_back() -> None:
    lockdown = lockdown_from(
        {
            "bot": BOT,
            "admins": [ADMIN],
            "parties_may_invite": True,
            "upload_types": ["image/png"],
            "party_max_upload_bytes": 5,
        }
    )
    assert lockdown == Lockdown(BOT, frozenset({ADMIN}), False, True, frozenset({"image/png"}), 5)
