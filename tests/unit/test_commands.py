"""The admin command parser and who may give commands."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy.commands import COMMANDS, Command, Refusal, help_text, may_command, parse_command

P = "!market"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("!market help", Command("help", ())),
        ("!market   disputes  ", Command("disputes", ())),
        ("!market status order-1", Command("status", ("order-1",))),
        ("!market lock order-1", Command("lock", ("order-1",))),
        ("!market unlock order-1", Command("unlock", ("order-1",))),
        ("!market resolve d-1 refund_buyer", Command("resolve", ("d-1", "refund_buyer"))),
        (
            "!market resolve d-1 refund_buyer Photos  show damage",
            Command("resolve", ("d-1", "refund_buyer", "Photos show damage")),
        ),
        ("!market remove @eve:hs order-1", Command("remove", ("@eve:hs", "order-1"))),
    ],
)
def test_commands(body, expected) -> None:
    assert parse_command(body, P) == expected


@pytest.mark.parametrize(
    "body",
    ["hello", "market help", "!marketing help", "\uff01market help", " !market help", None, 42],
)
def test_messages_not_addressed_to_the_bot(body) -> None:
    assert parse_command(body, P) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("!market", "which command"),
        ("!market fly", "unknown command 'fly'"),
        ("!market lock", "usage: !market lock <transaction id>"),
        ("!market lock a b", "usage"),
        ("!market lock order-1\n!market unlock order-2", "one command per message"),
        ("!market lock order\x00-1", "control characters"),
        ("!market lock \u043erder-1", "is not an id"),  # a Cyrillic o
        ("!market resolve d-1 Refund", "is not a decision"),
        ("!market remove eve order-1", "is not a Matrix user ID"),
        ("!market status " + "x" * 2000, "at most 1000 characters"),
    ],
)
def test_refusals(body, reason) -> None:
    refusal = parse_command(body, P)
    assert isinstance(refusal, Refusal)
    assert reason in refusal.reason


@given(st.text(max_size=1200))
def test_any_text_is_a_command_a_refusal_or_nothing(text: str) -> None:
    for body in (text, f"{P} {text}", f"{P} lock {text}", f"{P} resolve d-1 no_action {text}"):
        parsed = parse_command(body, P)
        assert parsed is None or isinstance(parsed, Command | Refusal)
        if isinstance(parsed, Command):
            assert parsed.name in COMMANDS
            assert "\n" not in body.strip() and len(body) <= 1000
            assert all(arg.isprintable() for arg in parsed.args)


@pytest.mark.parametrize(
    ("sender", "room_kind", "allowed"),
    [
        ("@admin:hs", "management", True),
        ("@admin:hs", "dispute", True),
        ("@admin:hs", "transaction", False),
        ("@admin:hs", None, False),  # a DM or any other room
        ("@buyer:hs", "dispute", False),
        ("@buyer:hs", "management", False),
    ],
)
def test_who_may_command_where(sender, room_kind, allowed) -> None:
    assert may_command(sender, ("@admin:hs",), room_kind) is allowed


def test_help_lists_every_command() -> None:
    text = help_text(P)
    for spec in COMMANDS.values():
        assert f"{P} {spec.usage}" in text
