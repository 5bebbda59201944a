"""The marketplace API for transactions, against a real bridge and Synapse: auth, validation,
conflicts and transitions."""

from __future__ import annotations

import json
import re

import pytest

from tests.api.conftest import Market
from tests.conftest import UserFactory

ENDPOINTS = [
    ("POST", "/transactions"),
    ("GET", "/transactions/t1"),
    ("POST", "/transactions/t1/payment"),
    ("POST", "/transactions/t1/close"),
    ("GET", "/transactions/t1/nowhere"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_tokens_are_required(market: Market, method: str, path: str) -> None:
    for headers, errcode in (
        ({"Authorization": ""}, "MARKET_MISSING_TOKEN"),
        ({"Authorization": "Basic x"}, "MARKET_MISSING_TOKEN"),
        ({"Authorization": f"Bearer {market.client.token}x"}, "MARKET_UNKNOWN_TOKEN"),
    ):
        status, body = await market.client.call(method, path, {}, headers=headers)
        assert (status, body["errcode"]) == (401, errcode)


async def test_the_openapi_document_is_public_and_describes_the_models(market: Market) -> None:
    status, body = await market.client.call("GET", "/openapi.json", headers={"Authorization": ""})
    assert status == 200
    assert body["openapi"] == "3.1.0"
    assert set(body["paths"]) == {
        "/transactions",
        "/transactions/{transaction_id}",
        "/transactions/{transaction_id}/payment",
        "/transactions/{transaction_id}/close",
        "/users/{user_id}/rooms",
        "/disputes",
        "/disputes/{dispute_id}",
        "/disputes/{dispute_id}/resolve",
        "/webhooks/failed",
        "/webhooks/replay",
        "/transactions/{transaction_id}/transcript",
        "/disputes/{dispute_id}/transcript",
        "/audit",
        "/users/{user_id}",
        "/users/{user_id}/sessions",
        "/users/{user_id}/sessions/{device_id}",
        "/users/{user_id}/suspend",
        "/users/{user_id}/unsuspend",
        "/users/{user_id}/erase",
        "/users/{user_id}/export",
        "/users/{user_id}/responsiveness",
        "/responsiveness",
        "/transactions/{transaction_id}/hold",
        "/holds",
    }
    schemas = body["components"]["schemas"]
    # Every reference resolves: each response and request model is in the components.
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(body)))
    assert refs and refs <= set(schemas)
    create = schemas["CreateTransactionRequest"]
    assert create["additionalProperties"] is False
    assert set(create["required"]) == {"transaction_id", "title", "buyer", "seller"}
    assert set(schemas["CloseTransactionRequest"]["properties"]["outcome"].get("enum", [])) or (
        "$ref" in schemas["CloseTransactionRequest"]["properties"]["outcome"]
    )


def _replace(body: dict, path: str, value: object) -> dict:
    """A copy of ``body`` with the dotted ``path`` set to ``value`` (or removed for ...)."""
    copy = {k: (dict(v) if isinstance(v, dict) else v) for k, v in body.items()}
    *parents, leaf = path.split(".")
    target = copy
    for key in parents:
        target = target[key]
    if value is ...:
        del target[leaf]
    else:
        target[leaf] = value
    return copy


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("transaction_id", "", "transaction_id"),
        ("transaction_id", "x" * 129, "transaction_id"),
        ("transaction_id", "with space", "transaction_id"),
        ("transaction_id", 12, "transaction_id"),
        ("transaction_id", ..., "transaction_id"),
        ("title", "", "title"),
        ("title", "   ", "title"),
        ("title", "x" * 201, "title"),
        ("title", "bell\x07", "title"),
        ("title", None, "title"),
        ("buyer", "someone", "buyer"),
        ("buyer.user_id", "bad/id", "buyer.user_id"),
        ("buyer.matrix_id", "alice", "buyer.matrix_id"),
        ("buyer.matrix_id", "@Alice:localhost", "buyer.matrix_id"),
        ("seller.user_id", ..., "seller.user_id"),
        ("seller.avatar_url", "http://example.org/a.png", "seller.avatar_url"),
        ("seller.avatar_url", "https://[", "seller.avatar_url"),
        ("seller.avatar_url", "https://:80/a.png", "seller.avatar_url"),
        ("seller.extra", 1, "seller.extra"),
        ("extra", True, "extra"),
    ],
)
async def test_each_invalid_create_is_400_naming_the_field(
    market: Market, path: str, value: object, field: str
) -> None:
    body = _replace(market.new_transaction(), path, value)
    status, answer = await market.client.call("POST", "/transactions", body)
    assert status == 400, answer
    assert answer["errcode"] == "MARKET_INVALID_PARAM"
    assert field in [p["field"] for p in answer["problems"]]


async def test_buyer_and_seller_must_differ(market: Market) -> None:
    body = market.new_transaction()
    body["seller"]["matrix_id"] = body["buyer"]["matrix_id"]
    status, answer = await market.client.call("POST", "/transactions", body)
    assert (status, answer["errcode"]) == (400, "MARKET_INVALID_PARAM")
    assert "different Matrix IDs" in answer["error"]


@pytest.mark.parametrize(
    ("matrix_id", "reason"),
    [("@nobody-here:localhost", "does not exist"), ("@alice:elsewhere.example", "allowed server")],
)
async def test_parties_must_be_real_users_on_allowed_servers(
    market: Market, matrix_id: str, reason: str
) -> None:
    body = market.new_transaction()
    body["seller"]["matrix_id"] = matrix_id
    status, answer = await market.client.call("POST", "/transactions", body)
    assert (status, answer["errcode"]) == (400, "MARKET_INVALID_PARAM")
    assert reason in answer["error"]
    assert answer["fields"] == ["seller.matrix_id"]
    status, _ = await market.client.call("GET", f"/transactions/{body['transaction_id']}")
    assert status == 404  # nothing was stored


@pytest.mark.parametrize(
    ("raw", "errcode", "status"),
    [
        (b"{not json", "MARKET_BAD_JSON", 400),
        (b"[1, 2]", "MARKET_BAD_JSON", 400),
        (b'"text"', "MARKET_BAD_JSON", 400),
        (b"", "MARKET_BAD_JSON", 400),
        (b"{" + b" " * 70_000 + b"}", "MARKET_TOO_LARGE", 413),
    ],
)
async def test_bodies_that_are_not_json_objects(
    market: Market, raw: bytes, errcode: str, status: int
) -> None:
    got, answer = await market.client.call(
        "POST", "/transactions", data=raw, headers={"Content-Type": "application/json"}
    )
    assert (got, answer["errcode"]) == (status, errcode)


async def test_path_ids_are_validated(market: Market) -> None:
    status, answer = await market.client.call("GET", "/transactions/bad%20id")
    assert (status, answer["errcode"]) == (400, "MARKET_INVALID_PARAM")
    status, answer = await market.client.call("GET", "/transactions/unknown-id")
    assert (status, answer["errcode"]) == (404, "MARKET_NOT_FOUND")
    status, answer = await market.client.call("POST", "/transactions/unknown-id/payment")
    assert (status, answer["errcode"]) == (404, "MARKET_NOT_FOUND")


async def test_create_answers_the_locked_room(market: Market) -> None:
    body = market.new_transaction()
    status, answer = await market.client.call("POST", "/transactions", body)
    assert status == 201, answer
    assert answer["transaction_id"] == body["transaction_id"]
    assert answer["state"] == "awaiting_payment"
    assert answer["access"] == "locked"
    assert answer["room_id"].startswith("!")
    assert answer["buyer"] == {**body["buyer"], "membership": None}
    assert answer["seller"] == {**body["seller"], "membership": None}
    status, again = await market.client.call("GET", f"/transactions/{body['transaction_id']}")
    assert status == 200
    assert again == answer


async def test_a_repeated_create_is_200_with_the_same_room(market: Market) -> None:
    body = market.new_transaction()
    _, first = await market.client.call("POST", "/transactions", body)
    status, second = await market.client.call("POST", "/transactions", body)
    assert status == 200
    assert second["room_id"] == first["room_id"]


@pytest.mark.parametrize(
    ("path", "value", "fields"),
    [
        ("title", "Another bike", ["title"]),
        ("buyer.user_id", "someone-else", ["buyer"]),
        ("seller.matrix_id", None, ["seller"]),
    ],
)
async def test_the_same_id_with_other_content_is_409_naming_fields(
    market: Market, make_user: UserFactory, path: str, value: object, fields: list[str]
) -> None:
    body = market.new_transaction()
    await market.client.call("POST", "/transactions", body)
    if value is None:
        value = (await make_user("other")).user_id
    status, answer = await market.client.call("POST", "/transactions", _replace(body, path, value))
    assert (status, answer["errcode"]) == (409, "MARKET_CONFLICT")
    assert answer["fields"] == fields


async def test_a_user_id_keeps_its_matrix_id_for_good(
    market: Market, make_user: UserFactory
) -> None:
    first = await market.created()
    other = await make_user("other")
    body = market.new_transaction()
    body["buyer"] = {"user_id": first["buyer"]["user_id"], "matrix_id": other.user_id}
    status, answer = await market.client.call("POST", "/transactions", body)
    assert (status, answer["errcode"]) == (409, "MARKET_CONFLICT")
    assert answer["fields"] == ["buyer.user_id", "buyer.matrix_id"]
    # ... and a Matrix ID belongs to one marketplace user.
    body = market.new_transaction()
    body["seller"] = {"user_id": "another-seller", "matrix_id": first["seller"]["matrix_id"]}
    status, answer = await market.client.call("POST", "/transactions", body)
    assert (status, answer["errcode"]) == (409, "MARKET_CONFLICT")


async def test_transitions(market: Market) -> None:
    txn = await market.created()
    path = f"/transactions/{txn['transaction_id']}"

    status, paid = await market.client.call("POST", path + "/payment")
    assert (status, paid["state"], paid["access"]) == (200, "paid", "open")
    assert paid["paid_at"] is not None
    status, again = await market.client.call("POST", path + "/payment", {})
    assert (status, again) == (200, paid)

    status, closed = await market.client.call("POST", path + "/close", {"outcome": "completed"})
    assert (status, closed["state"], closed["outcome"], closed["access"]) == (
        200,
        "closed",
        "completed",
        "archived",
    )
    status, again = await market.client.call("POST", path + "/close", {"outcome": "completed"})
    assert (status, again) == (200, closed)

    for call in (("/close", {"outcome": "refunded"}), ("/payment", None)):
        status, answer = await market.client.call("POST", path + call[0], call[1])
        assert (status, answer["errcode"]) == (409, "MARKET_INVALID_STATE")
    status, final = await market.client.call("GET", path)
    assert final == closed


async def test_an_unpaid_transaction_can_close(market: Market) -> None:
    txn = await market.created()
    path = f"/transactions/{txn['transaction_id']}"
    status, closed = await market.client.call("POST", path + "/close", {"outcome": "cancelled"})
    assert (status, closed["state"], closed["outcome"], closed["paid_at"]) == (
        200,
        "closed",
        "cancelled",
        None,
    )


@pytest.mark.parametrize(
    ("suffix", "body"),
    [
        ("/close", {}),
        ("/close", {"outcome": "won"}),
        ("/close", {"outcome": "completed", "note": "x"}),
        ("/payment", {"amount": 10}),
        ("/payment", []),
    ],
)
async def test_invalid_transition_bodies(market: Market, suffix: str, body: object) -> None:
    txn = await market.created()
    status, answer = await market.client.call(
        "POST", f"/transactions/{txn['transaction_id']}{suffix}", body
    )
    assert status == 400
    assert answer["errcode"] in ("MARKET_INVALID_PARAM", "MARKET_BAD_JSON")
    status, unchanged = await market.client.call("GET", f"/transactions/{txn['transaction_id']}")
    assert unchanged["state"] == "awaiting_payment"


async def test_unknown_methods_are_405(market: Market) -> None:
    status, answer = await market.client.call("DELETE", "/transactions/t1")
    assert (status, answer["errcode"]) == (405, "MARKET_METHOD_NOT_ALLOWED")
