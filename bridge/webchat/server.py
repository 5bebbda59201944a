"""/chat/: the web chat's page and bundle, and the one call it makes to the bridge.

    GET /chat/              the page, its config inlined; framed only by webchat.allowed_origins
    GET /chat/<file>        the bundle's files (only names the build wrote)
    GET /chat/theme.css     webchat.theme: the marketplace's values of the chat's CSS variables
    GET /chat/api/v1/chats  Bearer <a Matrix access token>: who the homeserver says it is, and
                            that user's transaction and dispute rooms (room ids, titles, states,
                            roles, the dispute's reason); the chat reads everything else from
                            the homeserver, as any Matrix client would

The page runs no inline script and talks to two hosts only: this bridge and the homeserver's
client address (gateway.client_url), which its Content-Security-Policy pins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientError, ClientSession, web

from appservice.matrix import HomeserverUnavailable
from appservice.tokens import bearer_token
from bridge.api import middleware
from bridge.api.errors import ApiError
from bridge.api.views import chat_out
from bridge.config import Config
from bridge.market.chat_list import Chat, ChatList
from policy.ids import UserId
from policy.rooms import Access

from .assets import Bundle

PREFIX = "/chat"
HOMESERVER_TIMEOUT = 10.0
MAX_TOKEN_LENGTH = 1024  # Synapse's are about 40 characters; anything far longer is not one


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class WebChat:
    def __init__(
        self,
        config: Config,
        bundle: Bundle,
        chat_list: ChatList,
        access: Callable[[Chat], Access],
        session: ClientSession,
    ) -> None:
        self._bundle = bundle
        self._chat_list = chat_list
        self._access = access
        self._session = session
        self._whoami_url = (
            f"{str(config.homeserver.url).rstrip('/')}/_matrix/client/v3/account/whoami"
        )
        self._bot = config.bot_mxid
        self._theme = dict(config.webchat.theme)
        self._admins = list(config.rooms.admins)
        homeserver = config.gateway.client_url
        self._page_config = {
            "homeserver_url": homeserver,
            "api_url": f"{PREFIX}/api/v1",
            "allowed_origins": list(config.webchat.allowed_origins),
            "default_language": config.webchat.default_language,
            "uploads": {
                "max_bytes": config.policy.max_media_bytes,
                "media_types": list(config.policy.allowed_media_types),
                "msgtypes": list(config.policy.allowed_msgtypes),
            },
        }
        ancestors = " ".join(["'self'", *config.webchat.allowed_origins])
        self._page_headers = {
            "Content-Security-Policy": "; ".join(
                [
                    "default-src 'none'",
                    "script-src 'self'",
                    "style-src 'self'",
                    "img-src 'self' blob: data:",
                    "media-src 'self' blob:",
                    f"connect-src 'self' {_origin(homeserver)}",
                    f"frame-ancestors {ancestors}",
                    "base-uri 'none'",
                    "form-action 'none'",
                ]
            ),
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        }

    def add_to(self, app: web.Application) -> None:
        chat = web.Application(
            middlewares=[middleware.errors(logging.getLogger("bridge.webchat"))]
        )
        chat.router.add_get("/", self.page)
        chat.router.add_get("/api/v1/chats", self.chats)
        chat.router.add_get("/theme.css", self.theme)
        chat.router.add_get("/{name}", self.asset)
        app.router.add_get(PREFIX, self.to_page)
        app.add_subapp(PREFIX, chat)

    async def to_page(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(request.rel_url.with_path(PREFIX + "/"))

    async def page(self, _: web.Request) -> web.Response:
        return web.Response(
            text=self._bundle.index(self._page_config),
            content_type="text/html",
            charset="utf-8",
            headers=self._page_headers,
        )

    async def theme(self, _: web.Request) -> web.Response:
        """webchat.theme's variables, after the bundle's defaults (the config checked them)."""
        declarations = "".join(f"  {name}: {value};\n" for name, value in self._theme.items())
        return web.Response(
            text=f":root {{\n{declarations}}}\n",
            content_type="text/css",
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = self._bundle.path(name) if name != "index.html" else None
        if path is None:
            raise ApiError(404, "MARKET_NOT_FOUND", "No such file")
        cache = (
            "public, max-age=31536000, immutable" if self._bundle.immutable(name) else "no-cache"
        )
        return web.FileResponse(
            path, headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
        )

    async def chats(self, request: web.Request) -> web.Response:
        matrix_id = await self._whoami(request.headers.get("Authorization", ""))
        found = await self._chat_list.of_matrix_id(matrix_id)
        if found is None:
            raise ApiError(404, "MARKET_UNKNOWN_USER", "This account is no marketplace user's")
        user_id, chats = found
        return web.json_response(
            {
                "user_id": user_id,
                "matrix_id": matrix_id,
                "bot": self._bot,
                "admins": self._admins,
                # Only chats whose room exists: one still being made has nothing to show.
                "chats": [self._chat(chat, matrix_id) for chat in chats if chat.room_id],
            }
        )

    def _chat(self, chat: Chat, matrix_id: UserId) -> dict[str, Any]:
        parties = (matrix_id, chat.counterpart)
        buyer, seller = parties if chat.role == "buyer" else reversed(parties)
        return {
            **chat_out(chat, self._access(chat)).model_dump(mode="json"),
            "reason": chat.reason,
            "buyer": buyer,
            "seller": seller,
        }

    async def _whoami(self, header: str) -> UserId:
        """The Matrix user the homeserver says the token is (it alone knows its sessions)."""
        token = bearer_token(header)
        if token is None:
            raise ApiError(401, "MARKET_MISSING_TOKEN", "Missing Bearer token")
        if len(token) > MAX_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
            raise ApiError(401, "MARKET_UNKNOWN_TOKEN", "Unknown or expired session")
        try:
            async with self._session.get(
                self._whoami_url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=HOMESERVER_TIMEOUT,
            ) as response:
                body = await response.json(content_type=None)
        except (ClientError, TimeoutError, ValueError) as e:
            raise HomeserverUnavailable(str(e)) from e
        if response.status == 401 or response.status == 403:
            raise ApiError(401, "MARKET_UNKNOWN_TOKEN", "Unknown or expired session")
        user_id = body.get("user_id") if isinstance(body, dict) else None
        if response.status != 200 or not isinstance(user_id, str):
            raise HomeserverUnavailable(f"whoami answered {response.status}")
        return UserId(user_id)
