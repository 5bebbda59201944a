"""The client gateway in front of the hardened homeserver: the token it checks is the token
Synapse reads, and a managed account's session keeps to what the marketplace gave it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import ClientSession
from multidict import CIMultiDict
from yarl import URL

from tests.e2e.stack import Stack, hardened_stack
from tests.harness import Homeserver, eventually, random_secret, unique_id

PHONE = "call me on 07911 123456"


@pytest.fixture
async def session() -> AsyncIterator[ClientSession]:
    async with ClientSession() as http:
        yield http


@pytest.fixture
async def stack(
    hardened_homeserver: Homeserver, api_timings: dict, tmp_path: Path
) -> AsyncIterator[Stack]:
    """A bridge that mints managed accounts' sessions, handing out the gateway's address."""
    async with hardened_stack(hardened_homeserver, api_timings, tmp_path) as stack:
        yield stack


async def brought(homeserver: Homeserver, role: str) -> dict[str, Any]:
    """An account of the user's own (registered, not minted by the marketplace)."""
    name = unique_id(role)
    return await asyncio.to_thread(homeserver.synapse.register_user, name, random_secret())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def request(
    http: ClientSession, method: str, url: str, headers: Any, body: Any = None
) -> tuple[int, dict]:
    # Sent as written: the query's separators and escapes are the test's.
    async with http.request(method, URL(url, encoded=True), json=body, headers=headers) as r:
        return r.status, await r.json(content_type=None) or {}


async def to_device_seen(http: ClientSession, base: str, user: dict, marker: str) -> list[Any]:
    """The to-device contents the user's device has received, up to ``marker`` (sent last:
    anything the homeserver had accepted before it arrives before it)."""
    seen: list[Any] = []
    since: list[str] = []

    async def reached() -> bool:
        query = "?timeout=0" + (f"&since={quote(since[-1])}" if since else "")
        status, body = await request(
            http, "GET", f"{base}/_matrix/client/v3/sync{query}", bearer(user["access_token"])
        )
        assert status == 200, body
        since.append(body["next_batch"])
        seen.extend(e.get("content") for e in body.get("to_device", {}).get("events", []))
        return any(isinstance(c, dict) and c.get("body") == marker for c in seen)

    await eventually(reached)
    return seen


async def test_a_second_token_sends_nothing_to_another_party(
    hardened_homeserver: Homeserver, session: ClientSession
) -> None:
    """The reproduced attack: a garbage Authorization header first (the gateway saw an unknown
    requester and no guard), the buyer's real one last (Synapse took it)."""
    base = hardened_homeserver.client_url
    buyer, seller = (
        await brought(hardened_homeserver, "buyer"),
        await brought(hardened_homeserver, "seller"),
    )
    real = buyer["access_token"]
    to_seller = {"messages": {seller["user_id"]: {"*": {"body": PHONE}}}}
    for n, (query, headers) in enumerate(
        [
            ("", [("Authorization", "Bearer garbage"), ("Authorization", f"Bearer {real}")]),
            ("", [("Authorization", f"Bearer {real}"), ("Authorization", "Bearer garbage")]),
            (f"?access_token={real}", [("Authorization", "Bearer garbage")]),
            (f"?access_token=garbage&access_token={real}", []),
            (f"?access_token=garbage;access_token={real}", []),
            ("", [("Authorization", f"bearer {real}")]),
        ]
    ):
        url = f"{base}/_matrix/client/v3/sendToDevice/m.custom/attack-{n}{query}"
        status, body = await request(session, "PUT", url, CIMultiDict(headers), to_seller)
        assert (status, body.get("errcode")) == (401, "M_MISSING_TOKEN"), (n, body)
    # With its one token, the same message is the guard's to refuse.
    url = f"{base}/_matrix/client/v3/sendToDevice/m.custom/attack-own"
    status, body = await request(session, "PUT", url, bearer(real), to_seller)
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body

    marker = unique_id("marker")
    to_self = {"messages": {seller["user_id"]: {"*": {"body": marker}}}}
    url = f"{base}/_matrix/client/v3/sendToDevice/m.custom/marker"
    status, body = await request(session, "PUT", url, bearer(seller["access_token"]), to_self)
    assert status == 200, body
    seen = await to_device_seen(session, base, seller, marker)
    assert all(PHONE not in str(content) for content in seen), seen


async def test_a_managed_session_cannot_take_its_account_over(
    stack: Stack, hardened_homeserver: Homeserver
) -> None:
    user = unique_id("buyer")
    async with stack.running():
        status, made = await stack.api.call("PUT", f"/users/{user}", {"display_name": "Ann"})
        assert status == 201 and made["managed"], made
        status, minted = await stack.api.call("POST", f"/users/{user}/sessions")
        assert status == 201, minted
    http, base = stack.session, minted["homeserver_url"]
    me, headers = quote(minted["matrix_id"]), bearer(minted["access_token"])
    own = await brought(hardened_homeserver, "carol")  # an account its user brought

    def refused(answer: tuple[int, dict]) -> bool:
        status, body = answer
        return (
            status == 403
            and body.get("errcode") == "M_FORBIDDEN"
            and "managed by the marketplace" in body.get("error", "")
        )

    # No refusing invitations: the account would stay out of a dispute's room.
    for kind in ("m.invite_permission_config", "org.matrix.msc4155.invite_permission_config"):
        url = f"{base}/_matrix/client/v3/user/{me}/account_data/{kind}"
        answer = await request(http, "PUT", url, headers, {"default_action": "block"})
        assert refused(answer), (kind, answer)
        status, body = await request(http, "GET", url, headers)
        assert (status, body.get("errcode")) == (404, "M_NOT_FOUND"), body  # never stored
    # No password (logins that never expire), after a single sign-on step or not.
    change = {"new_password": random_secret(), "logout_devices": False}
    sso_step = {**change, "auth": {"type": "m.login.sso", "session": "any"}}
    for body in (change, sso_step):
        url = f"{base}/_matrix/client/v3/account/password"
        answer = await request(http, "POST", url, headers, body)
        assert refused(answer), answer
    # No login tokens for new devices either.
    answer = await request(http, "POST", f"{base}/_matrix/client/v1/login/get_token", headers, {})
    assert refused(answer), answer

    # The session itself still works, and a brought account's change reaches Synapse (which
    # asks it to authenticate first).
    status, body = await request(http, "GET", f"{base}/_matrix/client/v3/account/whoami", headers)
    assert (status, body.get("user_id")) == (200, minted["matrix_id"]), body
    url = f"{base}/_matrix/client/v3/account/password"
    status, body = await request(http, "POST", url, bearer(own["access_token"]), change)
    assert status == 401 and "flows" in body, body
