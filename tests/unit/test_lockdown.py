"""Policy tables for the homeserver's lockdown: who may open side doors, upload sizes, and a
managed room's access as the Synapse module reads it from its power levels."""

from __future__ import annotations

import pytest

from policy.lockdown import Lockdown, access_from_power_levels, is_managed_room, lockdown_from
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
