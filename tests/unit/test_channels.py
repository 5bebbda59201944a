"""The side channels' pure decisions (what the client gateway and the module ask), and what is
refused or masked before delivery in each mode."""

from __future__ import annotations

import pytest

from policy.channels import (
    AccountChange,
    account_change_refusal,
    account_data_refusal,
    is_managed_alias,
    keys_seen_by,
    may_post,
    own_membership_content,
    to_device_allowed,
)
from policy.delivery import BeforeDelivery, refused_for
from policy.ids import UserId
from policy.rules import Rule, Verdict, Violation

ME, OTHER = UserId("@buyer:hs"), UserId("@seller:hs")


@pytest.mark.parametrize(
    ("body", "allowed"),
    [
        ({"messages": {ME: {"*": {}}}}, True),
        ({"messages": {ME: {"DEV": {}}, OTHER: {"*": {}}}}, False),
        ({"messages": {OTHER: {"*": {}}}}, False),
        ({"messages": {}}, True),  # nothing to anyone
        ({"messages": "x"}, False),
        ([], False),
        (None, False),
    ],
)
def test_to_device_messages_go_only_to_ones_own_devices(body: object, allowed: bool) -> None:
    assert to_device_allowed(ME, body) is allowed


LOCKED = {"users": {"@admin:hs": 50}, "users_default": 0, "events_default": 50}
OPEN = {**LOCKED, "events_default": 0}


@pytest.mark.parametrize(
    ("levels", "user", "allowed"),
    [
        (LOCKED, ME, False),
        (OPEN, ME, True),
        (LOCKED, UserId("@admin:hs"), True),
        ({**OPEN, "users": {ME: -1}}, ME, False),  # muted
        ({**OPEN, "events": {"m.room.message": 50}}, ME, False),
        ({"users_default": "zero"}, ME, True),  # malformed numbers read as the defaults
        (None, ME, False),
    ],
)
def test_who_may_post_and_so_type(levels: object, user: UserId, allowed: bool) -> None:
    assert may_post(levels, user) is allowed  # type: ignore[arg-type]


def test_a_party_sees_only_its_own_keys_and_the_bots_and_admins() -> None:
    bot = UserId("@bot:hs")
    mine = {"A": {"unsigned": {"device_display_name": "my phone"}}}
    theirs = {"WHATSAPP_07911123456": {"keys": {"ed25519:X": "whatsapp07911123456"}}}
    answer = {
        "device_keys": {ME: mine, OTHER: theirs, bot: {"BOT": {}}},
        "master_keys": {OTHER: {"usage": ["master"], "note": "07911 123456"}},
        "one_time_keys": {OTHER: {"B": {"signed_curve25519:07911123456": {"key": "k"}}}},
        "failures": {},
    }
    seen = keys_seen_by(answer, ME, frozenset({bot}))
    assert seen == {
        "device_keys": {ME: mine, bot: {"BOT": {}}},
        "master_keys": {},
        "one_time_keys": {},
        "failures": {},
    }
    assert keys_seen_by({"device_keys": "x"}, ME, frozenset()) == {"device_keys": "x"}
    assert keys_seen_by(None, ME, frozenset()) is None


def test_a_partys_own_membership_keeps_only_what_clients_need() -> None:
    content = {
        "membership": "leave",
        "reason": "call 07911 123456",
        "displayname": "Bob",
        "note": "x",
        "avatar_url": "mxc://hs/a",
    }
    assert own_membership_content(content) == {
        "membership": "leave",
        "displayname": "Bob",
        "avatar_url": "mxc://hs/a",
    }


@pytest.mark.parametrize(
    ("alias", "managed"),
    [
        ("#market_transaction_order-1:hs", True),
        ("#MARKET_dispute_d-1:hs", True),
        ("#marketing:hs", False),
        ("!room:hs", False),
        ("#other:hs", False),
    ],
)
def test_which_aliases_are_the_bridges(alias: str, managed: bool) -> None:
    assert is_managed_alias(alias, "market_") is managed


MANAGED = UserId("@market_ann:hs")  # the marketplace's user "ann", with no Matrix ID of her own
BROUGHT = [
    UserId("@ann:hs"),  # her own account
    UserId("@marketing:hs"),  # a lookalike of the prefix
    UserId("@market_ann:other.example"),  # another server's
    UserId("@market_:hs"),  # the prefix alone names no marketplace user
]


@pytest.mark.parametrize("change", list(AccountChange))
def test_a_managed_account_changes_none_of_its_ways_in(change: AccountChange) -> None:
    refusal = account_change_refusal(change, MANAGED, "market_", "hs")
    assert refusal is not None and "managed by the marketplace" in refusal
    for user in BROUGHT:  # an account its user brought is theirs
        assert account_change_refusal(change, user, "market_", "hs") is None


@pytest.mark.parametrize(
    ("data_type", "refused"),
    [
        ("m.invite_permission_config", True),
        ("org.matrix.msc4155.invite_permission_config", True),
        ("M.INVITE_PERMISSION_CONFIG", False),  # another type: Synapse reads this one only
        ("m.direct", False),
        ("m.ignored_user_list", False),
    ],
)
def test_a_managed_account_cannot_refuse_invitations(data_type: str, refused: bool) -> None:
    refusal = account_data_refusal(data_type, MANAGED, "market_", "hs")
    assert (refusal is not None) is refused
    for user in BROUGHT:  # the bridge reports such a party as invite_blocked
        assert account_data_refusal(data_type, user, "market_", "hs") is None


CONTACT = Violation(Rule.CONTACT_DETAILS, "contact details")
FILE = Violation(Rule.MEDIA_TYPE, "this type of file is not allowed here")


@pytest.mark.parametrize(
    ("violations", "mode", "refused"),
    [
        ((CONTACT,), BeforeDelivery.REFUSE, ["contact_details"]),
        ((CONTACT,), BeforeDelivery.MASK, []),  # masked instead
        ((CONTACT, FILE), BeforeDelivery.MASK, ["media_type"]),
        ((FILE,), BeforeDelivery.OFF, []),  # the bot redacts after delivery
        ((), BeforeDelivery.REFUSE, []),
    ],
)
def test_what_is_refused_before_delivery_in_each_mode(
    violations: tuple, mode: BeforeDelivery, refused: list[str]
) -> None:
    assert refused_for(Verdict(violations), mode) == refused
