"""The audit and transcript endpoints: filters, pages, clear 4xx for bad input."""

from __future__ import annotations

import pytest

from bridge.market.records.audit import AuditEntry
from tests.api.conftest import Market


async def test_the_audit_log_filters_and_pages(market: Market) -> None:
    created = await market.created()
    room_id, transaction_id = created["room_id"], created["transaction_id"]
    audit = market.bridge.market.audit
    for n in range(5):
        await audit.write(
            AuditEntry("@admin:localhost", "command", room_id, subject=f"s{n}", detail=f"#{n}")
        )
    await audit.write(AuditEntry("@admin:localhost", "command", "!elsewhere:localhost"))

    pages, after = [], 0
    while True:
        status, page = await market.client.call(
            "GET",
            "/audit",
            params={"transaction_id": transaction_id, "limit": "2", "after": str(after)},
        )
        assert status == 200, page
        pages.append(page["entries"])
        if page["next"] is None:
            break
        after = page["next"]
    entries = [e for page in pages for e in page]
    # The room's creation (by the bot), then the five commands, in order, none elsewhere.
    assert entries[0]["action"] == "room.created"
    assert [e["subject"] for e in entries if e["action"] == "command"] == [
        f"s{n}" for n in range(5)
    ]
    assert {e["room_id"] for e in entries} == {room_id}
    assert {e["transaction_id"] for e in entries} == {transaction_id}
    assert all(len(page) <= 2 for page in pages)

    status, page = await market.client.call(
        "GET", "/audit", params={"room_id": "!elsewhere:localhost"}
    )
    assert [e["room_id"] for e in page["entries"]] == ["!elsewhere:localhost"]
    status, page = await market.client.call(
        "GET", "/audit", params={"since": "2999-01-01T00:00:00Z"}
    )
    assert (status, page["entries"], page["next"]) == (200, [], None)
    status, page = await market.client.call(
        "GET", "/audit", params={"until": "2999-01-01T00:00:00+01:00"}
    )
    assert len(page["entries"]) >= 7


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"after": "-1"}, "after"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-11-25T10:00:00"}, "until"),  # no offset: ambiguous
        ({"transaction_id": "a b"}, "transaction_id"),
        ({"dispute_id": "x" * 129}, "dispute_id"),
        ({"room_id": "not-a-room"}, "room_id"),
    ],
)
async def test_bad_audit_queries_are_refused(market: Market, params: dict, field: str) -> None:
    status, body = await market.client.call("GET", "/audit", params=params)
    assert (status, body["errcode"], body["fields"]) == (400, "MARKET_INVALID_PARAM", [field])


async def test_transcripts_of_unknown_or_malformed_ids(market: Market) -> None:
    for path, status_code in [
        ("/transactions/nope/transcript", 404),
        ("/disputes/nope/transcript", 404),
        ("/transactions/a%20b/transcript", 400),
    ]:
        status, body = await market.client.call("GET", path)
        assert status == status_code, body
        assert body["errcode"].startswith("MARKET_")


async def test_a_fresh_transaction_has_a_transcript_of_its_room(market: Market) -> None:
    created = await market.created()
    status, document = await market.client.call(
        "GET", f"/transactions/{created['transaction_id']}/transcript"
    )
    assert status == 200
    assert (document["room_id"], document["transaction_id"], document["dispute_id"]) == (
        created["room_id"],
        created["transaction_id"],
        None,
    )
    assert document["entry_count"] == len(document["entries"])
