"""Marketplace users on Matrix without a second account.

    accounts.py  upsert a user: a managed account (no password), or the account they brought;
                 profiles carried into their rooms
    avatars.py   an avatar fetched from an https URL, safely, once per change
    sessions.py  sessions for the clients the marketplace embeds, ending by themselves
    lifecycle.py suspension, erasure (GDPR) and export
    erasure.py   what an erased user wrote, replaced by tombstones in the bridge's tables
    records.py   the users and sessions tables
    errors.py    why a request about a user cannot be carried out

The homeserver's side is synapse_module/accounts.py; the Matrix IDs of managed accounts are
policy.accounts. `Identity` holds the parts; the composition root (`bridge.app`) builds it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from mautrix.util.async_db import Database

from appservice.matrix import MatrixBot
from bridge.config import Config
from bridge.market import Market
from bridge.runtime.clock import Clock
from policy.contact import contains_contact_info, mask_contact_details
from policy.links import RoomLinks
from policy.masking import MARKER

from .accounts import Accounts
from .avatars import AvatarFetcher
from .lifecycle import UserLifecycle
from .records import SessionRecords, UserRecords
from .sessions import Sessions


@dataclass(frozen=True, slots=True)
class Identity:
    accounts: Accounts
    sessions: Sessions
    lifecycle: UserLifecycle
    client_url: str  # where clients connect: the client gateway
    links: RoomLinks | None

    @classmethod
    def build(
        cls, config: Config, db: Database, bot: MatrixBot, clock: Clock, market: Market
    ) -> Identity:
        identity, policy = config.identity, config.policy
        hosts, terms = tuple(policy.allowed_link_hosts), tuple(policy.off_platform_terms)
        avatars = AvatarFetcher(
            identity.avatar_max_bytes,
            identity.avatar_timeout_seconds,
            identity.avatar_private_hosts,
            identity.avatar_ca_file,
            functools.partial(contains_contact_info, allowed_hosts=hosts, terms=terms),
            frozenset(config.lockdown.upload_types),  # the module stores no other type
        )
        accounts = Accounts(
            UserRecords(db),
            bot,
            avatars,
            clock,
            identity.user_prefix,
            config.homeserver.domain,
            market.parties,
            lambda text: mask_contact_details(text, hosts, terms, MARKER),
            f"oidc-{identity.oidc.idp_id}" if identity.oidc else None,
        )
        sessions = Sessions(
            accounts,
            SessionRecords(db),
            bot,
            clock,
            identity.session_seconds,
            identity.max_session_seconds,
        )
        lifecycle = UserLifecycle(
            db,
            accounts,
            sessions,
            bot,
            market.chat_list,
            market.holds,
            market.reconciler.repair_room,
            clock,
            config.webhooks.retry_for_seconds * 1000,
        )
        return cls(accounts, sessions, lifecycle, config.gateway.client_url, market.planner.links)
