"""`make run` from a copy of the project, as a newcomer would: up, usable, stopped cleanly.

The demo users are made through the bridge's API: managed buyer and seller with sessions, a
brought password account, the admin. The commands the stack prints and README.md's walk-through
are run as they are written (bash and curl), then the same flow again with raw HTTP."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from tests.harness import MAKE_RUN_READY, eventually, unique_id
from tests.make_run import MakeRun


def printed_commands(log: str) -> str:
    """The curl commands the stack printed with its welcome (the last one printed)."""
    welcome = log.rsplit("The marketplace's side with curl", 1)[1]
    lines = welcome.split("\n\n", 1)[0].splitlines()[1:]
    assert lines and all(line.startswith("    ") for line in lines), welcome
    return "\n".join(line.strip() for line in lines)


def readme_commands(readme: Path) -> str:
    """README.md's walk-through: its shell blocks but `make run` itself, in order."""
    section = readme.read_text().split("## Walk-through", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    commands = [block for block in blocks if block.strip() != "make run"]
    assert len(commands) >= 5, section
    return "\n".join(commands)


class Http:
    """Raw HTTP to the bridge's API (Bearer api_token) and to the homeserver (the gateway)."""

    def __init__(self, session: ClientSession, stack: dict[str, Any]) -> None:
        self.session = session
        self.stack = stack

    async def api(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.stack['api_token']}"}
        url = self.stack["api_url"] + path
        async with self.session.request(method, url, json=body, headers=headers) as r:
            return r.status, await r.json()

    async def matrix(
        self, method: str, path: str, token: str | None = None, body: dict | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = self.stack["homeserver_url"] + "/_matrix/client/v3" + path
        async with self.session.request(method, url, json=body, headers=headers) as r:
            return r.status, await r.json()

    async def whoami(self, token: str) -> str:
        status, me = await self.matrix("GET", "/account/whoami", token)
        assert status == 200, me
        return me["user_id"]

    async def login(self, user: dict[str, Any]) -> str:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user["user_id"]},
            "password": user["password"],
        }
        status, answer = await self.matrix("POST", "/login", body=body)
        assert status == 200, answer
        return answer["access_token"]

    async def joined_timeline(self, token: str, room_id: str) -> list[dict]:
        """The room's timeline in an initial sync, asserting the user is joined to it."""
        status, synced = await self.matrix("GET", "/sync?timeout=0", token)
        assert status == 200, synced
        joined = synced["rooms"]["join"]
        assert room_id in joined, list(joined)
        return joined[room_id]["timeline"]["events"]


async def check_demo_users(http: Http, stack: dict[str, Any]) -> None:
    users = stack["users"]
    assert list(users) == ["buyer", "seller", "guest", "admin"]
    for role, market_id in (("buyer", "buyer-1"), ("seller", "seller-1")):
        user = users[role]
        assert user["user_id"] == f"@market_{market_id}:localhost", user
        assert (user["market_user_id"], user["managed"]) == (market_id, True), user
        assert "password" not in user and user["device_id"] and user["expires_at"], user
        assert await http.whoami(user["access_token"]) == user["user_id"]
        status, record = await http.api("GET", f"/users/{market_id}")
        assert status == 200 and record["managed"] and record["matrix_id"] == user["user_id"]
        assert record["display_name"] == user["display_name"], record
    guest = users["guest"]
    assert (guest["user_id"], guest["market_user_id"]) == ("@carol:localhost", "guest-1")
    assert guest["managed"] is False and guest["password"], guest
    assert await http.whoami(await http.login(guest)) == guest["user_id"]
    status, record = await http.api("GET", "/users/guest-1")
    assert status == 200 and record["matrix_id"] == "@carol:localhost" and not record["managed"]
    admin = users["admin"]
    assert admin["user_id"] == "@admin:localhost" and admin["password"], admin
    assert await http.whoami(await http.login(admin)) == admin["user_id"]


async def marketplace_flow(http: Http) -> tuple[str, str]:
    """The walk-through with raw HTTP and fresh ids: users, a transaction, payment, sessions,
    a message; returns the transaction's id and room."""
    buyer, seller, order = (unique_id(kind) for kind in ("b", "s", "order"))
    for user_id, name in ((buyer, "Dana"), (seller, "Sam")):
        status, made = await http.api("PUT", f"/users/{user_id}", {"display_name": name})
        assert status == 201 and made["managed"], made
        assert made["matrix_id"] == f"@market_{user_id}:localhost", made
    transaction = {
        "transaction_id": order,
        "title": "Vintage bike",
        "buyer": {"user_id": buyer},
        "seller": {"user_id": seller},
    }
    status, created = await http.api("POST", "/transactions", transaction)
    assert status == 201 and created["access"] == "locked", created
    room_id = created["room_id"]
    status, paid = await http.api("POST", f"/transactions/{order}/payment")
    assert status == 200 and paid["access"] == "open", paid
    tokens = []
    for user_id in (buyer, seller):
        status, session = await http.api("POST", f"/users/{user_id}/sessions")
        assert status == 201, session
        assert session["homeserver_url"] == http.stack["homeserver_url"], session
        tokens.append(session["access_token"])
    buyer_token, seller_token = tokens
    # Joined by the bridge: the room is in each one's sync, nobody accepted an invitation.
    for token in tokens:
        await http.joined_timeline(token, room_id)
    message = {"msgtype": "m.text", "body": "Is it still there?"}
    status, sent = await http.matrix(
        "PUT", f"/rooms/{room_id}/send/m.room.message/t1", buyer_token, message
    )
    assert status == 200, sent

    async def seller_reads_it() -> bool:
        # Not a sync: Synapse answers the same sync request from its cache for a while.
        path = f"/rooms/{room_id}/messages?dir=b&limit=20"
        status, page = await http.matrix("GET", path, seller_token)
        assert status == 200, page
        return any(e["content"].get("body") == message["body"] for e in page["chunk"])

    await eventually(seller_reads_it)
    return order, room_id


async def retention_flow(http: Http, make_run: MakeRun) -> None:
    """Two refunded deals, the first held: the second's room goes (room.purged printed, its
    transcript in .dev/transcripts), the first stays, although it came due earlier."""
    (held, _), (free, free_room) = [await marketplace_flow(http) for _ in "ab"]
    status, answer = await http.api("POST", f"/transactions/{held}/hold", {"reason": "claim"})
    assert status == 201 and answer["held"], answer
    for order in (held, free):  # due in this order: were it not held, it would go first
        status, _ = await http.api("POST", f"/transactions/{order}/close", {"outcome": "refunded"})
        assert status == 200

    async def purged() -> str | None:
        lines = make_run.log(tail=100_000).splitlines()
        return next(
            (
                line
                for line in lines
                if line.startswith("webhook room.purged") and free_room in line
            ),
            None,
        )

    line = await eventually(purged)
    status, record = await http.api("GET", f"/transactions/{free}")
    assert status == 200 and record["purged_at"] and record["transcript_hash"] in line
    (stored,) = (make_run.project / ".dev" / "transcripts").glob(f"transaction-{free}-*.json")
    assert (
        json.loads(await asyncio.to_thread(stored.read_text))["final_hash"]
        == record["transcript_hash"]
    )
    status, kept = await http.api("GET", f"/transactions/{held}")
    assert status == 200 and kept["purged_at"] is None and kept["legal_hold"], kept
    status, holds = await http.api("GET", "/holds")
    assert held in [h["transaction_id"] for h in holds["holds"] if h["kind"] == "manual"]


async def test_make_run_gives_a_working_stack_and_stops_cleanly(
    make_run: MakeRun, pytestconfig: pytest.Config
) -> None:
    # Short delays, as README.md shows, so a reminder and a nudge come within the test; and a
    # refunded deal's room removed a second after its close (docs/retention.md).
    make_run.env |= {
        "BRIDGE_REMINDERS__UNREAD_AFTER": "2s",
        "BRIDGE_DEALS__NUDGE_AFTER": "3s",
        "BRIDGE_RETENTION__CLOSED_TRANSACTION_DAYS__REFUNDED": "1s",
        "BRIDGE_RETENTION__CHECK_INTERVAL_SECONDS": "1",
    }
    first_ready = make_run.start()
    stack = make_run.stack()
    assert set(stack) == {
        "homeserver_url",
        "server_name",
        "registration_shared_secret",
        "api_url",
        "api_token",
        "chat_url",
        "chat_demo_url",
        "demo_transaction_id",
        "users",
    }
    async with ClientSession() as session:
        http = Http(session, stack)
        async with session.get(stack["homeserver_url"] + "/_matrix/client/versions") as r:
            assert r.status == 200
        await check_demo_users(http, stack)
        # make run's Synapse is the hardened one: a managed buyer opens no room of their own.
        invite = {"invite": [stack["users"]["seller"]["user_id"]]}
        status, refused = await http.matrix(
            "POST", "/createRoom", stack["users"]["buyer"]["access_token"], invite
        )
        assert (status, refused["errcode"]) == (403, "M_FORBIDDEN"), refused

        # What it printed and README.md's walk-through, pasted into a shell as they are.
        printed = make_run.shell(printed_commands(make_run.log(tail=100_000)))
        status, bike = await http.api("GET", "/transactions/bike-1")
        assert status == 200 and bike["access"] == "open", bike
        assert bike["room_id"] in printed, printed  # the sync shows Dana in the room
        walked = make_run.shell(readme_commands(make_run.project / "README.md"))
        assert bike["room_id"] in walked and "[contact details hidden]" in walked, walked
        assert '"access": "archived"' in walked, walked
        status, lamp = await http.api("GET", "/transactions/lamp-1")
        assert status == 200 and lamp["buyer"]["matrix_id"] == "@carol:localhost", lamp
        carol = await http.login(stack["users"]["guest"])
        status, synced = await http.matrix("GET", "/sync?timeout=0", carol)
        assert status == 200 and lamp["room_id"] in synced["rooms"].get("invite", {}), synced

        order, room_id = await marketplace_flow(http)

        # Its webhook receiver verified each notification and printed it.
        async def printed_webhooks() -> bool:
            log = make_run.log(tail=100_000)
            return "webhook room.state_changed" in log and room_id in log

        await eventually(printed_webhooks)
        assert "REFUSED" not in make_run.log(tail=100_000)

        # The seller never read nor answered the buyer's message (the flow's reading is no
        # receipt): reminded of it, then nudged.
        async def followed_up() -> bool:
            lines = make_run.log(tail=100_000).splitlines()
            return all(
                any(line.startswith(f"webhook {kind}") and room_id in line for line in lines)
                for kind in ("message.unread_reminder", "deal.nudge")
            )

        await eventually(followed_up)
        await retention_flow(http, make_run)

    first_stop = make_run.terminate()

    # A second run keeps the users, passwords and rooms, and mints new sessions that work.
    second_ready = make_run.start()
    again = make_run.stack()
    assert again["api_token"] == stack["api_token"]
    assert {role: u["user_id"] for role, u in again["users"].items()} == {
        role: u["user_id"] for role, u in stack["users"].items()
    }
    for role in ("guest", "admin"):
        assert again["users"][role] == stack["users"][role]
    async with ClientSession() as session:
        http = Http(session, again)
        for role in ("buyer", "seller"):
            user = again["users"][role]
            assert user["access_token"] != stack["users"][role]["access_token"]
            assert await http.whoami(user["access_token"]) == user["user_id"]
        status, kept = await http.api("GET", f"/transactions/{order}")
        assert status == 200 and kept["room_id"] == room_id, kept
    second_stop = make_run.terminate()
    pytestconfig.stash.setdefault(MAKE_RUN_READY, []).extend(
        [("first run", first_ready, first_stop), ("second run", second_ready, second_stop)]
    )
