"""``make run``'s marketplace end of the webhooks: checks each signature, prints one line."""

from __future__ import annotations

import json

from aiohttp import web


async def start_webhook_sink(port: int, secrets: list[str]) -> web.AppRunner:
    """The dev stack's marketplace: verifies each webhook's signature, prints it on one line."""
    from standardwebhooks import Webhook

    verifiers = [Webhook(secret) for secret in secrets]

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        verified = False
        for verifier in verifiers:
            try:
                verifier.verify(body, headers)
                verified = True
            except Exception:  # noqa: S112 (the next secret may match)
                continue
        if not verified:
            print("webhook REFUSED: bad signature", flush=True)
            return web.Response(status=401)
        event = json.loads(body)
        data = event["data"]
        latest = data.get("latest") or {}  # an unread reminder's latest message
        detail = (
            data.get("preview")
            or latest.get("preview")
            or data.get("access")
            or data.get("final_hash")  # room.purged: the stored transcript's
            or data.get("event_id")
            or ""
        )
        print(
            f"webhook {event['type']:<18} {event['id']} {data.get('room_id', '')} {detail!r}",
            flush=True,
        )
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/webhooks", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner
