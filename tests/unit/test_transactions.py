"""Parsing transactions: any JSON becomes an event, a dead event or nothing, never a crash."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from appservice.transactions import (
    MalformedEvent,
    Receipt,
    RoomEvent,
    parse_receipts,
    parse_room_event,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "event_id": st.one_of(st.text(max_size=6), st.just("$e")),
        "room_id": st.one_of(st.text(max_size=6), st.just("!r")),
        "type": st.text(max_size=6),
        "sender": st.one_of(st.text(max_size=6), st.just("@u:x")),
        "origin_server_ts": st.one_of(st.integers(), st.text(max_size=3)),
        "content": json_values,
    },
)


@given(st.one_of(json_values, event_like))
def test_any_json_parses_to_an_event_or_a_dead_one(raw: object) -> None:
    parsed = parse_room_event(raw)
    assert isinstance(parsed, RoomEvent | MalformedEvent)
    assert json.loads(parsed.json_text) == json.loads(json.dumps(raw))
    if isinstance(parsed, MalformedEvent):
        assert parsed.reason
        assert "\x00" not in parsed.key and "\x00" not in parsed.room_id
        # The same bad event always gets the same key, so a re-sent transaction dedupes.
        assert parse_room_event(raw).key == parsed.key


@given(json_values)
def test_any_json_yields_receipts_or_nothing(raw: object) -> None:
    assert all(isinstance(r, Receipt) for r in parse_receipts(raw))


def test_the_latest_receipt_per_user_wins_within_one_edu() -> None:
    edu = {
        "type": "m.receipt",
        "room_id": "!r:x",
        "content": {
            "$old": {"m.read": {"@a:x": {"ts": 1}}},
            "$new": {"m.read": {"@a:x": {"ts": 2}}, "m.read.private": {"@b:x": {"ts": 3}}},
        },
    }
    assert parse_receipts(edu) == [Receipt("!r:x", "@a:x", "$new", 2)]
