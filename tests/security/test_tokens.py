"""Tokens: the homeserver routes and the marketplace API refuse every missing, wrong or
nearly right token on every route, and store nothing for it; legacy paths are not served."""

from __future__ import annotations

import pytest

from bridge.api.routes import ROUTES
from tests.api.conftest import Api

ROOM = "!room:localhost"


def event(n: int) -> dict:
    return {
        "event_id": f"$security{n}",
        "room_id": ROOM,
        "type": "m.room.message",
        "sender": "@buyer:localhost",
        "origin_server_ts": 1_700_000_000_000 + n,
        "content": {"msgtype": "m.text", "body": f"message {n}"},
    }


HS_ROUTES = [
    ("PUT", "/_matrix/app/v1/transactions/{n}"),
    ("GET", "/_matrix/app/v1/users/@marketbot:localhost"),
    ("GET", "/_matrix/app/v1/rooms/%23market_transaction_x:localhost"),
    ("POST", "/_matrix/app/v1/ping"),
    ("GET", "/_matrix/app/v1/thirdparty/protocol/x"),
]


def near_misses(token: str) -> list[str]:
    """Tokens that are almost ours: one character changed, cut, extended, recased, split."""
    changed = token[:-1] + ("A" if token[-1] != "A" else "B")
    first = ("a" if token[0] != "a" else "b") + token[1:]
    return [
        changed,
        first,
        token[:-1],
        token[: len(token) // 2],
        token + "x",
        token + token,
        token.swapcase(),
        token.upper(),
        token[:10] + " " + token[10:],
        token[:10] + "\t" + token[10:],
        "x" + token,
        f'"{token}"',
    ]


async def inbox_count(api: Api) -> int:
    return await api.bridge.db.fetchval("SELECT COUNT(*) FROM inbox_events")


async def test_homeserver_routes_refuse_missing_tokens(api: Api) -> None:
    missing = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer    "},
        {"Authorization": f"Basic {api.hs_token}"},
        {"Authorization": api.hs_token},
        {"Authorization": f"Token {api.hs_token}"},
        {"X-Access-Token": api.hs_token},
    ]
    for n, (method, path) in enumerate(HS_ROUTES):
        for headers in missing:
            response = await api.client.request(
                method, path.format(n=n), json={"events": [event(n)]}, headers=headers
            )
            assert response.status == 401, (path, headers)
            assert (await response.json())["errcode"] == "M_UNAUTHORIZED"
    # Nor from the query string, the deprecated place Synapse no longer uses.
    response = await api.client.put(
        f"/_matrix/app/v1/transactions/q?access_token={api.hs_token}",
        json={"events": [event(99)]},
    )
    assert response.status == 401
    assert await inbox_count(api) == 0


async def test_homeserver_routes_refuse_wrong_and_near_miss_tokens(api: Api) -> None:
    wrong = [*near_misses(api.hs_token), api.bridge.config.api.token.get_secret_value()]
    wrong.append(api.bridge.config.appservice.as_token.get_secret_value())
    for n, (method, path) in enumerate(HS_ROUTES):
        for token in wrong:
            response = await api.client.request(
                method,
                path.format(n=n),
                json={"events": [event(n)]},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status == 403, (path, token)
            assert (await response.json())["errcode"] == "M_FORBIDDEN"
    assert await inbox_count(api) == 0
    # The right token still works: the refusals above were about the token, not the request.
    response = await api.client.put(
        "/_matrix/app/v1/transactions/ok",
        json={"events": [event(1)]},
        headers={"Authorization": f"bearer {api.hs_token}"},
    )
    assert response.status == 200
    assert await inbox_count(api) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/transactions/7"),
        ("PUT", "/transactions/7?access_token={token}"),
        ("GET", "/users/@marketbot:localhost"),
        ("GET", "/rooms/%23market_transaction_x:localhost"),
        ("POST", "/ping"),
        ("PUT", "/_matrix/app/unstable/transactions/7"),
        ("PUT", "/_matrix/app/v2/transactions/7"),
    ],
)
async def test_legacy_paths_are_not_served(api: Api, method: str, path: str) -> None:
    response = await api.client.request(
        method,
        path.format(token=api.hs_token),
        json={"events": [event(7)]},
        headers=api.auth,
    )
    assert response.status == 404
    assert await inbox_count(api) == 0
    assert await api.bridge.db.fetchval("SELECT COUNT(*) FROM transactions") == 0


API_OPERATIONS = [
    (
        route.method,
        route.path.format(transaction_id="t-1", dispute_id="d-1", user_id="u-1", device_id="DEV1"),
    )
    for route in ROUTES
    if not route.public
] + [("DELETE", "/transactions/t-1"), ("GET", "/nowhere")]


async def test_the_api_refuses_missing_wrong_and_near_miss_tokens(api: Api) -> None:
    token = api.bridge.config.api.token.get_secret_value()
    missing = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {token}"},
        {"Authorization": token},
    ]
    wrong = [
        *near_misses(token),
        api.hs_token,
        api.bridge.config.appservice.as_token.get_secret_value(),
    ]
    body = {
        "transaction_id": "t-1",
        "title": "bike",
        "buyer": {"user_id": "b", "matrix_id": "@b:localhost"},
        "seller": {"user_id": "s", "matrix_id": "@s:localhost"},
    }
    for method, path in API_OPERATIONS:
        url = "/api/v1" + path
        for headers in missing:
            response = await api.client.request(method, url, json=body, headers=headers)
            assert response.status == 401, (method, path, headers)
            assert (await response.json())["errcode"] == "MARKET_MISSING_TOKEN"
        for bad in wrong:
            headers = {"Authorization": f"Bearer {bad}"}
            response = await api.client.request(method, url, json=body, headers=headers)
            assert response.status == 401, (method, path, bad)
            assert (await response.json())["errcode"] == "MARKET_UNKNOWN_TOKEN"
        # Nor from the query string.
        response = await api.client.request(method, url, params={"access_token": token})
        assert response.status == 401
    assert await api.bridge.db.fetchval("SELECT COUNT(*) FROM transactions") == 0
    assert await api.bridge.db.fetchval("SELECT COUNT(*) FROM audit") == 0
    # The right token, with the scheme in any case and surrounding blanks, is accepted.
    for header in (f"Bearer {token}", f"bearer {token}", f"Bearer  {token} "):
        response = await api.client.get("/api/v1/audit", headers={"Authorization": header})
        assert response.status == 200, header
