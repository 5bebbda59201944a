"""Stand-ins for the edges of bridge logic: a clock moved by hand, and a recording fake of the
bot's Matrix calls that keeps a small homeserver in memory (rooms, state, members, aliases,
timelines), in the spirit of maubot's testing bot.

The fake answers as Synapse does where the bridge depends on it (a taken alias is
``M_ROOM_IN_USE``, an unknown room 404, a repeated txn id the same event); a test can make
the next calls fail (`fail`) or the homeserver unreachable (`down`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from appservice.matrix import HomeserverUnavailable, MatrixError
from appservice.transactions import Receipt
from policy.ids import EventId, RoomId, UserId

START_MS = 1_800_000_000_000  # 2027-01-15, a fixed wall-clock start for every test


class FakeClock:
    """Time that moves only when told; sleeping moves it at once (so waits cost nothing)."""

    def __init__(self, now_ms: int = START_MS) -> None:
        self._now_ms = now_ms
        self._monotonic = 1000.0
        self.slept: list[float] = []

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic(self) -> float:
        return self._monotonic

    def advance(self, seconds: float) -> None:
        self._now_ms += round(seconds * 1000)
        self._monotonic += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


@dataclass
class FakeRoom:
    room_id: RoomId
    version: str
    state: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    members: dict[UserId, str] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    sent: dict[str, EventId] = field(default_factory=dict)  # txn id -> event id


@dataclass(frozen=True)
class Call:
    method: str
    args: tuple[Any, ...]

    def __getitem__(self, index: int) -> Any:
        return self.args[index]


class FakeMatrix:
    """Stands in for `appservice.matrix.MatrixBot` (same methods and signatures; a test
    checks that they stay the same)."""

    def __init__(self, user_id: str = "@marketbot:localhost") -> None:
        self.user_id = UserId(user_id)
        self.rooms: dict[RoomId, FakeRoom] = {}
        self.aliases: dict[str, RoomId] = {}
        self.users: set[str] = {self.user_id}
        self.uploads: dict[str, bytes] = {}
        self.originals: dict[str, dict[str, Any]] = {}  # mask id -> what the module kept
        self.receipts: dict[RoomId, list[Receipt]] = {}  # what read_receipts answers
        self.calls: list[Call] = []
        self.down = False  # every call raises HomeserverUnavailable
        self._failures: dict[str, deque[Exception]] = {}
        self._ids = itertools.count(1)
        self.pings = 0
        self.profiles: dict[str, dict[str, Any]] = {}  # managed account -> what the module set
        self.devices: dict[str, dict[str, tuple[str, int]]] = {}  # user -> device -> token, end
        self.locked: set[str] = set()  # managed accounts the homeserver refuses
        self.purged: set[RoomId] = set()  # rooms removed for good (blocked: no rejoining)

    # --- for tests ------------------------------------------------------------------------

    def fail(self, method: str, *errors: Exception) -> None:
        """The next calls of ``method`` raise these errors, one each, in order."""
        self._failures.setdefault(method, deque()).extend(errors)

    def called(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def forget_calls(self) -> None:
        self.calls.clear()

    def messages_in(self, room_id: RoomId) -> list[dict[str, Any]]:
        """The room's m.room.message contents, oldest first."""
        return [
            e["content"] for e in self.rooms[room_id].timeline if e["type"] == "m.room.message"
        ]

    def state_of(self, room_id: RoomId, event_type: str) -> dict[str, Any] | None:
        return self.rooms[room_id].state.get((event_type, ""))

    def add_user(self, user_id: str) -> UserId:
        self.users.add(user_id)
        return UserId(user_id)

    def make_room(self, version: str = "12") -> RoomId:
        """A room the bot is in, made behind the bridge's back."""
        room = FakeRoom(self._room_id(), version, members={self.user_id: "join"})
        self.rooms[room.room_id] = room
        return room.room_id

    def post(self, room_id: RoomId, sender: str, content: dict[str, Any], ts: int = 0) -> EventId:
        """A message someone else sent (for timelines)."""
        return self._append(self.rooms[room_id], "m.room.message", sender, content, ts=ts)

    # --- the MatrixBot interface ----------------------------------------------------------

    async def _enter(self, method: str, *args: Any) -> None:
        self.calls.append(Call(method, args))
        await asyncio.sleep(0)
        if self.down:
            raise HomeserverUnavailable(f"{method}: connection refused")
        queue = self._failures.get(method)
        if queue:
            raise queue.popleft()

    async def ensure_registered(self) -> None:
        await self._enter("ensure_registered")

    async def ping(self, appservice_id: str) -> None:
        await self._enter("ping", appservice_id)
        self.pings += 1

    async def versions(self) -> dict[str, Any]:
        await self._enter("versions")
        return {"versions": ["v1.11"]}

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
        await self._enter("create_room", alias_localpart, name, topic, power_levels)
        alias = f"#{alias_localpart}:localhost" if alias_localpart else None
        if alias in self.aliases:
            raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
        room = FakeRoom(self._room_id(), room_version, members={self.user_id: "join"})
        room.state[("m.room.create", "")] = {"creator": self.user_id, "room_version": room_version}
        room.state[("m.room.power_levels", "")] = dict(power_levels or {})
        for event in initial_state:
            room.state[(event["type"], event.get("state_key", ""))] = dict(event["content"])
        if name is not None:
            room.state[("m.room.name", "")] = {"name": name}
        if topic is not None:
            room.state[("m.room.topic", "")] = {"topic": topic}
        self.rooms[room.room_id] = room
        if alias is not None:
            self.aliases[alias] = room.room_id
        return room.room_id

    async def resolve_alias(self, alias: str) -> RoomId | None:
        await self._enter("resolve_alias", alias)
        return self.aliases.get(alias)

    async def delete_alias(self, alias: str) -> None:
        await self._enter("delete_alias", alias)
        self.aliases.pop(alias, None)

    async def join(self, room_id: RoomId) -> None:
        await self._enter("join", room_id)
        self._room(room_id).members[self.user_id] = "join"

    async def get_state(
        self, room_id: RoomId, event_type: str, state_key: str = ""
    ) -> dict[str, Any] | None:
        await self._enter("get_state", room_id, event_type, state_key)
        return self._room(room_id).state.get((event_type, state_key))

    async def room_state(self, room_id: RoomId) -> dict[str, dict[str, Any]]:
        await self._enter("room_state", room_id)
        state = self._room(room_id).state
        return {
            event_type: dict(content) for (event_type, key), content in state.items() if key == ""
        }

    async def send_state(
        self, room_id: RoomId, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> EventId:
        await self._enter("send_state", room_id, event_type, content, state_key)
        room = self._room(room_id)
        room.state[(event_type, state_key)] = dict(content)
        return self._append(room, event_type, self.user_id, content, state_key=state_key)

    async def send_message(
        self, room_id: RoomId, event_type: str, content: dict[str, Any], txn_id: str
    ) -> EventId:
        await self._enter("send_message", room_id, event_type, content, txn_id)
        room = self._room(room_id)
        if txn_id in room.sent:  # Synapse answers a repeated txn id with the same event
            return room.sent[txn_id]
        event_id = self._append(room, event_type, self.user_id, content)
        room.sent[txn_id] = event_id
        return event_id

    async def redact(
        self, room_id: RoomId, event_id: EventId, reason: str, txn_id: str | None = None
    ) -> EventId:
        await self._enter("redact", room_id, event_id, reason, txn_id)
        room = self._room(room_id)
        for event in room.timeline:
            if event["event_id"] == event_id:
                event["content"] = {}
                event["redacted_because"] = reason
        return self._append(room, "m.room.redaction", self.user_id, {"redacts": event_id})

    async def kick(self, room_id: RoomId, user_id: UserId, reason: str) -> None:
        await self._enter("kick", room_id, user_id, reason)
        self._room(room_id).members[user_id] = "leave"

    async def invite(self, room_id: RoomId, user_id: UserId) -> None:
        await self._enter("invite", room_id, user_id)
        self._room(room_id).members[user_id] = "invite"

    async def messages(
        self, room_id: RoomId, from_token: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        await self._enter("messages", room_id, from_token, limit)
        timeline = self._room(room_id).timeline
        end = int(from_token) if from_token else len(timeline)
        start = max(end - limit, 0)
        chunk = list(reversed(timeline[start:end]))  # newest first, as with dir=b
        return chunk, (str(start) if start > 0 else None)

    async def read_receipts(self, room_id: RoomId) -> list[Receipt]:
        await self._enter("read_receipts", room_id)
        self._room(room_id)
        return list(self.receipts.get(room_id, []))

    async def memberships(self, room_id: RoomId) -> dict[UserId, str]:
        await self._enter("memberships", room_id)
        return dict(self._room(room_id).members)

    async def user_exists(self, user_id: UserId) -> bool:
        await self._enter("user_exists", user_id)
        return user_id in self.users

    async def masked_original(self, mask_id: str) -> dict[str, Any] | None:
        await self._enter("masked_original", mask_id)
        return self.originals.get(mask_id)

    async def upload(self, data: bytes, content_type: str, filename: str) -> str:
        await self._enter("upload", content_type, filename)
        uri = f"mxc://localhost/upload{next(self._ids)}"
        self.uploads[uri] = data
        return uri

    async def register_managed(self, user_id: UserId) -> None:
        await self._enter("register_managed", user_id)
        self.users.add(user_id)

    async def set_account(
        self,
        user_id: UserId,
        displayname: str,
        avatar_url: str,
        external_id: tuple[str, str] | None = None,
    ) -> None:
        await self._enter("set_account", user_id, displayname, avatar_url, external_id)
        if user_id not in self.users:
            raise MatrixError(404, "M_NOT_FOUND", "No such account")
        self.profiles[user_id] = {
            "displayname": displayname,
            "avatar_url": avatar_url,
            "external_id": external_id,
        }

    async def set_locked(self, user_id: UserId, locked: bool) -> None:
        await self._enter("set_locked", user_id, locked)
        self.locked = (self.locked | {user_id}) if locked else (self.locked - {user_id})

    async def create_session(
        self, user_id: UserId, valid_until_ms: int, display_name: str
    ) -> tuple[str, str]:
        await self._enter("create_session", user_id, valid_until_ms, display_name)
        device_id, token = f"MARKET{next(self._ids)}", f"syt_{next(self._ids)}"
        self.devices.setdefault(user_id, {})[device_id] = (token, valid_until_ms)
        return device_id, token

    async def session_devices(self, user_id: UserId) -> set[str]:
        await self._enter("session_devices", user_id)
        return set(self.devices.get(user_id, {}))

    async def end_sessions(self, user_id: UserId, device_id: str | None = None) -> None:
        await self._enter("end_sessions", user_id, device_id)
        devices = self.devices.get(user_id, {})
        for device in [device_id] if device_id else list(devices):
            devices.pop(device, None)

    async def deactivate_managed(self, user_id: UserId) -> None:
        await self._enter("deactivate_managed", user_id)
        self.profiles.pop(user_id, None)
        self.devices.pop(user_id, None)
        for room in self.rooms.values():
            if room.members.get(user_id) in ("join", "invite"):
                room.members[user_id] = "leave"

    async def join_as(self, room_id: RoomId, user_id: UserId) -> None:
        await self._enter("join_as", room_id, user_id)
        room = self._room(room_id)
        if room.members.get(user_id) != "invite":
            raise MatrixError(403, "M_FORBIDDEN", f"{user_id} is not invited")
        room.members[user_id] = "join"

    async def purge_room(self, room_id: RoomId) -> None:
        await self._enter("purge_room", room_id)
        self.purged.add(room_id)
        self.rooms.pop(room_id, None)  # history gone, members out

    # --- inside the fake ------------------------------------------------------------------

    def _room_id(self) -> RoomId:
        return RoomId(f"!room{next(self._ids)}")

    def _room(self, room_id: RoomId) -> FakeRoom:
        room = self.rooms.get(room_id)
        if room is None:
            raise MatrixError(404, "M_NOT_FOUND", f"unknown room {room_id}")
        return room

    def _append(
        self,
        room: FakeRoom,
        event_type: str,
        sender: str,
        content: dict[str, Any],
        *,
        state_key: str | None = None,
        ts: int = 0,
    ) -> EventId:
        event_id = EventId(f"$event{next(self._ids)}")
        event = {
            "type": event_type,
            "event_id": event_id,
            "room_id": room.room_id,
            "sender": sender,
            "origin_server_ts": ts or START_MS + len(room.timeline),
            "content": dict(content),
        }
        if state_key is not None:
            event["state_key"] = state_key
        room.timeline.append(event)
        return event_id


async def no_stored_transcript(_: RoomId) -> None:
    """`Transcripts`'s stored transcripts where no room is removed for retention."""
