"""The homeserver -> appservice routes: tokens, storage before acknowledging, bad input."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import Api

ROOM = "!room:localhost"
BUYER = "@buyer:localhost"


def message(n: int, room: str = ROOM, sender: str = BUYER) -> dict:
    return {
        "event_id": f"$event{n}",
        "room_id": room,
        "type": "m.room.message",
        "sender": sender,
        "origin_server_ts": 1_700_000_000_000 + n,
        "content": {"msgtype": "m.text", "body": f"message {n}"},
    }


def receipt(event_id: str, user: str, ts: int, **extra: object) -> dict:
    return {
        "type": "m.receipt",
        "room_id": ROOM,
        "content": {event_id: {"m.read": {user: {"ts": ts, **extra}}}},
    }


async def put_txn(api: Api, txn_id: str, body: object, **kwargs: object):
    return await api.client.put(
        f"/_matrix/app/v1/transactions/{txn_id}", json=body, headers=api.auth, **kwargs
    )


async def stored_ids(api: Api) -> list[str]:
    """The room events stored (moved read positions are queued beside them, typed m.receipt)."""
    rows = await api.bridge.db.fetch(
        "SELECT event_id FROM inbox_events WHERE event_type <> 'm.receipt' ORDER BY seq"
    )
    return [row["event_id"] for row in rows]


ROUTES = [
    ("PUT", "/_matrix/app/v1/transactions/1"),
    ("GET", "/_matrix/app/v1/users/@marketbot:localhost"),
    ("GET", "/_matrix/app/v1/rooms/%23market_x:localhost"),
    ("POST", "/_matrix/app/v1/ping"),
    ("GET", "/_matrix/app/v1/thirdparty/protocol/x"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_a_missing_token_is_unauthorized(api: Api, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic abc"}):
        response = await api.client.request(method, path, json={}, headers=headers)
        assert response.status == 401
        assert (await response.json())["errcode"] == "M_UNAUTHORIZED"


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_a_wrong_token_is_forbidden(api: Api, method: str, path: str) -> None:
    headers = {"Authorization": f"Bearer {api.hs_token}x"}
    response = await api.client.request(method, path, json={"events": []}, headers=headers)
    assert response.status == 403
    assert (await response.json())["errcode"] == "M_FORBIDDEN"
    assert await stored_ids(api) == []


async def test_the_token_is_not_read_from_the_query_string(api: Api) -> None:
    response = await api.client.put(
        f"/_matrix/app/v1/transactions/1?access_token={api.hs_token}",
        json={"events": [message(1)]},
    )
    assert response.status == 401
    assert await stored_ids(api) == []


async def test_events_are_stored_before_the_answer(api: Api) -> None:
    response = await put_txn(api, "1", {"events": [message(1), message(2)]})
    assert response.status == 200
    assert await response.json() == {}
    stored = await api.bridge.inbox.get_event(ROOM, "$event2")
    assert (stored.status, stored.sender, stored.event_type) == (
        "pending",
        BUYER,
        "m.room.message",
    )
    assert json.loads(stored.event_json)["content"]["body"] == "message 2"
    assert await stored_ids(api) == ["$event1", "$event2"]


async def test_a_transaction_sent_twice_is_stored_once(api: Api) -> None:
    body = {"events": [message(1), message(2)]}
    assert (await put_txn(api, "5", body)).status == 200
    assert (await put_txn(api, "5", body)).status == 200
    # A fresh homeserver database restarts txn ids: the same events under another id.
    assert (await put_txn(api, "1", {"events": [message(2), message(3)]})).status == 200
    assert await stored_ids(api) == ["$event1", "$event2", "$event3"]


async def test_a_storage_failure_is_5xx_and_the_retry_succeeds(api: Api) -> None:
    body = {"events": [message(1)], "ephemeral": [receipt("$event1", BUYER, 10)]}
    await api.bridge.db.execute("ALTER TABLE inbox_events RENAME TO inbox_events_away")
    response = await put_txn(api, "9", body)
    assert response.status == 500
    assert (await response.json())["errcode"] == "M_UNKNOWN"
    await api.bridge.db.execute("ALTER TABLE inbox_events_away RENAME TO inbox_events")
    assert await stored_ids(api) == []
    assert await api.bridge.inbox.read_position(ROOM, BUYER) is None

    response = await put_txn(api, "9", body)  # Synapse re-sends the same transaction
    assert response.status == 200
    assert await stored_ids(api) == ["$event1"]
    assert (await api.bridge.inbox.read_position(ROOM, BUYER)).event_id == "$event1"


@pytest.mark.parametrize(
    "bad",
    [
        "not an object",
        {"event_id": "$x", "room_id": ROOM, "type": "m.room.message"},  # no sender, no ts
        {**message(7), "room_id": "not-a-room"},
        {**message(7), "origin_server_ts": "yesterday"},
        {**message(7), "content": ["a", "list"]},
        {**message(7), "sender": "@nul\u0000:localhost"},
        {**message(7), "event_id": "$" + "x" * 300},
    ],
)
async def test_a_malformed_event_is_parked_and_does_not_block(api: Api, bad: object) -> None:
    response = await put_txn(api, "1", {"events": [message(1), bad, message(2)]})
    assert response.status == 200
    assert (await put_txn(api, "2", {"events": [message(3)]})).status == 200
    statuses = await api.bridge.db.fetch("SELECT event_id, status FROM inbox_events ORDER BY seq")
    assert [row["status"] for row in statuses] == ["pending", "dead", "pending", "pending"]
    assert [row["event_id"] for row in statuses if row["status"] == "pending"] == [
        "$event1",
        "$event2",
        "$event3",
    ]
    (dead,) = await api.bridge.inbox.get_dead()
    assert dead.error
    assert json.loads(dead.event_json) == bad


async def test_a_receipt_updates_the_read_position(api: Api) -> None:
    seller = "@seller:localhost"
    ephemeral = [
        receipt("$event1", BUYER, 100),
        receipt("$event2", seller, 200, thread_id="main"),
        {"type": "m.typing", "room_id": ROOM, "content": {"user_ids": [BUYER]}},
        {"type": "m.presence", "sender": BUYER, "content": {"presence": "online"}},
    ]
    assert (await put_txn(api, "1", {"events": [], "ephemeral": ephemeral})).status == 200
    assert (await api.bridge.inbox.read_position(ROOM, BUYER)).event_id == "$event1"
    assert (await api.bridge.inbox.read_position(ROOM, seller)).event_id == "$event2"

    later = {
        "ephemeral": [
            receipt("$event4", BUYER, 400),
            receipt("$t", seller, 900, thread_id="$root"),
        ]
    }
    assert (await put_txn(api, "2", later)).status == 200
    assert (await api.bridge.inbox.read_position(ROOM, BUYER)).event_id == "$event4"
    # A receipt inside a thread is not a position in the room's timeline.
    assert (await api.bridge.inbox.read_position(ROOM, seller)).event_id == "$event2"
    assert await api.bridge.db.fetchval("SELECT COUNT(*) FROM read_positions") == 2
    assert await stored_ids(api) == []  # typing and presence are dropped
    # Each move of a read position is queued once for notification, in arrival order.
    queued = await api.bridge.db.fetch(
        "SELECT sender, event_json FROM inbox_events WHERE event_type = 'm.receipt' ORDER BY seq"
    )
    assert [(row["sender"], json.loads(row["event_json"])["event_id"]) for row in queued] == [
        (BUYER, "$event1"),
        (seller, "$event2"),
        (BUYER, "$event4"),
    ]


async def test_the_unstable_ephemeral_key_is_read(api: Api) -> None:
    body = {"events": [], "de.sorunome.msc2409.ephemeral": [receipt("$event1", BUYER, 5)]}
    assert (await put_txn(api, "1", body)).status == 200
    assert (await api.bridge.inbox.read_position(ROOM, BUYER)).event_id == "$event1"


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        (b"{not json", "M_NOT_JSON"),
        (b"[1, 2]", "M_BAD_JSON"),
        (b'{"events": {"a": 1}}', "M_BAD_JSON"),
        (b'{"events": [], "ephemeral": "x"}', "M_BAD_JSON"),
    ],
)
async def test_a_body_that_is_no_transaction_is_400(api: Api, body: bytes, errcode: str) -> None:
    response = await api.client.put("/_matrix/app/v1/transactions/1", data=body, headers=api.auth)
    assert response.status == 400
    assert (await response.json())["errcode"] == errcode


async def test_a_full_synapse_transaction_fits(api: Api) -> None:
    # Synapse sends up to 100 events; an event may be up to 64 KiB.
    big = [
        {**message(n), "content": {"msgtype": "m.text", "body": "x" * 60_000}} for n in range(100)
    ]
    response = await put_txn(api, "1", {"events": big})
    assert response.status == 200
    assert len(await stored_ids(api)) == 100


async def test_a_body_over_the_limit_is_413(api: Api) -> None:
    limit = api.bridge.config.appservice.max_transaction_bytes
    response = await api.client.put(
        "/_matrix/app/v1/transactions/1", data=b" " * (limit + 1), headers=api.auth
    )
    assert response.status == 413
    assert (await response.json())["errcode"] == "M_TOO_LARGE"


async def test_user_and_alias_queries(api: Api) -> None:
    bot = await api.client.get("/_matrix/app/v1/users/@marketbot:localhost", headers=api.auth)
    assert bot.status == 200
    other = await api.client.get("/_matrix/app/v1/users/@marketbot2:localhost", headers=api.auth)
    assert other.status == 404
    assert (await other.json())["errcode"] == "M_NOT_FOUND"
    alias = await api.client.get("/_matrix/app/v1/rooms/%23market_1:localhost", headers=api.auth)
    assert alias.status == 404
    assert (await alias.json())["errcode"] == "M_NOT_FOUND"


async def test_ping(api: Api) -> None:
    response = await api.client.post(
        "/_matrix/app/v1/ping", json={"transaction_id": "abc"}, headers=api.auth
    )
    assert response.status == 200
    assert await response.json() == {}


async def test_unknown_and_legacy_paths_are_not_served(api: Api) -> None:
    unknown = await api.client.get("/_matrix/app/v1/thirdparty/location", headers=api.auth)
    assert unknown.status == 404
    assert (await unknown.json())["errcode"] == "M_UNRECOGNIZED"
    legacy = await api.client.put(
        "/transactions/1", json={"events": [message(1)]}, headers=api.auth
    )
    assert legacy.status == 404
    assert await stored_ids(api) == []


async def test_health_is_always_ok_and_ready_needs_the_homeserver(api: Api) -> None:
    health = await api.client.get("/health")
    assert health.status == 200
    assert await health.json() == {"status": "ok"}
    # No homeserver runs behind this bridge: not ready, and the answer says which part.
    ready = await api.client.get("/ready")
    assert ready.status == 503
    assert await ready.json() == {
        "status": "not_ready",
        "checks": {"database": "ok", "homeserver": "unavailable"},
    }


async def test_ready_needs_the_database(api: Api) -> None:
    await api.bridge.db.stop()
    ready = await api.client.get("/ready")
    assert ready.status == 503
    assert (await ready.json())["checks"]["database"] == "unavailable"


async def test_metrics_count_transactions(api: Api) -> None:
    await put_txn(
        api, "1", {"events": [message(1), "bad"], "ephemeral": [receipt("$e", BUYER, 1)]}
    )
    text = await (await api.client.get("/metrics")).text()
    assert 'bridge_homeserver_transactions_total{result="stored"} 1.0' in text
    assert 'bridge_inbox_events_received_total{status="pending"} 1.0' in text
    assert 'bridge_inbox_events_received_total{status="dead"} 1.0' in text
    assert "bridge_read_receipts_received_total 1.0" in text
