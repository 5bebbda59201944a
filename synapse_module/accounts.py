"""Managed accounts, for the bridge's bot alone: profiles, links to the marketplace's sign-in,
and sessions that end by themselves.

    POST   /_synapse/client/marketplace/account   {"user_id", "displayname"?, "avatar_url"?,
           "external_id"?: {"auth_provider", "external_id"}, "locked"?}: the profile set (as
           an admin would: parties may not change theirs) and carried into every room; the
           account linked to the marketplace's OpenID Connect subject; the account locked or
           unlocked (suspension: Synapse then refuses its every token and login)
    POST   /_synapse/client/marketplace/sessions  {"user_id", "valid_until_ms", "display_name"}
           -> {"device_id", "access_token"}: a new device whose token Synapse itself refuses
           after ``valid_until_ms``, whoever is up
    GET    /_synapse/client/marketplace/sessions?user=...  -> {"device_ids": [...]}
    DELETE /_synapse/client/marketplace/sessions?user=...[&device=...]: one device (or every
           device of the user) deleted, its tokens with it
    POST   /_synapse/client/marketplace/deactivate  {"user_id"}: the account deactivated with
           erasure (GDPR: profile removed, rooms left, events erased for later joiners) and
           the originals this module kept of its masked messages deleted

Only accounts in the bridge's namespace (``managed_prefix``) may be named. Synapse's module API
has no per-token expiry nor avatar setter, so those two calls use its handlers directly
(`DeviceHandler.check_device_registered`, `AuthHandler.create_access_token_for_user_id`,
`ProfileHandler.dispatch_set_profile_field`), as its own login and admin APIs do.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from synapse.module_api import DirectServeJsonResource, ModuleApi, UserID, create_requester
from synapse.module_api.errors import Codes, SynapseError

from .originals import Originals

ACCOUNT_PATH = "/_synapse/client/marketplace/account"
SESSIONS_PATH = "/_synapse/client/marketplace/sessions"
DEACTIVATE_PATH = "/_synapse/client/marketplace/deactivate"
DEVICE_PREFIX = "MARKET"


class _BotOnly(DirectServeJsonResource):
    def __init__(self, api: ModuleApi, bot: str, prefix: str) -> None:
        super().__init__()
        self._api = api
        self._bot = bot
        self._prefix = prefix

    async def _check_bot(self, request: Any) -> None:
        requester = await self._api.get_user_by_req(request)
        if requester.user.to_string() != self._bot:
            raise SynapseError(403, "Only the marketplace's bot may ask", Codes.FORBIDDEN)

    async def _managed(self, user_id: Any) -> str:
        """``user_id`` if it names an existing account in the bridge's namespace."""
        if not (
            isinstance(user_id, str)
            and user_id.startswith(f"@{self._prefix}")
            and self._api.is_mine(user_id)
        ):
            raise SynapseError(400, "user_id: a managed account", Codes.INVALID_PARAM)
        if await self._api.check_user_exists(user_id) is None:
            raise SynapseError(404, "No such account", Codes.NOT_FOUND)
        return user_id

    @staticmethod
    def _body(request: Any) -> dict[str, Any]:
        try:
            body = json.loads(request.content.read())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SynapseError(400, "A JSON object is expected", Codes.NOT_JSON)
        return body

    @staticmethod
    def _arg(request: Any, name: bytes) -> str | None:
        values = request.args.get(name)
        return values[0].decode("utf-8", "replace") if values else None


class AccountResource(_BotOnly):
    async def _async_render_POST(self, request: Any) -> tuple[int, dict[str, Any]]:
        await self._check_bot(request)
        body = self._body(request)
        user_id = await self._managed(body.get("user_id"))
        user = UserID.from_string(user_id)
        if isinstance(name := body.get("displayname"), str):
            await self._api.set_displayname(user, name)
        if isinstance(avatar := body.get("avatar_url"), str):
            # "" clears it. The module API has no avatar setter; this is what it would call.
            handler = self._api._hs.get_profile_handler()
            await handler.dispatch_set_profile_field(
                target_user=user,
                requester=create_requester(user_id),
                field_name="avatar_url",
                new_value=avatar,
                by_admin=True,
            )
        link = body.get("external_id")
        if isinstance(link, dict):
            provider, subject = link.get("auth_provider"), link.get("external_id")
            if not (isinstance(provider, str) and isinstance(subject, str)):
                raise SynapseError(400, "external_id: two strings", Codes.INVALID_PARAM)
            await self._link(provider, subject, user_id)
        if isinstance(locked := body.get("locked"), bool):
            await self._api._store.set_user_locked_status(user_id, locked)
        return 200, {}

    async def _link(self, provider: str, subject: str, user_id: str) -> None:
        store = self._api._store
        linked = await store.get_user_by_external_id(provider, subject)
        if linked == user_id:
            return
        if linked is not None:
            raise SynapseError(409, f"{subject} is linked to {linked}", "M_USER_IN_USE")
        await self._api.record_user_external_id(provider, subject, user_id)


class SessionsResource(_BotOnly):
    async def _async_render_POST(self, request: Any) -> tuple[int, dict[str, Any]]:
        await self._check_bot(request)
        body = self._body(request)
        user_id = await self._managed(body.get("user_id"))
        valid_until_ms = body.get("valid_until_ms")
        if type(valid_until_ms) is not int or valid_until_ms <= self._api.get_current_time_msec():
            raise SynapseError(400, "valid_until_ms: a time to come", Codes.INVALID_PARAM)
        name = body.get("display_name")
        hs = self._api._hs
        device_id = await hs.get_device_handler().check_device_registered(
            user_id,
            DEVICE_PREFIX + secrets.token_hex(6).upper(),
            name if isinstance(name, str) else None,
        )
        token = await hs.get_auth_handler().create_access_token_for_user_id(
            user_id, device_id, valid_until_ms
        )
        return 200, {"device_id": device_id, "access_token": token}

    async def _async_render_GET(self, request: Any) -> tuple[int, dict[str, Any]]:
        await self._check_bot(request)
        user_id = await self._managed(self._arg(request, b"user"))
        devices = await self._api._store.get_devices_by_user(user_id)
        return 200, {"device_ids": sorted(devices)}

    async def _async_render_DELETE(self, request: Any) -> tuple[int, dict[str, Any]]:
        await self._check_bot(request)
        user_id = await self._managed(self._arg(request, b"user"))
        handler = self._api._hs.get_device_handler()
        device = self._arg(request, b"device")
        if device is None:
            await handler.delete_all_devices_for_user(user_id)
        else:
            await handler.delete_devices(user_id, [device])
        return 200, {}


class DeactivateResource(_BotOnly):
    def __init__(self, api: ModuleApi, bot: str, prefix: str, originals: Originals) -> None:
        super().__init__(api, bot, prefix)
        self._originals = originals

    async def _async_render_POST(self, request: Any) -> tuple[int, dict[str, Any]]:
        await self._check_bot(request)
        user_id = await self._managed(self._body(request).get("user_id"))
        handler = self._api._hs.get_deactivate_account_handler()
        await handler.deactivate_account(
            user_id, erase_data=True, requester=create_requester(self._bot), by_admin=True
        )
        await self._originals.forget(user_id)
        return 200, {}
