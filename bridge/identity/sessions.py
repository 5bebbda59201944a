"""Sessions for the clients the marketplace embeds: one device of a managed account each, with
a token the homeserver itself refuses after its expiry (bridge up or not).

    create(user_id, seconds?)  a new device and token (synapse_module/accounts.py); the
                               user's sessions that ended by themselves are deleted first, so
                               expired devices do not pile up on the homeserver
    live(user_id)              the sessions not revoked nor expired that the homeserver still
                               has (one the user logged out of is dropped from the list)
    revoke(user_id, device_id) / revoke_all(user_id)
                               the device deleted on the homeserver, its token with it

Only managed accounts get sessions: the bridge cannot act for an account the marketplace
brought (`NotManaged`); a suspended or erased user gets none.
"""

from __future__ import annotations

from dataclasses import dataclass

from appservice.matrix import MatrixBot
from bridge.market.errors import InvalidRequest, NotFound
from bridge.runtime.clock import Clock
from policy.ids import MarketUserId

from .accounts import Accounts
from .errors import NotManaged, UserErased, UserSuspended
from .records import SessionRecord, SessionRecords, UserRecord

DEVICE_NAME = "Marketplace chat"


@dataclass(frozen=True, slots=True)
class NewSession:
    record: SessionRecord
    user: UserRecord
    access_token: str


class Sessions:
    def __init__(
        self,
        accounts: Accounts,
        records: SessionRecords,
        bot: MatrixBot,
        clock: Clock,
        default_seconds: int,
        max_seconds: int,
    ) -> None:
        self._accounts = accounts
        self._records = records
        self._bot = bot
        self._clock = clock
        self._default_seconds = default_seconds
        self.max_seconds = max_seconds

    async def _managed(self, user_id: MarketUserId) -> UserRecord:
        user = await self._accounts.get(user_id)
        if user.erased_at is not None:
            raise UserErased(f"user {user_id} was erased")
        if not user.managed:
            raise NotManaged(
                f"user {user_id} uses their own Matrix account ({user.matrix_id}): the bridge"
                " cannot open sessions for it"
            )
        return user

    async def create(self, user_id: MarketUserId, seconds: int | None) -> NewSession:
        async with self._accounts.lock(user_id):
            return await self._create(user_id, seconds)

    async def _create(self, user_id: MarketUserId, seconds: int | None) -> NewSession:
        user = await self._managed(user_id)
        if user.suspended_at is not None:
            raise UserSuspended(f"user {user_id} is suspended")
        seconds = self._default_seconds if seconds is None else seconds
        if not 1 <= seconds <= self.max_seconds:
            raise InvalidRequest(f"ttl_seconds: must be 1 to {self.max_seconds}", ["ttl_seconds"])
        now = self._clock.now_ms()
        ended = await self._records.expired(user_id, now)
        for device_id in ended:
            await self._bot.end_sessions(user.matrix_id, device_id)
        await self._records.revoke(user_id, ended, now)
        expires_at = now + seconds * 1000
        device_id, token = await self._bot.create_session(user.matrix_id, expires_at, DEVICE_NAME)
        record = SessionRecord(device_id, user_id, now, expires_at)
        await self._records.add(record)
        return NewSession(record, user, token)

    async def live(self, user_id: MarketUserId) -> list[SessionRecord]:
        return await self._live(await self._managed(user_id))

    async def _live(self, user: UserRecord) -> list[SessionRecord]:
        user_id = user.user_id
        now = self._clock.now_ms()
        sessions = await self._records.live(user_id, now)
        if not sessions:
            return []
        devices = await self._bot.session_devices(user.matrix_id)
        gone = [s.device_id for s in sessions if s.device_id not in devices]
        await self._records.revoke(user_id, gone, now)
        return [s for s in sessions if s.device_id in devices]

    async def revoke(self, user_id: MarketUserId, device_id: str) -> None:
        async with self._accounts.lock(user_id):
            user = await self._managed(user_id)
            if device_id not in {s.device_id for s in await self._live(user)}:
                raise NotFound(f"user {user_id} has no live session {device_id}")
            await self._bot.end_sessions(user.matrix_id, device_id)
            await self._records.revoke(user_id, [device_id], self._clock.now_ms())

    async def all_of(self, user_id: MarketUserId) -> list[SessionRecord]:
        """Every session ever handed out to the user (for their export)."""
        return await self._records.all_of(user_id)

    async def revoke_all(self, user: UserRecord) -> None:
        """Every device of a managed account, the marketplace's sessions and any other."""
        if user.managed:
            await self._bot.end_sessions(user.matrix_id)
        await self._records.revoke_all(user.user_id, self._clock.now_ms())
