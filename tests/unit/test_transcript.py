"""Room transcripts: what each stored event becomes, and that any tampering shows."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest

from policy.transcript import (
    TRANSCRIPT_FORMAT,
    build_transcript,
    transcript_hash,
    verify_transcript,
)

HEADER = {
    "room_id": "!txn:hs",
    "room_kind": "transaction",
    "transaction_id": "t-1",
    "dispute_id": None,
}
GENERATED_AT = 1_795_600_800_123  # 2026-11-25T10:00:00.123Z
T0 = 1_795_000_000_000
IMAGE = {
    "msgtype": "m.image",
    "body": "scratch.jpg",
    "url": "mxc://hs/abc",
    "info": {"mimetype": "image/jpeg", "size": 48_213, "w": 800, "h": 600},
}


def ev(event_id: str, type_: str, sender: str, content: Any, ts: int, **extra: Any) -> dict:
    return {
        "event_id": event_id,
        "room_id": "!txn:hs",
        "type": type_,
        "sender": sender,
        "origin_server_ts": ts,
        "content": content,
        "unsigned": {"age": 12},
        **extra,
    }


EVENTS = [
    ev("$create", "m.room.create", "@bot:hs", {"room_version": "11"}, T0, state_key=""),
    ev(
        "$join-buyer",
        "m.room.member",
        "@buyer:hs",
        {"membership": "join", "displayname": "Bea Buyer"},
        T0 + 1,
        state_key="@buyer:hs",
    ),
    ev(
        "$pl",
        "m.room.power_levels",
        "@bot:hs",
        {"users": {"@bot:hs": 100, "@admin:hs": 50}, "events_default": 0},
        T0 + 2,
        state_key="",
    ),
    ev(
        "$text", "m.room.message", "@buyer:hs", {"msgtype": "m.text", "body": "Is it new?"}, T0 + 3
    ),
    ev(
        "$reply",
        "m.room.message",
        "@seller:hs",
        {
            "msgtype": "m.text",
            "body": "> <@buyer:hs> Is it new?\n\nYes, unopened.",
            "format": "org.matrix.custom.html",
            "formatted_body": "<mx-reply>…</mx-reply>Yes, <b>unopened</b>.",
            "m.relates_to": {"m.in_reply_to": {"event_id": "$text"}},
        },
        T0 + 4,
    ),
    ev("$image", "m.room.message", "@seller:hs", IMAGE, T0 + 5),
    ev(
        "$edit",
        "m.room.message",
        "@seller:hs",
        {
            "msgtype": "m.text",
            "body": " * Yes, unopened and sealed.",
            "m.new_content": {"msgtype": "m.text", "body": "Yes, unopened and sealed."},
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$reply"},
        },
        T0 + 6,
    ),
    ev("$redact", "m.room.redaction", "@buyer:hs", {"redacts": "$text", "reason": "typo"}, T0 + 7),
    ev("$topic", "m.room.topic", "@admin:hs", {"topic": "Dispute pending"}, T0 + 8, state_key=""),
    ev(
        "$react",
        "m.reaction",
        "@buyer:hs",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$image", "key": "👍"}},
        T0 + 9,
    ),
    {"type": "m.receipt", "room_id": "!txn:hs", "content": {"$image": {"m.read": {}}}},
    {"event_id": "$broken", "content": {"body": "no type, no sender"}},
]
KINDS = [
    "state",
    "membership",
    "power_levels",
    "message",
    "message",
    "message",
    "edit",
    "redaction",
    "state",
]


@pytest.fixture
def document() -> dict:
    return build_transcript(HEADER, copy.deepcopy(EVENTS), GENERATED_AT)


def by_id(document: dict, event_id: str) -> dict:
    (entry,) = (e for e in document["entries"] if e["event_id"] == event_id)
    return entry


def test_the_document_has_the_header_and_the_entries_in_order(document) -> None:
    assert document["format"] == TRANSCRIPT_FORMAT
    assert document["room_id"] == "!txn:hs"
    assert document["room_kind"] == "transaction"
    assert document["transaction_id"] == "t-1"
    assert document["dispute_id"] is None
    assert document["generated_at"] == "2026-11-25T10:00:00.123Z"
    assert [e["kind"] for e in document["entries"]] == KINDS
    assert document["entry_count"] == len(KINDS)
    assert [e["index"] for e in document["entries"]] == list(range(len(KINDS)))
    assert [e["ts"] for e in document["entries"]] == [T0 + i for i in range(len(KINDS))]
    assert document["final_hash"] == document["entries"][-1]["hash"]


def test_reactions_receipts_and_malformed_dicts_are_skipped(document) -> None:
    ids = [e["event_id"] for e in document["entries"]]
    assert "$react" not in ids and "$broken" not in ids
    assert len(ids) == len(set(ids)) == len(EVENTS) - 3


def test_a_text_message(document) -> None:
    assert by_id(document, "$text") == {
        "index": 3,
        "kind": "message",
        "event_id": "$text",
        "sender": "@buyer:hs",
        "ts": T0 + 3,
        "msgtype": "m.text",
        "body": "Is it new?",  # kept though it was redacted later
        "formatted_body": None,
        "reply_to": None,
        "media": None,
        "original": None,  # the homeserver masked nothing
        "prev_hash": by_id(document, "$pl")["hash"],
        "hash": by_id(document, "$text")["hash"],
    }


def test_a_reply_keeps_its_target_and_html(document) -> None:
    reply = by_id(document, "$reply")
    assert reply["reply_to"] == "$text"
    assert reply["formatted_body"] == "<mx-reply>…</mx-reply>Yes, <b>unopened</b>."
    assert reply["body"].endswith("Yes, unopened.")


def test_an_image_has_its_media_metadata(document) -> None:
    image = by_id(document, "$image")
    assert image["msgtype"] == "m.image"
    assert image["media"] == {
        "url": "mxc://hs/abc",
        "mimetype": "image/jpeg",
        "size": 48_213,
        "name": "scratch.jpg",
    }


def test_a_file_is_named_by_its_filename() -> None:
    content = {"msgtype": "m.file", "body": "see attached", "filename": "invoice.pdf"}
    (entry,) = build_transcript(HEADER, [ev("$f", "m.room.message", "@s:hs", content, 1)], 0)[
        "entries"
    ]
    assert entry["media"] == {"url": None, "mimetype": None, "size": None, "name": "invoice.pdf"}


def test_an_edit_names_what_it_replaces_and_the_new_text(document) -> None:
    edit = by_id(document, "$edit")
    assert {k: edit[k] for k in ("kind", "replaces", "msgtype", "body")} == {
        "kind": "edit",
        "replaces": "$reply",
        "msgtype": "m.text",
        "body": "Yes, unopened and sealed.",
    }
    assert set(edit) == {
        *("index", "kind", "event_id", "sender", "ts", "prev_hash", "hash"),
        *("replaces", "msgtype", "body"),
    }


def test_an_edit_without_new_content_falls_back_to_its_content() -> None:
    original = ev("$o", "m.room.message", "@s:hs", {"msgtype": "m.text", "body": "fixd"}, 1)
    relation = {"rel_type": "m.replace", "event_id": "$o"}
    content = {"msgtype": "m.text", "body": "* fixed", "m.relates_to": relation}
    events = [original, ev("$e", "m.room.message", "@s:hs", content, 2)]
    entry = build_transcript(HEADER, events, 0)["entries"][1]
    assert (entry["kind"], entry["replaces"], entry["body"]) == ("edit", "$o", "* fixed")


def test_an_edit_of_another_senders_message_is_refused_as_evidence() -> None:
    original = ev("$o", "m.room.message", "@buyer:hs", {"msgtype": "m.text", "body": "250"}, 1)
    forged = {
        "msgtype": "m.text",
        "body": "* I agree to 50",
        "m.new_content": {"msgtype": "m.text", "body": "I agree to 50"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$o"},
    }
    events = [original, ev("$e", "m.room.message", "@seller:hs", forged, 2)]
    entry = build_transcript(HEADER, events, 0)["entries"][1]
    assert (entry["kind"], entry["sender"], entry["replaces"]) == (
        "refused_edit",
        "@seller:hs",
        "$o",
    )
    assert entry["reason"] == "edits a message of another sender"


def test_an_edit_of_no_earlier_message_is_refused_as_evidence() -> None:
    content = {"msgtype": "m.text", "body": "* x", "m.relates_to": {"rel_type": "m.replace"}}
    (entry,) = build_transcript(HEADER, [ev("$e", "m.room.message", "@s:hs", content, 1)], 0)[
        "entries"
    ]
    assert (entry["kind"], entry["reason"]) == ("refused_edit", "edits no earlier message")


def test_a_redaction_keeps_the_original_for_admins(document) -> None:
    redaction = by_id(document, "$redact")
    assert redaction["redacts"] == "$text"
    assert redaction["reason"] == "typo"
    assert redaction["original"] == {
        "type": "m.room.message",
        "sender": "@buyer:hs",
        "content": {"msgtype": "m.text", "body": "Is it new?"},
    }


@pytest.mark.parametrize(
    ("content", "top_level"),
    [
        ({"redacts": "$m"}, {}),  # room v11: in the content
        ({}, {"redacts": "$m"}),  # older rooms: top level
        ({"redacts": "$m"}, {"redacts": "$m"}),  # what Synapse sends v11 clients: both
    ],
)
def test_redaction_target_in_the_content_or_at_the_top(content, top_level) -> None:
    events = [
        ev("$m", "m.room.message", "@b:hs", {"msgtype": "m.text", "body": "secret"}, 1),
        ev("$r", "m.room.redaction", "@b:hs", content, 2, **top_level),
    ]
    redaction = build_transcript(HEADER, events, 0)["entries"][1]
    assert redaction["redacts"] == "$m"
    assert redaction["reason"] is None
    assert redaction["original"]["content"]["body"] == "secret"


def test_a_redaction_of_an_event_not_in_the_transcript_has_no_original() -> None:
    events = [
        ev("$x", "m.reaction", "@b:hs", {}, 1),
        ev("$r", "m.room.redaction", "@b:hs", {"redacts": "$x"}, 2),
        ev("$r2", "m.room.redaction", "@b:hs", {}, 3),
    ]
    entries = build_transcript(HEADER, events, 0)["entries"]
    assert [(e["redacts"], e["original"]) for e in entries] == [("$x", None), (None, None)]


def test_membership_power_levels_and_state(document) -> None:
    join = by_id(document, "$join-buyer")
    assert {k: join[k] for k in ("user_id", "membership", "displayname", "reason")} == {
        "user_id": "@buyer:hs",
        "membership": "join",
        "displayname": "Bea Buyer",
        "reason": None,
    }
    assert by_id(document, "$pl")["content"] == EVENTS[2]["content"]
    topic = by_id(document, "$topic")
    assert (topic["type"], topic["state_key"], topic["content"]) == (
        "m.room.topic",
        "",
        {"topic": "Dispute pending"},
    )
    assert by_id(document, "$create")["content"] == {"room_version": "11"}


@pytest.mark.parametrize(
    "event",
    [
        ev("$a", "m.room.message", "@b:hs", None, 1),
        ev("$b", "m.room.message", "@b:hs", ["not", "an", "object"], 1),
        ev("$c", "m.room.message", "@b:hs", {"msgtype": 7, "body": {"x": 1}}, "late"),
        ev("$d", "m.room.message", "@b:hs", {"m.relates_to": "x", "msgtype": "m.image"}, 1),
        ev("$e", "m.room.message", "@b:hs", {"m.relates_to": {"m.in_reply_to": "$x"}}, 1),
        ev("$f", "m.room.message", "@b:hs", {"msgtype": "m.video", "info": [], "url": 3}, 1),
        ev("$g", "m.room.message", "@b:hs", {"msgtype": "m.audio", "info": {"size": True}}, 1),
        ev("$h", "m.room.message", "@b:hs", {"m.relates_to": {"rel_type": "m.replace"}}, 1),
        ev("$i", "m.room.member", "@b:hs", "join", 1, state_key="@b:hs"),
        ev("$j", "m.room.redaction", "@b:hs", None, 1, redacts=["$x"]),
        ev("$k", "m.room.power_levels", "@b:hs", 5, 1, state_key=""),
        ev("$l", "m.room.name", "@b:hs", None, 1, state_key=""),
    ],
)
def test_malformed_content_never_raises_and_verifies(event) -> None:
    document = build_transcript(HEADER, [event], 0)
    assert document["entry_count"] == 1
    assert verify_transcript(json.loads(json.dumps(document))) == []


@pytest.mark.parametrize(
    "event",
    [
        "not a dict",
        None,
        {"type": "m.room.message", "sender": "@b:hs", "content": {"body": "no id"}},
        {"event_id": "$x", "sender": "@b:hs", "content": {"body": "no type"}},
        {"event_id": "$x", "type": "m.room.message", "content": {"body": "no sender"}},
        {"event_id": 5, "type": "m.room.message", "sender": "@b:hs"},
        ev("$enc", "m.room.encrypted", "@b:hs", {"ciphertext": "..."}, 1),
        ev("$sticker", "m.sticker", "@b:hs", {"body": "cat"}, 1),
        ev("$member", "m.room.member", "@b:hs", {"membership": "join"}, 1),  # no state key
    ],
)
def test_events_left_out(event) -> None:
    assert build_transcript(HEADER, [event], 0)["entries"] == []


def test_an_event_delivered_twice_has_one_entry() -> None:
    message = ev("$m", "m.room.message", "@b:hs", {"msgtype": "m.text", "body": "hi"}, 1)
    document = build_transcript(HEADER, [message, copy.deepcopy(message)], 0)
    assert document["entry_count"] == 1


def test_the_chain(document) -> None:
    genesis = transcript_hash(
        {
            "format": TRANSCRIPT_FORMAT,
            "room_id": "!txn:hs",
            "room_kind": "transaction",
            "transaction_id": "t-1",
            "dispute_id": None,
        }
    )
    previous = genesis
    for entry in document["entries"]:
        assert entry["prev_hash"] == previous
        assert entry["hash"] == transcript_hash({k: v for k, v in entry.items() if k != "hash"})
        previous = entry["hash"]
    assert document["final_hash"] == previous


def test_canonical_json_hash() -> None:
    assert transcript_hash({"b": 1, "a": "é"}) == transcript_hash({"a": "é", "b": 1})
    expected = hashlib.sha256('{"a":"é","b":[1,null]}'.encode()).hexdigest()
    assert transcript_hash({"b": [1, None], "a": "é"}) == expected


def test_an_intact_transcript_verifies_after_a_round_trip(document) -> None:
    assert verify_transcript(document) == []
    assert verify_transcript(json.loads(json.dumps(document))) == []
    assert verify_transcript(json.loads(json.dumps(document, ensure_ascii=False, indent=2))) == []


def test_an_empty_transcript_verifies_and_ends_at_the_header() -> None:
    document = build_transcript({**HEADER, "room_kind": "dispute", "dispute_id": "d-1"}, [], 0)
    assert document["entries"] == [] and document["entry_count"] == 0
    assert document["generated_at"] == "1970-01-01T00:00:00.000Z"
    assert verify_transcript(document) == []
    document["transaction_id"] = "t-2"
    assert verify_transcript(document) == [
        "final_hash does not match the header of an empty transcript"
    ]


def test_building_twice_gives_the_same_hashes() -> None:
    first = build_transcript(HEADER, copy.deepcopy(EVENTS), GENERATED_AT)
    second = build_transcript(HEADER, copy.deepcopy(EVENTS), GENERATED_AT + 60_000)
    assert [e["hash"] for e in first["entries"]] == [e["hash"] for e in second["entries"]]
    assert first["final_hash"] == second["final_hash"]
    assert first["generated_at"] != second["generated_at"]  # not covered by the hashes
    assert verify_transcript(second) == []


def test_the_document_does_not_share_the_callers_objects() -> None:
    events = copy.deepcopy(EVENTS)
    document = build_transcript(HEADER, events, 0)
    events[2]["content"]["users"]["@mallory:hs"] = 100
    events[3]["content"]["body"] = "changed"
    assert verify_transcript(document) == []


@pytest.mark.parametrize(
    ("index", "field", "value"),
    [
        (3, "body", "Is it used?"),
        (3, "sender", "@seller:hs"),
        (3, "ts", T0 + 999),
        (4, "reply_to", None),
        (5, "media", {"url": "mxc://hs/other", "mimetype": "image/jpeg", "size": 1, "name": "x"}),
        (6, "replaces", "$text"),
        (7, "original", None),
        (1, "membership", "leave"),
        (2, "content", {"users": {"@mallory:hs": 100}}),
        (8, "kind", "message"),
        (0, "event_id", "$other"),
        (8, "extra", "added"),
    ],
)
def test_editing_a_field_of_an_entry_shows(document, index, field, value) -> None:
    document["entries"][index][field] = value
    problems = verify_transcript(document)
    assert problems, field
    assert any(p.startswith(f"entry {index}") and "edited" in p for p in problems), problems


@pytest.mark.parametrize("index", [0, 3, 8])
def test_an_edited_entry_with_a_recomputed_hash_breaks_the_next_link(document, index) -> None:
    entry = document["entries"][index]
    entry["body"] = "forged"
    entry["hash"] = transcript_hash({k: v for k, v in entry.items() if k != "hash"})
    problems = verify_transcript(document)
    if index + 1 < len(document["entries"]):
        assert any(f"entry {index + 1}" in p and "does not follow" in p for p in problems)
    else:
        assert any("final_hash" in p for p in problems)


@pytest.mark.parametrize("index", [0, 4, 8])
def test_deleting_an_entry_shows(document, index) -> None:
    del document["entries"][index]
    problems = verify_transcript(document)
    assert any("entry_count is 9 but there are 8 entries" in p for p in problems)
    if index < 8:
        assert any(p.startswith(f"entry {index} ") and "index" in p for p in problems), problems
        assert any(p.startswith(f"entry {index} ") and "follow" in p for p in problems)
        # One removal is reported where it happened, not once per later entry.
        assert len(problems) == 3
    else:
        assert any("final_hash is not the hash of the last entry (entry 7)" in p for p in problems)


def test_deleting_an_entry_and_fixing_the_count_still_shows(document) -> None:
    del document["entries"][4]
    document["entry_count"] = 8
    assert verify_transcript(document) == [
        "entry 4 ($image) has index 5, expected 4: entries were removed, added or reordered here",
        "entry 4 ($image) does not follow entry 3: its prev_hash is not entry 3's hash, so "
        "entries were removed, added or reordered here, or entry 3 was edited and its hash "
        "recomputed",
    ]


def test_swapping_two_entries_shows(document) -> None:
    entries = document["entries"]
    entries[3], entries[5] = entries[5], entries[3]
    problems = verify_transcript(document)
    for i in (3, 4, 5):
        assert any(p.startswith(f"entry {i} ") for p in problems), problems
    assert sum("expected" in p for p in problems) == 2  # index 5 at 3, index 3 at 5


def test_adding_an_entry_shows(document) -> None:
    forged = copy.deepcopy(document["entries"][3])
    document["entries"].insert(4, forged)
    problems = verify_transcript(document)
    assert any(p.startswith("entry 4 ") and "index 3, expected 4" in p for p in problems)
    assert any("entry_count" in p for p in problems)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("transaction_id", "t-2"),
        ("room_id", "!other:hs"),
        ("room_kind", "dispute"),
        ("dispute_id", "d-9"),
    ],
)
def test_changing_the_header_shows(document, field, value) -> None:
    document[field] = value
    problems = verify_transcript(document)
    assert any(p.startswith("entry 0 ") and "header" in p for p in problems), problems


def test_changing_the_final_hash_shows(document) -> None:
    document["final_hash"] = "0" * 64
    assert verify_transcript(document) == [
        "final_hash is not the hash of the last entry (entry 8): entries were removed or added "
        "at the end, or the final hash was changed"
    ]


def test_changing_the_format_shows(document) -> None:
    document["format"] = "marketplace-transcript/2"
    problems = verify_transcript(document)
    assert problems[0] == (
        "the format is 'marketplace-transcript/2', not 'marketplace-transcript/1'"
    )


def test_generated_at_is_not_covered_but_unknown_fields_are_reported(document) -> None:
    document["generated_at"] = "2030-01-01T00:00:00.000Z"
    assert verify_transcript(document) == []
    document["note"] = "seller admitted fault"
    assert verify_transcript(document) == [
        "unknown top-level fields (not covered by the hashes): ['note']"
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "not a JSON object but null"),
        ([], "not a JSON object but a list"),
        ("transcript", "not a JSON object but a string"),
        (3.5, "not a JSON object but a number"),
        (True, "not a JSON object but a boolean"),
    ],
)
def test_a_document_that_is_not_an_object(value, expected) -> None:
    (problem,) = verify_transcript(value)
    assert expected in problem


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"entries": None}, "entries is not a list but null"),
        ({"entries": {"0": {}}}, "entries is not a list but an object"),
        ({"entry_count": "9"}, "entry_count is '9'"),
        ({"entry_count": True}, "entry_count is true"),
        ({"final_hash": None}, "final_hash is null, not a hash"),
        ({"room_id": 5}, "room_id is 5, not an id"),
        ({"room_kind": "chat"}, "room_kind is 'chat'"),
    ],
)
def test_wrong_types_are_problems(document, change, expected) -> None:
    document.update(change)
    problems = verify_transcript(document)
    assert any(expected in p for p in problems), problems


def test_a_missing_header_field_is_a_problem(document) -> None:
    del document["dispute_id"]
    problems = verify_transcript(document)
    assert "the header has no dispute_id (null for a transaction room)" in problems


@pytest.mark.parametrize("bad", [None, 7, "entry", [], [1, 2]])
def test_an_entry_that_is_not_an_object(document, bad) -> None:
    document["entries"][4] = bad
    problems = verify_transcript(document)
    assert any(p.startswith("entry 4 is not a JSON object") for p in problems), problems
    assert not any(p.startswith("entry 5 ") for p in problems)  # nothing to compare it with


@pytest.mark.parametrize(
    "entry",
    [
        {},
        {"index": 0},
        {"index": "0", "hash": 5, "prev_hash": []},
        {"index": 0, "hash": "x", "nested": [[[[{"a": float("nan")}]]]]},
    ],
)
def test_broken_entries_are_problems_not_exceptions(document, entry) -> None:
    document["entries"][0] = entry
    problems = verify_transcript(document)
    assert any(p.startswith("entry 0") for p in problems), problems


def test_values_json_cannot_carry_are_problems_not_exceptions(document) -> None:
    document["entries"][2]["content"] = {1: "int key", "a": "str key"}  # unsortable keys
    assert any(
        p == "entry 2 ($pl) cannot be hashed: it is not plain JSON"
        for p in verify_transcript(document)
    )
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    document["entries"][3]["body"] = deep
    assert any(
        p.startswith("entry 3 ($text) cannot be hashed") for p in verify_transcript(document)
    )


def test_a_lone_surrogate_is_hashed_and_verifies() -> None:
    message = ev("$m", "m.room.message", "@b:hs", {"msgtype": "m.text", "body": "\ud800"}, 1)
    document = build_transcript(HEADER, [message], 0)
    assert verify_transcript(json.loads(json.dumps(document))) == []
