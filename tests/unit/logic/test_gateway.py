"""The client gateway's own logic, in front of a small stand-in for the homeserver: which
requests a guard takes (as the homeserver routes them, so no spelling of a path slips past),
that a request the gateway cannot check is refused, never forwarded unchecked, that the token it
checks is the one the homeserver reads (or the request is refused), and what a managed account
may not change of its own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from multidict import CIMultiDict
from yarl import URL

from bridge.gateway.guards import ChannelRules, Guards, UploadRules
from bridge.gateway.proxy import ClientGateway
from bridge.gateway.requesters import Requesters
from bridge.gateway.upstream import Upstream
from policy.ids import UserId

from .fakes import FakeClock

PARTY, ADMIN = UserId("@buyer:hs"), UserId("@admin:hs")
MANAGED = UserId("@market_ann:hs")  # a marketplace user's managed account
TOKENS = {"party-token": PARTY, "admin-token": ADMIN, "managed-token": MANAGED}


def guards(upstream: Any = None) -> Guards:
    uploads = UploadRules(frozenset({"image/png"}), 1024, lambda text: "0791" in text)
    rules = ChannelRules("market_", frozenset({ADMIN}), False, uploads, "market_", "hs")
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
        ("POST", "/_matrix/client/v3/account/password", "own_account"),
        ("POST", "/_matrix/client/r0/account/password/", "own_account"),
        ("POST", "/_matrix/client/api/v1/account/deactivate", "own_account"),
        ("POST", "/_matrix/client/unstable/account/3pid", "own_account"),
        ("POST", "/_matrix/client/v3/account/3pid/add", "own_account"),
        ("POST", "/_matrix/client/v3/account/3pid/bind", "own_account"),
        ("POST", "/_matrix/client/v3/account/3pid/unbind", "own_account"),
        ("POST", "/_matrix/client/v3/account/3pid/delete", "own_account"),
        ("POST", "/_matrix/client/r0/account/3pid/email/requestToken", "own_account"),
        ("POST", "/_matrix/client/v3/account/3pid/msisdn/requestToken", "own_account"),
        ("DELETE", "/_matrix/client/v3/devices/ABCDEF", "own_account"),
        ("DELETE", "/_matrix/client/r0/devices/a%2Fb", "own_account"),  # one segment
        ("DELETE", "/_matrix/client/v3/devices/", "own_account"),  # an empty device id
        ("POST", "/_matrix/client/v3/delete_devices", "own_account"),
        ("POST", "/_matrix/client/unstable/delete_devices", "own_account"),
        ("POST", "/_matrix/client/v1/login/get_token", "own_account"),
        ("POST", "/_matrix/client/unstable/org.matrix.msc3882/login/token", "own_account"),
        (
            "PUT",
            "/_matrix/client/v3/user/%40market_ann%3Ahs/account_data/m.invite_permission_config",
            "account_data",
        ),
        ("PUT", "/_matrix/client/r0/user/@a:hs/account_data/org.matrix.msc4155.x", "account_data"),
        ("PUT", "/_matrix/client/unstable/user/@a:hs/account_data/", "account_data"),
        ("GET", "/_matrix/client/v3/account/3pid", None),  # reading one's own
        ("GET", "/_matrix/client/v3/devices", None),
        ("PUT", "/_matrix/client/v3/devices/ABCDEF", None),  # renaming: seen by oneself only
        ("POST", "/_matrix/client/v3/logout", None),
        ("POST", "/_matrix/client/v3/login", None),
        ("GET", "/_matrix/client/v3/user/@a:hs/account_data/m.invite_permission_config", None),
        ("PUT", "/_matrix/client/v3/user/@a:hs/rooms/!r:hs/account_data/m.x", None),  # per room
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
    every request that reached it (its headers and body too)."""

    def __init__(self) -> None:
        self.whoami_status = 200
        self.reached: list[str] = []
        self.headers: list[CIMultiDict[str]] = []
        self.bodies: list[bytes] = []

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
        self.headers.append(CIMultiDict(request.headers))
        self.bodies.append(await request.read())
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


# --- the token the gateway checks is the one the homeserver reads ---


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def raw_put(
    gateway: TestClient, target: str, headers: list[tuple[str, str]], body: Any
) -> tuple[int, Any]:
    """A PUT written byte for byte (a client library merges headers of one name, drops a
    fragment, normalises escapes): its status, and its JSON when the gateway answered it."""
    content = json.dumps(body).encode()
    head = [
        f"PUT {target} HTTP/1.1",
        f"Host: {gateway.host}",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {len(content)}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    reader, writer = await asyncio.open_connection(gateway.host, gateway.port)
    writer.write("\r\n".join(head).encode() + b"\r\n\r\n" + content)
    answer = await reader.read()  # to the end: the gateway closes the connection
    writer.close()
    await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    answer_head, _, answer_body = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in answer_head.lower():  # the homeserver's, streamed
        return int(status_line.split()[1]), None
    return int(status_line.split()[1]), json.loads(answer_body)


@pytest.mark.parametrize(
    ("query", "headers", "errcode"),
    [
        # The reproduced attack: the gateway read the first header, the homeserver the last.
        ("", [("Authorization", "Bearer nobody"), ("Authorization", "Bearer party-token")], 0),
        ("", [("authorization", "Bearer nobody"), ("AUTHORIZATION", "Bearer party-token")], 0),
        (
            "",
            [("Authorization", "Bearer party-token"), ("authorization", "Bearer party-token")],
            0,
        ),
        ("?access_token=party-token", [("Authorization", "Bearer nobody")], 0),
        ("?access_token=nobody", [("Authorization", "Bearer party-token")], 0),
        ("?x=1;access_token=party-token", [("Authorization", "Bearer nobody")], 0),
        ("?access_token=nobody&access_token=party-token", [], 0),
        ("?access_token=nobody;access_token=party-token", [], 0),  # Twisted splits at ";" too
        ("?access_token=nobody&access%5Ftoken=party-token", [], 0),
        ("?access_token=nobody&access+token=x&access_token=", [], 0),
        # No other scheme, case or spacing than Synapse's own "Bearer <token>".
        ("", [("Authorization", "bearer party-token")], 0),
        ("", [("Authorization", "BEARER party-token")], 0),
        ("", [("Authorization", "Bearer  party-token")], 0),
        ("", [("Authorization", "Bearer party-token x")], 0),
        ("", [("Authorization", "Bearer\tparty-token")], 0),
        ("", [("Authorization", "Basic cGFydHk6dG9rZW4=")], 0),
        ("", [("Authorization", "")], 0),
        ("", [("Authorization", "Bearer ")], 0),  # the trailing space is not part of it
        # A token Synapse never makes.
        ("?access_token=party%20token", [], 1),
        ("?access_token=party+token", [], 1),
        ("?access_token=", [], 1),
        ("?access_token=%C3%A9", [], 1),
    ],
)
async def test_a_token_that_could_be_read_two_ways_is_refused_before_anything_else(
    gateway: TestClient,
    homeserver: tuple[Homeserver, TestServer],
    query: str,
    headers: list[tuple[str, str]],
    errcode: int,
) -> None:
    fake, _ = homeserver
    for path in (SEND_TO_DEVICE, "/_matrix/client/v3/sync"):  # guarded or not
        status, body = await raw_put(gateway, path + query, headers, TO_OTHER)
        assert status == 401, (path, body)
        assert body["errcode"] == ("M_MISSING_TOKEN", "M_UNKNOWN_TOKEN")[errcode], body
        assert body["error"]
    assert fake.reached == []


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("", [("authorization", "Bearer party-token")]),  # a header name has no case
        ("?access_token=party-token", []),
        ("?x=1;access_token=party-token", []),  # read where Twisted reads it
        ("?access%5Ftoken=party%2Dtoken", []),  # decoded as Twisted decodes it
        ("?access_token=party-token&x&y=", []),
    ],
)
async def test_a_token_is_read_wherever_the_homeserver_reads_it(
    gateway: TestClient,
    homeserver: tuple[Homeserver, TestServer],
    query: str,
    headers: list[tuple[str, str]],
) -> None:
    fake, _ = homeserver
    status, body = await raw_put(gateway, SEND_TO_DEVICE + query, headers, TO_OTHER)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")  # the party's guard ran
    assert fake.reached == []


async def test_a_fragment_is_not_sent_on(
    gateway: TestClient, homeserver: tuple[Homeserver, TestServer]
) -> None:
    """What follows a "#" is no parameter: the gateway reads none there, and sends none."""
    fake, _ = homeserver
    status, _ = await raw_put(gateway, SEND_TO_DEVICE + "?x=1#&access_token=party-token", [], {})
    assert status == 200  # no token: the homeserver refuses it itself
    assert fake.reached == [f"PUT {SEND_TO_DEVICE}?x=1"]
    assert "Authorization" not in fake.headers[0]


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (FORM, b"access_token=party-token"),
        (
            {"Content-Type": "Application/X-WWW-Form-Urlencoded; charset=utf-8"},
            b"a=1&access_token=x",
        ),
        # JSON the homeserver reads as JSON, and Twisted as a form with a token in it.
        (FORM, b'{"device_keys": {"@seller:hs": []}, "x": "&access_token=party-token&"}'),
        ({**FORM, **bearer("party-token")}, b"access_token=nobody"),
    ],
)
async def test_a_token_in_a_form_body_is_refused(
    gateway: TestClient,
    homeserver: tuple[Homeserver, TestServer],
    headers: dict[str, str],
    body: bytes,
) -> None:
    fake, _ = homeserver
    for path in ("/_matrix/client/v3/keys/query", "/_matrix/client/v3/account/password"):
        answer = await gateway.post(path, data=body, headers=headers)
        assert answer.status == 401, await answer.text()
        assert (await answer.json())["errcode"] == "M_MISSING_TOKEN"
    answer = await gateway.post(
        "/_matrix/media/v3/upload",
        data=b"--b\r\nContent-Disposition: form-data; name=access_token\r\n\r\nparty-token",
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert answer.status == 415
    too_large = b"a=" + b"x" * (1024 * 1024 + 1)  # past the gateway's request size
    answer = await gateway.post("/_matrix/client/v3/keys/query", data=too_large, headers=FORM)
    assert (answer.status, (await answer.json())["errcode"]) == (413, "M_TOO_LARGE")
    assert fake.reached == []


async def test_a_form_without_a_token_goes_on_whole(
    gateway: TestClient, homeserver: tuple[Homeserver, TestServer]
) -> None:
    """Single sign-on and fallback pages post forms; their body is read (for its fields),
    then sent on whole, whoever sends it and whatever guard takes it."""
    fake, _ = homeserver
    form = b"code=abc&state=xyz"
    for path, token, body in [
        ("/_synapse/client/oidc/callback", None, form),  # no one signed in
        ("/_matrix/client/v3/account/password", "admin-token", form),  # not guarded
        ("/_matrix/client/v3/account/password", "party-token", form),  # guarded: forwarded
        ("/_matrix/media/v3/upload", "party-token", b"\x89PNG\r\n\x1a\n"),  # guarded: read
    ]:
        headers = {**FORM, **(bearer(token) if token else {})}
        answer = await gateway.post(path, data=body, headers=headers)
        assert answer.status == 200, (path, await answer.text())
        assert fake.bodies[-1] == body, path
    assert len(fake.bodies) == 4


async def test_the_headers_go_on_as_they_came(
    gateway: TestClient, homeserver: tuple[Homeserver, TestServer]
) -> None:
    fake, _ = homeserver
    headers = CIMultiDict([*bearer("party-token").items(), ("X-Note", "a"), ("X-Note", "b")])
    answer = await gateway.get("/_matrix/client/v3/sync", headers=headers)
    assert answer.status == 200
    (seen,) = fake.headers
    assert seen.getall("Authorization") == ["Bearer party-token"]
    assert seen.getall("X-Note") == ["a", "b"]


# --- what a managed account may not change of its own ---

ACCOUNT_CHANGES = [
    ("POST", "/_matrix/client/v3/account/password", {"new_password": "pw", "auth": {}}),
    ("POST", "/_matrix/client/r0/account/deactivate", {}),
    ("POST", "/_matrix/client/v3/account/3pid/add", {"sid": "1", "client_secret": "s"}),
    ("POST", "/_matrix/client/v3/account/3pid/email/requestToken", {"email": "a@b.c"}),
    ("DELETE", "/_matrix/client/v3/devices/OTHER", {}),
    ("POST", "/_matrix/client/v3/delete_devices", {"devices": ["OTHER"]}),
    ("POST", "/_matrix/client/v1/login/get_token", {}),
    ("POST", "/_matrix/client/unstable/org.matrix.msc3882/login/token", {}),
]
INVITE_CONFIGS = [
    "m.invite_permission_config",
    "m.invite%5Fpermission%5Fconfig",  # as Synapse decodes it
    "org.matrix.msc4155.invite_permission_config",
]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        *ACCOUNT_CHANGES,
        *(
            ("PUT", f"/_matrix/client/v3/user/@market_ann:hs/account_data/{kind}", {})
            for kind in INVITE_CONFIGS
        ),
    ],
)
async def test_a_managed_account_keeps_to_the_marketplaces_sessions(
    gateway: TestClient,
    homeserver: tuple[Homeserver, TestServer],
    method: str,
    path: str,
    body: dict,
) -> None:
    fake, _ = homeserver
    target = URL(path, encoded=True)  # sent as written, escapes and all
    answer = await gateway.request(method, target, json=body, headers=bearer("managed-token"))
    assert answer.status == 403, await answer.text()
    refused = await answer.json()
    assert refused["errcode"] == "M_FORBIDDEN" and "managed by the marketplace" in refused["error"]
    assert fake.reached == []
    # An account its user brought is theirs to change, and the admins'.
    for token in ("party-token", "admin-token"):
        answer = await gateway.request(method, target, json=body, headers=bearer(token))
        assert answer.status == 200, await answer.text()
    assert fake.reached == [f"{method} {path}"] * 2


async def test_a_managed_account_keeps_its_other_account_data_and_devices(
    gateway: TestClient, homeserver: tuple[Homeserver, TestServer]
) -> None:
    fake, _ = homeserver
    for method, path in [
        ("PUT", "/_matrix/client/v3/user/@market_ann:hs/account_data/m.direct"),
        ("PUT", "/_matrix/client/v3/user/@market_ann:hs/account_data/m.invite_permission_configx"),
        ("PUT", "/_matrix/client/v3/devices/MINE"),
        ("POST", "/_matrix/client/v3/logout"),
    ]:
        answer = await gateway.request(method, path, json={}, headers=bearer("managed-token"))
        assert answer.status == 200, (path, await answer.text())
    assert len(fake.reached) == 4
