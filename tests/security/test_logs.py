"""No secret in the bridge's logs: a realistic run (create, join, pay, messages, a broken
rule, webhooks with a failing attempt, refused calls, close) logged at DEBUG holds none of
the tokens or webhook secrets, in any form (plain, URL-encoded, base64, hex, or a prefix)."""

from __future__ import annotations

import base64
import logging
import uuid
from urllib.parse import quote

import pytest
from nio import RoomSendResponse

from tests.e2e.stack import Stack, join, send, with_webhooks
from tests.harness import WebhookReceiver, eventually


def forms(secret: str) -> set[str]:
    """The ways a secret could show up in a log line."""
    raw = secret.encode()
    found = {
        secret,
        secret[:16],
        secret[-16:],
        quote(secret, safe=""),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
    }
    if secret.startswith("whsec_"):
        key = base64.b64decode(secret.removeprefix("whsec_"))
        found |= {secret.removeprefix("whsec_")[:16], key.hex(), key.hex()[:16]}
    return found


async def test_no_secret_is_logged(
    stack: Stack, hooks: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stack.config = with_webhooks(stack.config, hooks.url)
    config = stack.config
    secrets = {
        "as_token": config.appservice.as_token.get_secret_value(),
        "hs_token": config.appservice.hs_token.get_secret_value(),
        "api token": config.api.token.get_secret_value(),
        **{
            f"webhook secret {n}": s.get_secret_value()
            for n, s in enumerate(config.webhooks.secrets)
        },
    }
    # The first attempt of each notification fails: retries and their errors are logged too.
    hooks.behave = lambda body, attempt: 500 if attempt == 1 else 200
    base = f"http://127.0.0.1:{config.server.port}"
    async with stack.running():
        room_id = await stack.create()
        for party in (stack.buyer, stack.seller):
            await join(party, room_id)
        await stack.transition(room_id, "/payment")
        hello = await send(stack.buyer, room_id, "Hello, is it still available?")
        assert isinstance(hello, RoomSendResponse)
        await send(stack.seller, room_id, "Yes, call me on +44 7911 123456")
        # Refused and failing calls, each with a secret nearby.
        for headers in (
            {"Authorization": f"Bearer {secrets['api token']}x"},
            {"Authorization": f"Bearer {secrets['hs_token']}"},
            {},
        ):
            async with stack.session.get(f"{base}/api/v1/audit", headers=headers) as r:
                assert r.status == 401
        async with stack.session.put(
            f"{base}/_matrix/app/v1/transactions/{uuid.uuid4().hex}",
            json={"events": []},
            headers={"Authorization": f"Bearer {secrets['api token']}"},
        ) as r:
            assert r.status == 403
        async with stack.session.put(
            f"{base}/_matrix/app/v1/transactions/{uuid.uuid4().hex}",
            data=b"{not json",
            headers={"Authorization": f"Bearer {secrets['hs_token']}"},
        ) as r:
            assert r.status == 400
        status, _ = await stack.api.call("GET", "/transactions/no-such-order")
        assert status == 404
        status, _ = await stack.api.call("POST", "/transactions", {"title": "x"})
        assert status == 400
        txn = stack.created[-1]["transaction_id"]
        status, _ = await stack.api.call("GET", f"/transactions/{txn}/transcript")
        assert status == 200

        async def violation() -> list[dict]:
            return hooks.delivered("policy.violation")

        await eventually(violation, within=30)
        await stack.transition(room_id, "/close", {"outcome": "completed"})

        async def all_delivered() -> bool:
            types = [d["type"] for d in hooks.delivered()]
            assert "policy.violation" in types, types
            assert types.count("room.state_changed") == 2, types
            assert any(
                d["data"].get("event_id") == hello.event_id
                for d in hooks.delivered("message.created")
            )
            return True

        await eventually(all_delivered, within=30)
        assert any(a.answered == 500 for a in hooks.attempts)

    records = caplog.records
    assert len(records) > 20  # the run was logged at all (DEBUG included)
    assert any(r.levelno == logging.DEBUG for r in records)
    text = caplog.text + "\n".join(
        f"{r.getMessage()} {r.args!r} {r.exc_text or ''} {getattr(r, 'url', '')}" for r in records
    )
    for name, secret in secrets.items():
        for form in forms(secret):
            assert form not in text, f"the {name} appears in the log (as {form!r})"
