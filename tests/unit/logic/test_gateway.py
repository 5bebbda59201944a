"""The client gateway's own logic, in front of a small stand-in for the homeserver: which
requests a guard takes (as the homeserver routes them, so no spelling of a path slips past),
and that a request the gateway cannot check is refused, never forwarded unchecked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from bridge.gateway.guards import ChannelRules, Guards, UploadRules
from bridge.gateway.proxy import ClientGateway
from bridge.gateway.requesters import Requesters
from bridge.gateway.upstream import Upstream
from policy.ids import UserId

from .fakes import FakeClock

PARTY, ADMIN = UserId("@buyer:hs"), UserId("@admin:hs")
TOKENS = {"party-token": PARTY, "admin-token": ADMIN}


def guards(upstream: Any = None) -> Guards:
    uploads = UploadRules(frozenset({"image/png"}), 1024, lambda text: "0791" in text)
    rules = ChannelRules("market_", frozenset({ADMIN}), False, uploads)
    return Guards(upstream, "bot-token", rules, FakeClock())


def guard_name(method: str, path: str) -> str | None:
    guard = guards().match(make_mocked_request(method, path))
    return guard.__name__ if guard is not None else None


@pytest.mark.parametrize(
    ("method", "path", "guard"),
    [
        ("PUT", "/_matrix/client/v3/sendToDevice/m.x/1", "to_device"),
        ("PUT", "/_matrix/client/r0/sendToDevice/a%2Fb/1", "to_device"),  # one segment
        ("PUT", "/_matrix/client/unstable/org.x/sendToDevice/t/1", "to_device"),
        ("PUT", "/_matrix/client/v3/sendToDevice/t/", "to_device"),  # an empty txn id
        ("PUT", "/_matrix/client/v3/profile/%40buyer%3Ahs/m.tz", "profile"),
        ("PUT", "/_matrix/client/api/v1/profile/@buyer:hs/displayname", "profile"),
        ("DELETE", "/_matrix/client/unstable/uk.tcpip.msc4133/profile/@b:hs/x", "profile"),
        ("PUT", "/_matrix/client/api/v1/rooms/!r:hs/typing/@buyer:hs", "typing"),
        ("PUT", "/_matrix/client/v3/rooms/%21r%3Ahs/typing/@buyer:hs", "typing"),
        ("POST", "/_matrix/client/v3/keys/query", "others_keys"),
        ("POST", "/_matrix/client/r0/keys/claim", "others_keys"),
        ("POST", "/_matrix/client/v3/createRoom", "create_room"),
        ("POST", "/_matrix/client/api/v1/createRoom", "create_room"),
        ("POST", "/_matrix/media/v3/upload", "upload"),
        ("POST", "/_matrix/media/r0/upload?filename=x", "upload"),
        ("PUT", "/_matrix/media/v3/upload/hs/abc", "upload"),
        ("POST", "/_matrix/client/v1/media/upload", "upload"),
        ("GET", "/_matrix/client/v3/directory/room/%23market_transaction_1%3Ahs", "managed_alias"),
        ("POST", "/_matrix/client/v3/join/%23Market_Transaction_1:hs", "managed_alias"),
        ("POST", "/_matrix/client/v3/knock/%23market_x:hs", "managed_alias"),
        ("GET", "/_matrix/client/v3/sync?timeout=30000", None),
        ("GET", "/_matrix/client/v3/profile/@buyer:hs", None),  # reading is limited by Synapse
        ("PUT", "/_matrix/client/v3/rooms/!r:hs/send/m.room.message/1", None),
        ("GET", "/_matrix/client/v3/directory/room/%23other%3Ahs", None),
        ("GET", "/_matrix/client/v1/media/download/hs/abc", None),
    ],
)
def test_which_guard_takes_a_request(method: str, path: str, guard: str | None) -> None:
    assert guard_name(method, path) == guard


class Homeserver:
    """A stand-in for Synapse's client API: whoami from TOKENS (or failing), and a record of
    every request that reached it."""

    def __init__(self) -> None:
        self.whoami_status = 200
        self.reached: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if request.path == "/_matrix/client/v3/account/whoami":
            if self.whoami_status != 200:
                return web.json_response({"errcode": "M_UNKNOWN"}, status=self.whoami_status)
            if token not in TOKENS:
                return web.json_response({"errcode": "M_UNKNOWN_TOKEN"}, status=401)
            return web.json_response({"user_id": TOKENS[token]})
        self.reached.append(f"{request.method} {request.raw_path}")
        return web.json_response({"ok": True})


@pytest.fixture
async def homeserver() -> AsyncIterator[tuple[Homeserver, TestServer]]:
    fake = Homeserver()
    server = TestServer(fake.app())
    await server.start_server()
    yield fake, server
    await server.close()


@pytest.fixture
async def gateway(homeserver: tuple[Homeserver, TestServer]) -> AsyncIterator[TestClient]:
    _, server = homeserver
    async with ClientSession() as session:
        upstream = Upstream(session, str(server.make_url("")), "http://127.0.0.1:8008")
        app = web.Application()
        ClientGateway(
            upstream, guards(upstream), Requesters(upstream, FakeClock()), {ADMIN}
        ).add_to(app)
        client = TestClient(TestServer(app))
        await client.start_server()
        yield client
        await client.close()


TO_OTHER = {"messages": {"@seller:hs": {"*": {"body": "call 07911 123456"}}}}
SEND_TO_DEVICE = "/_matrix/client/v3/sendToDevice/m.x/1"


async def test_a_partys_guarded_request_is_checked(
    gateway: TestClient, homeserver: tuple[Homeserver, TestServer]
) -> None:
    fake, _ = homeserver
    headers = {"Authorization": "Bearer party-token"}
    answer = await gateway.put(SEND_TO_DEVICE, json=TO_OTHER, headers=headers)
    assert answer.status == 403 and (await answer.json())["errcode"] == "M_FORBIDDEN"
    assert fake.reached == []
    own = {"messages": {PARTY: {"*": {"k": "v"}}}}
    answer = await gateway.put(SEND_TO_DEVICE, json=own, headers=headers)
    assert answer.status == 200 and fake.reached == [f"PUT {SEND_TO_DEVICE}"]


async def test_admins_and_unknown_tokens_are_forwarded_as_they_came(
    gateway: TestClient, homeserver: tuple[Homeserver, TestServer]
) -> None:
    fake, _ = homeserver
    for token in ("admin-token", "nobody-knows-this"):
        answer = await gateway.put(
            SEND_TO_DEVICE, json=TO_OTHER, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status == 200  # the homeserver itself refuses an unknown token
    assert fake.reached == [f"PUT {SEND_TO_DEVICE}"] * 2


@pytest.mark.parametrize("status", [500, 429, 502])
async def test_a_request_the_gateway_cannot_check_is_refused(
    gateway: TestClient, homeserver: tuple[Homeserver, TestServer], status: int
) -> None:
    fake, _ = homeserver
    fake.whoami_status = status
    answer = await gateway.put(
        SEND_TO_DEVICE, json=TO_OTHER, headers={"Authorization": "Bearer party-token"}
    )
    assert answer.status == 502 and (await answer.json())["errcode"] == "M_UNKNOWN"
    assert fake.reached == []


async def test_a_homeserver_gone_away_refuses_guarded_requests(
    gateway: TestClient, homeserver: tuple[Homeserver, TestServer]
) -> None:
    _, server = homeserver
    await server.close()
    answer = await gateway.put(
        SEND_TO_DEVICE, json=TO_OTHER, headers={"Authorization": "Bearer party-token"}
    )
    assert answer.status == 502 and (await answer.json())["errcode"] == "M_UNKNOWN"


async def test_a_text_upload_carrying_contact_details_is_refused(
    gateway: TestClient, homeserver: tuple[Homeserver, TestServer]
) -> None:
    fake, _ = homeserver
    answer = await gateway.post(
        "/_matrix/media/v3/upload",
        data=b"call me 07911 123456",
        headers={"Authorization": "Bearer party-token", "Content-Type": "text/plain"},
    )
    assert answer.status == 403 and (await answer.json())["errcode"] == "M_FORBIDDEN"
    assert fake.reached == []


async def test_a_partys_room_is_refused_before_the_homeserver_says_if_its_alias_is_taken(
    gateway: TestClient, homeserver: tuple[Homeserver, TestServer]
) -> None:
    fake, _ = homeserver
    answer = await gateway.post(
        "/_matrix/client/v3/createRoom",
        json={"room_alias_name": "market_transaction_order-1"},
        headers={"Authorization": "Bearer party-token"},
    )
    assert answer.status == 403 and (await answer.json())["errcode"] == "M_FORBIDDEN"
    assert fake.reached == []


@pytest.mark.parametrize(
    ("query", "content_type"),
    [
        ("?filename=call%2007911%20123456.png", "image/png"),
        ("?filename=photo.png", 'image/png; name="07911 123456"'),
    ],
)
async def test_an_uploads_name_or_type_carrying_contact_details_is_refused(
    gateway: TestClient,
    homeserver: tuple[Homeserver, TestServer],
    query: str,
    content_type: str,
) -> None:
    fake, _ = homeserver
    answer = await gateway.post(
        "/_matrix/media/v3/upload" + query,
        data=b"\x89PNG\r\n\x1a\n",
        headers={"Authorization": "Bearer party-token", "Content-Type": content_type},
    )
    assert answer.status == 403 and "name or type" in (await answer.json())["error"]
    assert fake.reached == []
