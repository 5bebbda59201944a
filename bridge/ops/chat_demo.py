"""``make run``'s chat demo: a stand-in marketplace page on its own origin that embeds the web
chat for the demo buyer and the demo seller side by side (docs/webchat.md).

It plays the marketplace's backend as a real one would: it holds the API token, mints each
party's session (POST /api/v1/users/<id>/sessions) when the chat asks for one, and reports the
order's payment, dispute and completion through the API. The order's chats are bare iframes
with the postMessage contract; the chat lists are mounted with embed.js: both ways work.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web

from bridge.ops.demo import BridgeApi, DemoError

PAGE = Path(__file__).with_name("chat_demo.html")
SESSION_SECONDS = 3600
PARTIES = {"buyer": "buyer-1", "seller": "seller-1"}
DEMO_TITLE = "Vintage bike (demo)"


class ChatDemo:
    """The demo page and its backend: /, POST /session/<role>, POST /order/<action>."""

    def __init__(self, api_url: str, api_token: str, bridge_url: str) -> None:
        self._api_url, self._api_token = api_url, api_token
        self._bridge_url = bridge_url.rstrip("/")
        # A new order at every start, so the demo always begins locked, before payment.
        self.transaction_id = f"demo-{int(time.time())}"
        self._session: ClientSession | None = None
        self._disputes = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self.page)
        app.router.add_post("/session/{role}", self._answering(self.session))
        app.router.add_post("/order/{action}", self._answering(self.order))
        app.on_cleanup.append(self._close)
        return app

    @staticmethod
    def _answering(handler):
        """The bridge's refusal, passed on to the page as it is (a demo hides nothing)."""

        async def answer(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except DemoError as e:
                return web.json_response({"error": str(e)}, status=502)

        return answer

    async def _close(self, _: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    def _api(self) -> BridgeApi:
        if self._session is None:
            self._session = ClientSession(timeout=ClientTimeout(total=30))
        return BridgeApi(self._session, self._api_url, self._api_token)

    async def make_transaction(self) -> dict[str, Any]:
        """The demo order between the demo buyer and seller (once the users exist)."""
        return await self._api().call(
            "POST",
            "/transactions",
            {
                "transaction_id": self.transaction_id,
                "title": DEMO_TITLE,
                "buyer": {"user_id": PARTIES["buyer"]},
                "seller": {"user_id": PARTIES["seller"]},
            },
        )

    async def page(self, _: web.Request) -> web.Response:
        settings = {
            "chat_url": f"{self._bridge_url}/chat/",
            "transaction_id": self.transaction_id,
            "title": DEMO_TITLE,
        }
        data = json.dumps(settings).replace("<", "\\u003c")
        html = PAGE.read_text(encoding="utf-8").replace("/*DEMO_SETTINGS*/null", data, 1)
        return web.Response(
            text=html, content_type="text/html", headers={"Cache-Control": "no-cache"}
        )

    async def session(self, request: web.Request) -> web.Response:
        user_id = PARTIES.get(request.match_info["role"])
        if user_id is None:
            return web.json_response({"error": "no such role"}, status=404)
        made = await self._api().call(
            "POST", f"/users/{user_id}/sessions", {"ttl_seconds": SESSION_SECONDS}
        )
        return web.json_response(made)

    async def order(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        path = f"/transactions/{self.transaction_id}"
        api = self._api()
        if action == "payment":
            answer = await api.call("POST", f"{path}/payment")
        elif action == "close":
            answer = await api.call("POST", f"{path}/close", {"outcome": "completed"})
        elif action == "dispute":
            self._disputes += 1
            answer = await api.call(
                "POST",
                "/disputes",
                {
                    "dispute_id": f"{self.transaction_id}-d{self._disputes}",
                    "transaction_id": self.transaction_id,
                    "reason": "The bike arrived with a bent wheel",
                    "opened_by": "buyer",
                },
            )
        else:
            return web.json_response({"error": "no such action"}, status=404)
        return web.json_response(answer)


async def start_chat_demo(demo: ChatDemo, port: int) -> web.AppRunner:
    runner = web.AppRunner(demo.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner
