"""Hostile ids: SQL metacharacters, NUL, look-alike letters, case variants and 64 KB strings
are refused with a 4xx (never a 5xx), change nothing stored, and never merge two ids."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

from yarl import URL

from tests.api.conftest import Market
from tests.harness import random_word, unique_id

TABLES = ["transactions", "disputes", "marketplace_users", "outbox", "audit", "messages"]

HOSTILE = [
    "'; DROP TABLE transactions;--",
    "order-1' OR '1'='1",
    'order-1"; DELETE FROM disputes; --',
    "order-1\x00",
    "order\x00-1; DROP TABLE audit",
    "\u043erder-1",  # Cyrillic o in place of the Latin one
    "ord\u0435r-1",  # Cyrillic e
    "order\u200b-1",  # zero-width space
    "\uff4frder-1",  # fullwidth o
    "order-1\n",
    " order-1",
    "../order-1",
    "order%2F1",
    "x" * 129,
    "x" * 65536,
]


async def counts(market: Market) -> dict[str, int]:
    db = market.bridge.db
    found = {}
    for table in TABLES:  # our own constant names, not input
        found[table] = await db.fetchval(f"SELECT COUNT(*) FROM {table}")  # noqa: S608
    return found


def path(value: str) -> str:
    return quote(value, safe="")


async def refused(market: Market, method: str, url: str, body: object = None, **kw) -> int:
    """The call's 4xx status; a JSON answer carries a MARKET_* errcode (a request line over
    aiohttp's 8 KiB limit is refused by its parser, in plain text, before our code runs)."""
    client = market.client
    headers = {"Authorization": f"Bearer {client.token}"}
    full = client.base_url + "/api/v1" + url
    async with client.session.request(
        method, URL(full, encoded=True), json=body, headers=headers, **kw
    ) as response:
        text = await response.text()
        status = response.status
        sent = str(response.url)
    assert 400 <= status < 500, (method, url[:200], status, text[:500])
    if response.content_type == "application/json":
        assert json.loads(text)["errcode"].startswith("MARKET_"), text[:500]
    else:
        assert len(sent) > 8000, (url[:200], text[:200])
    return status


async def test_hostile_ids_are_refused_and_change_nothing(market: Market) -> None:
    seed = await market.created()
    seed_id = seed["transaction_id"]
    before = await counts(market)
    for bad in HOSTILE:
        short = len(bad) <= 200
        # In bodies: every id field of the creates.
        for field in ("transaction_id", "buyer", "seller"):
            body = market.new_transaction()
            if field == "transaction_id":
                body["transaction_id"] = bad
            else:
                body[field]["user_id"] = bad
            status = await refused(market, "POST", "/transactions", body)
            assert status == (400 if short else 413)
        dispute = {
            "dispute_id": bad,
            "transaction_id": seed_id,
            "reason": "broken",
            "opened_by": "buyer",
        }
        await refused(market, "POST", "/disputes", dispute)
        await refused(
            market, "POST", "/disputes", {**dispute, "dispute_id": "d-1", "transaction_id": bad}
        )
        # In paths: every operation that names an id.
        for method, url, body in [
            ("GET", f"/transactions/{path(bad)}", None),
            ("POST", f"/transactions/{path(bad)}/payment", None),
            ("POST", f"/transactions/{path(bad)}/close", {"outcome": "completed"}),
            ("GET", f"/transactions/{path(bad)}/transcript", None),
            ("GET", f"/disputes/{path(bad)}", None),
            ("POST", f"/disputes/{path(bad)}/resolve", {"decision": "no_action"}),
            ("GET", f"/disputes/{path(bad)}/transcript", None),
            ("GET", f"/users/{path(bad)}/rooms", None),
        ]:
            await refused(market, method, url, body)
        # In queries.
        if short:
            for name in ("transaction_id", "dispute_id"):
                await refused(market, "GET", "/audit", params={name: bad})
        else:
            await refused(market, "GET", "/audit", params={"transaction_id": bad})
    # A room id filter is only compared, never interpreted: an empty page, not an error.
    status, page = await market.client.call(
        "GET", "/audit", params={"room_id": "!'; DROP TABLE audit;--"}
    )
    assert (status, page["entries"]) == (200, [])
    status, _ = await market.client.call("POST", "/webhooks/replay", {"room_id": "!x' OR '1'='1"})
    assert status == 200

    assert await counts(market) == before
    status, again = await market.client.call("GET", f"/transactions/{seed_id}")
    assert status == 200 and again == seed


async def test_a_look_alike_id_is_not_the_original(market: Market) -> None:
    seed = await market.created(transaction_id=unique_id("order"))
    look_alike = seed["transaction_id"].replace("o", "\u043e", 1)
    for method, suffix in [("GET", ""), ("POST", "/payment")]:
        status, answer = await market.client.call(
            method, f"/transactions/{path(look_alike)}{suffix}"
        )
        assert (status, answer["errcode"]) == (400, "MARKET_INVALID_PARAM")
        assert answer["fields"] == ["transaction_id"]
    status, unchanged = await market.client.call("GET", f"/transactions/{seed['transaction_id']}")
    assert unchanged["state"] == "awaiting_payment"


async def test_case_and_escape_variants_are_different_transactions(market: Market) -> None:
    tag = random_word()
    ids = [f"Order-{tag}", f"order-{tag}", f"ORDER-{tag}", f"_order-{tag}", f"order-{tag}:a"]
    parties = market.new_transaction()  # the same two parties (a user id keeps its Matrix ID)
    bodies = [{**parties, "transaction_id": i, "title": f"item {i}"} for i in ids]
    # At once, so that a shared lock or alias would show as one room answered twice.
    answers = await asyncio.gather(
        *(market.client.call("POST", "/transactions", body) for body in bodies)
    )
    assert [status for status, _ in answers] == [201] * len(ids), answers
    rooms = [answer["room_id"] for _, answer in answers]
    assert len(set(rooms)) == len(ids)
    for transaction_id, room_id in zip(ids, rooms, strict=True):
        status, record = await market.client.call("GET", f"/transactions/{transaction_id}")
        assert status == 200
        assert (record["transaction_id"], record["room_id"], record["title"]) == (
            transaction_id,
            room_id,
            f"item {transaction_id}",
        )
    # Paying one opens that one only.
    status, paid = await market.client.call("POST", f"/transactions/{ids[0]}/payment")
    assert (status, paid["access"]) == (200, "open")
    for other in ids[1:]:
        status, record = await market.client.call("GET", f"/transactions/{other}")
        assert record["access"] == "locked", other
    stored = await market.bridge.db.fetchval(
        "SELECT COUNT(DISTINCT room_id) FROM transactions WHERE LOWER(transaction_id) LIKE $1",
        f"%order-{tag}%",
    )
    assert stored == len(ids)
