"""Marketplace users: upserted by the marketplace, with a managed account when they bring no
Matrix ID of their own.

    upsert(user_id, profile, matrix_id?)
      new, no matrix_id    a managed account @<prefix><escaped id> (policy.accounts):
                           registered by the appservice (no password, no device)
      new, matrix_id       the account the marketplace brought, checked (an allowed server, it
                           exists, not the bot, not in our namespace) and bound for good
      existing             its binding stays; a different matrix_id is a conflict
      managed              the avatar fetched when its URL changed (bridge.identity.avatars)
                           and stored in the media repository; the profile set on the
                           homeserver, which carries it into every room the user is in, and
                           the account linked to the marketplace's sign-in (OpenID Connect),
                           if configured, on every call (a repeat repairs them); then the
                           record stored
    party(role, user_id, profile?, matrix_id?)
                           the party of a new transaction: the user as stored, or upserted first
                           when the request carries a profile or a Matrix ID

The homeserver is written before the record: a call that fails half-way stores nothing, and
its retry completes the account (registration and profile are idempotent). Display names are
shown to the other party: their contact details are masked there, like every text the bot
writes into rooms. A brought account's profile is its owner's: only our record keeps it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from appservice.matrix import MatrixBot, MatrixError
from bridge.market.errors import Conflict, InvalidRequest, NotFound
from bridge.market.models import Party
from bridge.market.parties import PartyCheck
from bridge.runtime.clock import Clock
from bridge.runtime.locks import KeyedLocks
from policy.accounts import TooLong, is_managed, managed_user_id, shown_name
from policy.ids import MarketUserId, UserId

from .avatars import AvatarFetcher, AvatarRefused
from .errors import UnknownUser, UserErased, UserSuspended
from .records import Profile, UserRecord, UserRecords


class Accounts:
    def __init__(
        self,
        records: UserRecords,
        bot: MatrixBot,
        avatars: AvatarFetcher,
        clock: Clock,
        prefix: str,
        domain: str,
        parties: PartyCheck,
        mask: Callable[[str], str],
        sign_in_provider: str | None,
    ) -> None:
        self._records = records
        self._bot = bot
        self._avatars = avatars
        self._clock = clock
        self._prefix = prefix
        self._domain = domain
        self._parties = parties
        self._mask = mask
        self._sign_in_provider = sign_in_provider  # "oidc-<idp_id>", or None
        self._locks = KeyedLocks()

    def lock(self, user_id: MarketUserId) -> AbstractAsyncContextManager[None]:
        """Held by every change to one user (upsert, sessions, suspension, erasure), so none
        runs on a state another has just changed (within this process)."""
        return self._locks.hold(user_id)

    def is_managed(self, user_id: UserId) -> bool:
        return is_managed(self._prefix, self._domain, user_id)

    async def get(self, user_id: MarketUserId) -> UserRecord:
        record = await self._records.get(user_id)
        if record is None:
            raise NotFound(f"no user {user_id}")
        return record

    async def party(
        self,
        role: str,
        user_id: MarketUserId,
        profile: Profile | None,
        matrix_id: UserId | None,
    ) -> Party:
        """A transaction's party: the stored user, or the one this request upserts (with a
        profile, or a Matrix ID never seen)."""
        record = await self._records.get(user_id)
        if profile is not None and record is not None:  # fields left out keep their value
            kept = record.profile
            profile = Profile(
                profile.display_name or kept.display_name,
                profile.avatar_url or kept.avatar_url,
                profile.email or kept.email,
            )
        if profile is not None or (record is None and matrix_id is not None):
            record, _ = await self.upsert(user_id, profile or Profile(), matrix_id, f"{role}.")
        elif record is None:
            raise UnknownUser(
                f"{role}.user_id: no user {user_id}; create it with PUT /api/v1/users/{user_id},"
                " or give its display_name (or matrix_id) here",
                [f"{role}.user_id"],
            )
        elif matrix_id is not None and matrix_id != record.matrix_id:
            raise Conflict(
                f"{role}: marketplace user {user_id} is bound to {record.matrix_id}",
                [f"{role}.user_id", f"{role}.matrix_id"],
            )
        if record.erased_at is not None:
            raise UserErased(f"{role}: user {user_id} was erased", [f"{role}.user_id"])
        if record.suspended_at is not None:
            raise UserSuspended(f"{role}: user {user_id} is suspended", [f"{role}.user_id"])
        return Party(record.user_id, record.matrix_id)

    async def upsert(
        self,
        user_id: MarketUserId,
        profile: Profile,
        matrix_id: UserId | None,
        field_prefix: str = "",
    ) -> tuple[UserRecord, bool]:
        """The user as stored now, and whether this call created it."""
        async with self.lock(user_id):
            existing = await self._records.get(user_id)
            if existing is not None and existing.erased_at is not None:
                raise UserErased(f"user {user_id} was erased", [f"{field_prefix}user_id"])
            matrix_id, managed = await self._binding(user_id, existing, matrix_id, field_prefix)
            avatar_mxc = existing.avatar_mxc if existing else None
            unchanged = existing is not None and existing.profile == profile
            if managed:  # every time: a repeat also repairs the profile and links the sign-in
                avatar_mxc = await self._avatar(existing, profile, field_prefix)
                await self._account(user_id, matrix_id, profile, avatar_mxc, field_prefix)
            if unchanged and existing is not None:
                return existing, False
            now = self._clock.now_ms()
            record = UserRecord(
                user_id=user_id,
                matrix_id=matrix_id,
                managed=managed,
                profile=profile,
                avatar_mxc=avatar_mxc,
                created_at=existing.created_at if existing else now,
                updated_at=now,
                suspended_at=existing.suspended_at if existing else None,
                erased_at=None,
            )
            await self._records.store(record)
            return record, existing is None

    async def _account(
        self,
        user_id: MarketUserId,
        matrix_id: UserId,
        profile: Profile,
        avatar_mxc: str | None,
        field_prefix: str,
    ) -> None:
        """The managed account registered, its profile set, its sign-in linked."""
        await self._bot.register_managed(matrix_id)
        link = (self._sign_in_provider, user_id) if self._sign_in_provider else None
        display_name = shown_name(profile.display_name or user_id, self._mask)
        try:
            await self._bot.set_account(matrix_id, display_name, avatar_mxc or "", link)
        except MatrixError as e:
            if e.status != 409:
                raise
            raise Conflict(  # the sign-in subject is another account's already
                f"{field_prefix}user_id: {user_id} signs in as another account",
                [f"{field_prefix}user_id"],
            ) from e

    async def _binding(
        self,
        user_id: MarketUserId,
        existing: UserRecord | None,
        matrix_id: UserId | None,
        field_prefix: str,
    ) -> tuple[UserId, bool]:
        """The user's Matrix ID and whether the bridge manages it; the binding never moves."""
        field = f"{field_prefix}matrix_id"
        if existing is not None:
            if matrix_id is not None and matrix_id != existing.matrix_id:
                raise Conflict(
                    f"{field_prefix.rstrip('.') or 'user'}: marketplace user {user_id} is bound to"
                    f" {existing.matrix_id}",
                    [f"{field_prefix}user_id", field],
                )
            return existing.matrix_id, existing.managed
        if matrix_id is None:
            try:
                return UserId(managed_user_id(self._prefix, self._domain, user_id)), True
            except TooLong as e:
                field = f"{field_prefix}user_id"
                raise InvalidRequest(f"{field}: {e}", [field]) from e
        if self.is_managed(matrix_id):
            raise InvalidRequest(
                f"{field}: {matrix_id} is in the bridge's namespace of managed accounts;"
                " leave matrix_id out for a managed account",
                [field],
            )
        bound = await self._records.with_matrix_id(matrix_id)
        if bound is not None:
            raise Conflict(
                f"{field}: {matrix_id} is bound to marketplace user {bound.user_id}",
                [f"{field_prefix}user_id", field],
            )
        await self._parties.check_one(field, matrix_id)
        return matrix_id, False

    async def _avatar(
        self, existing: UserRecord | None, profile: Profile, field_prefix: str
    ) -> str | None:
        """The avatar's mxc URI: fetched again only when its URL changed."""
        url = profile.avatar_url
        if url is None:
            return None
        if existing and existing.profile.avatar_url == url and existing.avatar_mxc:
            return existing.avatar_mxc
        field = f"{field_prefix}avatar_url"
        content, media_type = await self._avatars.fetch(url, field)
        name = "avatar-" + hashlib.sha256(content).hexdigest()[:16]
        try:
            return await self._bot.upload(content, media_type, name)
        except MatrixError as e:  # the homeserver's own checks (its module, its size limit)
            raise AvatarRefused(f"the homeserver refused it ({e.errcode})", field) from e
