"""The bot's calls to the homeserver: a thin facade over mautrix's client API.

Each method is one client-server API request made as the appservice bot, with no hidden
calls: mautrix's IntentAPI would add membership and power-level checks (about three extra
requests per room) that the bridge does not need, since its rooms come from its own plans.

Failures come out as two kinds: `HomeserverUnavailable` (unreachable, timed out, 5xx, rate
limited: worth retrying) and `MatrixError` (the homeserver refused: an errcode to act on).
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote

from aiohttp import ClientError
from mautrix.api import Method
from mautrix.appservice import AppServiceAPI
from mautrix.errors import MatrixConnectionError, MatrixRequestError

from policy.ids import EventId, RoomId, UserId

from .transactions import Receipt, parse_receipts

CLIENT_V3 = "/_matrix/client/v3"
# Served by the marketplace's Synapse module (synapse_module/), where it is loaded.
USER_EXISTS_PATH = "/_synapse/client/marketplace/user_exists"
MASKED_PATH = "/_synapse/client/marketplace/masked"
ACCOUNT_PATH = "/_synapse/client/marketplace/account"
SESSIONS_PATH = "/_synapse/client/marketplace/sessions"
DEACTIVATE_PATH = "/_synapse/client/marketplace/deactivate"
ROOM_PURGE_PATH = "/_synapse/client/marketplace/rooms/purge"


class HomeserverUnavailable(Exception):
    pass


class MatrixError(Exception):
    def __init__(self, status: int, errcode: str | None, message: str) -> None:
        super().__init__(f"{status} {errcode}: {message}")
        self.status = status
        self.errcode = errcode


def txn_id(purpose: str, key: str) -> str:
    """A send's transaction id, derived from what the send is for: a retry reuses it, and the
    homeserver answers with the event it made the first time (Synapse remembers for about 30
    minutes, in memory: record what was sent where it must hold longer)."""
    return f"{purpose}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def localpart(user_id: str) -> str:
    return user_id.removeprefix("@").partition(":")[0]


def _path(*parts: str) -> str:
    return CLIENT_V3 + "".join("/" + quote(part, safe="") for part in parts)


class MatrixBot:
    def __init__(self, api: AppServiceAPI, user_id: UserId) -> None:
        self._api = api
        self.user_id = user_id

    async def _request(
        self,
        method: Method,
        path: str,
        content: dict[str, Any] | bytes | None = None,
        *,
        as_user: UserId | None = None,
        **options: Any,
    ) -> Any:
        """One request as the bot, or ``as_user`` (a user in the appservice's namespace)."""
        api = self._api.user(as_user) if as_user else self._api
        try:
            return await api.request(method, path, content, retry_count=0, **options)
        except MatrixRequestError as e:
            status = getattr(e, "http_status", 0)
            if status >= 500 or status in (0, 429):
                raise HomeserverUnavailable(f"{status}: {e}") from e
            message = getattr(e, "message", None) or str(e)
            raise MatrixError(status, getattr(e, "errcode", None), message) from e
        except (MatrixConnectionError, ClientError, TimeoutError, OSError) as e:
            raise HomeserverUnavailable(f"{type(e).__name__}: {e}") from e

    async def ensure_registered(self) -> None:
        """Register the bot's own user; an existing registration is fine."""
        try:
            await self._request(
                Method.POST,
                CLIENT_V3 + "/register",
                {"type": "m.login.application_service", "username": localpart(self.user_id)},
            )
        except MatrixError as e:
            if e.errcode != "M_USER_IN_USE":
                raise

    async def ping(self, appservice_id: str) -> None:
        """Ask the homeserver to call us back; it then re-sends pending transactions at once."""
        await self._request(
            Method.POST, f"/_matrix/client/v1/appservice/{quote(appservice_id, safe='')}/ping", {}
        )

    async def versions(self) -> dict[str, Any]:
        return await self._request(Method.GET, "/_matrix/client/versions")

    async def create_room(
        self,
        *,
        room_version: str,
        alias_localpart: str | None = None,
        name: str | None = None,
        topic: str | None = None,
        power_levels: dict[str, Any] | None = None,
        initial_state: list[dict[str, Any]] = (),  # type: ignore[assignment]
    ) -> RoomId:
        """A private room, the bot its creator, nobody invited yet (an invitee who blocks
        invitations would fail the whole call); optional fields are left to the homeserver."""
        request = {
            "visibility": "private",
            "preset": "private_chat",
            "room_version": room_version,
            "initial_state": list(initial_state),
            "is_direct": False,
            "room_alias_name": alias_localpart,
            "name": name,
            "topic": topic,
            "power_level_content_override": power_levels,
        }
        response = await self._request(
            Method.POST,
            CLIENT_V3 + "/createRoom",
            {key: value for key, value in request.items() if value is not None},
        )
        return RoomId(response["room_id"])

    async def resolve_alias(self, alias: str) -> RoomId | None:
        try:
            response = await self._request(Method.GET, _path("directory", "room", alias))
        except MatrixError as e:
            if e.status == 404:
                return None
            raise
        return RoomId(response["room_id"])

    async def delete_alias(self, alias: str) -> None:
        """Free one of the bot's aliases; an alias already gone is fine."""
        try:
            await self._request(Method.DELETE, _path("directory", "room", alias))
        except MatrixError as e:
            if e.status != 404:
                raise

    async def join(self, room_id: RoomId) -> None:
        """Join (or stay in) a room; joining one the bot is in already changes nothing."""
        await self._request(Method.POST, _path("join", room_id), {})

    async def get_state(
        self, room_id: RoomId, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None:
        try:
            return await self._request(
                Method.GET, _path("rooms", room_id, "state", event_type, state_key)
            )
        except MatrixError as e:
            if e.status == 404:
                return None
            raise

    async def room_state(self, room_id: RoomId) -> dict[str, dict[str, Any]]:
        """The content of each of the room's state events with an empty state key, by type."""
        events = await self._request(Method.GET, _path("rooms", room_id, "state"))
        return {e["type"]: e["content"] for e in events if e.get("state_key") == ""}

    async def send_state(
        self, room_id: RoomId, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> EventId:
        response = await self._request(
            Method.PUT, _path("rooms", room_id, "state", event_type, state_key), content
        )
        return EventId(response["event_id"])

    async def send_message(
        self, room_id: RoomId, event_type: str, content: dict[str, Any], txn_id: str
    ) -> EventId:
        """Send with a fixed txn id: Synapse answers a repeat (within ~30 min) with the same
        event instead of a second one."""
        response = await self._request(
            Method.PUT, _path("rooms", room_id, "send", event_type, txn_id), content
        )
        return EventId(response["event_id"])

    async def redact(
        self, room_id: RoomId, event_id: EventId, reason: str, txn_id: str | None = None
    ) -> EventId:
        """Remove an event's content (the bot's power level allows it in managed rooms)."""
        response = await self._request(
            Method.PUT,
            _path("rooms", room_id, "redact", event_id, txn_id or f"redact-{event_id}"),
            {"reason": reason},
        )
        return EventId(response["event_id"])

    async def kick(self, room_id: RoomId, user_id: UserId, reason: str) -> None:
        await self._request(
            Method.POST, _path("rooms", room_id, "kick"), {"user_id": user_id, "reason": reason}
        )

    async def invite(self, room_id: RoomId, user_id: UserId) -> None:
        await self._request(Method.POST, _path("rooms", room_id, "invite"), {"user_id": user_id})

    async def messages(
        self, room_id: RoomId, from_token: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the room's timeline, newest first, and the token of the page before it
        (None at the room's start)."""
        query = {"dir": "b", "limit": str(limit), **({"from": from_token} if from_token else {})}
        response = await self._request(
            Method.GET, _path("rooms", room_id, "messages"), query_params=query
        )
        return response.get("chunk", []), response.get("end")

    async def read_receipts(self, room_id: RoomId) -> list[Receipt]:
        """The room's public main-timeline read receipts, as the homeserver has them now (the
        ones it pushes are dropped while the bridge is unreachable)."""
        response = await self._request(
            Method.GET, _path("rooms", room_id, "initialSync"), query_params={"limit": "1"}
        )
        edus = response.get("receipts")
        return [
            receipt
            for edu in (edus if isinstance(edus, list) else [])
            if isinstance(edu, dict)
            for receipt in parse_receipts({**edu, "room_id": room_id})
        ]

    async def memberships(self, room_id: RoomId) -> dict[UserId, str]:
        """Every user with a membership event in the room, and that membership."""
        response = await self._request(Method.GET, _path("rooms", room_id, "members"))
        return {
            event["state_key"]: event["content"].get("membership", "")
            for event in response.get("chunk", [])
        }

    async def user_exists(self, user_id: UserId) -> bool:
        """Whether the user is registered: their profile, or, where profiles are limited to
        people who share a room (the hardened homeserver), the marketplace module's answer."""
        try:
            await self._request(Method.GET, _path("profile", user_id))
        except MatrixError as e:
            if e.status == 404:
                return False
            if e.status != 403:
                raise
            try:
                answer = await self._request(
                    Method.GET, USER_EXISTS_PATH, query_params={"user": user_id}
                )
            except MatrixError:
                raise e from None  # no module here: the profile's refusal is the answer
            return bool(answer.get("exists"))
        return True

    async def masked_original(self, mask_id: str) -> dict[str, Any] | None:
        """What a party wrote before the homeserver's module masked it (``room_id``,
        ``sender``, ``content``); None when the module knows no such mask."""
        try:
            return await self._request(Method.GET, MASKED_PATH, query_params={"id": mask_id})
        except MatrixError as e:
            if e.status == 404:
                return None
            raise

    async def upload(self, data: bytes, content_type: str, filename: str) -> str:
        """Store a file in the homeserver's media repository; its mxc:// URI."""
        response = await self._request(
            Method.POST,
            "/_matrix/media/v3/upload",
            data,
            headers={"Content-Type": content_type},
            query_params={"filename": filename},
        )
        return response["content_uri"]

    # Managed accounts: registered by the appservice in its namespace; their profiles,
    # sign-in links and sessions go through the marketplace module (synapse_module/accounts.py).

    async def register_managed(self, user_id: UserId) -> None:
        """Register an account in the appservice's namespace, with no password and no
        device; one that exists already is fine."""
        try:
            await self._request(
                Method.POST,
                CLIENT_V3 + "/register",
                {
                    "type": "m.login.application_service",
                    "username": localpart(user_id),
                    "inhibit_login": True,
                },
            )
        except MatrixError as e:
            if e.errcode != "M_USER_IN_USE":
                raise

    async def set_account(
        self,
        user_id: UserId,
        displayname: str,
        avatar_url: str,
        external_id: tuple[str, str] | None = None,
    ) -> None:
        """Set a managed account's profile (carried into its rooms; "" clears the avatar),
        and link it to a sign-in provider's subject ``(auth_provider, external_id)``."""
        body: dict[str, Any] = {
            "user_id": user_id,
            "displayname": displayname,
            "avatar_url": avatar_url,
        }
        if external_id is not None:
            body["external_id"] = {"auth_provider": external_id[0], "external_id": external_id[1]}
        await self._request(Method.POST, ACCOUNT_PATH, body)

    async def set_locked(self, user_id: UserId, locked: bool) -> None:
        """Lock a managed account (the homeserver refuses its tokens and logins) or unlock it."""
        await self._request(Method.POST, ACCOUNT_PATH, {"user_id": user_id, "locked": locked})

    async def create_session(
        self, user_id: UserId, valid_until_ms: int, display_name: str
    ) -> tuple[str, str]:
        """A new device of a managed account and its token, which the homeserver refuses
        after ``valid_until_ms``: (device id, access token)."""
        response = await self._request(
            Method.POST,
            SESSIONS_PATH,
            {"user_id": user_id, "valid_until_ms": valid_until_ms, "display_name": display_name},
        )
        return response["device_id"], response["access_token"]

    async def session_devices(self, user_id: UserId) -> set[str]:
        response = await self._request(Method.GET, SESSIONS_PATH, query_params={"user": user_id})
        return set(response.get("device_ids", []))

    async def end_sessions(self, user_id: UserId, device_id: str | None = None) -> None:
        """Delete one device of a managed account (or all of them), their tokens with them."""
        query = {"user": user_id, **({"device": device_id} if device_id else {})}
        await self._request(Method.DELETE, SESSIONS_PATH, query_params=query)

    async def deactivate_managed(self, user_id: UserId) -> None:
        """Deactivate a managed account with erasure (GDPR): profile gone, rooms left."""
        await self._request(Method.POST, DEACTIVATE_PATH, {"user_id": user_id})

    async def purge_room(self, room_id: RoomId) -> None:
        """Remove a room the bot created from the homeserver for good: its members removed
        (the bot too), its history purged, the room blocked so nobody can rejoin it.
        Idempotent: a room already purged is blocked again and nothing else happens.

        One request that lasts as long as the purge. mautrix's requests take no timeout of
        their own, so the client session's applies (the bridge's: 60 s); Synapse finishes a
        purge whose caller gave up, and a retry then finds the room gone."""
        await self._request(Method.POST, ROOM_PURGE_PATH, {"room_id": room_id})

    async def join_as(self, room_id: RoomId, user_id: UserId) -> None:
        """Join a managed account to a room it is invited to (the appservice acts as it)."""
        await self._request(Method.POST, _path("join", room_id), {}, as_user=user_id)
