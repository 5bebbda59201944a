"""The marketplace's objects and their rooms.

    transactions.py  create, pay, close          disputes.py    open, resolve
    moderation.py    admins' lock, unlock, kick  management.py  the admins' room, announcements
    holds.py         legal holds on transactions (manual, and those disputes put)
    reconcile.py     rooms back to their plans   chat_list.py   a user's rooms, unread counts
    keeper.py        one room made to match its plan (create or adopt, state, members, notices)
    rooms.py         what each kind of room must be      transitions.py  the transition loop
    models.py        the objects, and their rooms' access   parties.py  checking parties
    records/         the tables, one module each (the SQL of market/ lives there)
    errors.py        why a request cannot be carried out (the API maps them to MARKET_*)

`Market` holds the use cases, built together; the composition root (`bridge.app`) builds it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from mautrix.util.async_db import Database

from appservice.matrix import MatrixBot
from bridge.config import Config
from bridge.runtime.clock import Clock
from bridge.runtime.locks import KeyedLocks
from bridge.runtime.workers import Wakeup
from policy.accounts import is_managed
from policy.contact import mask_contact_details
from policy.ids import RoomId, UserId
from policy.links import RoomLinks
from policy.masking import MARKER

from .chat_list import ChatList
from .disputes import Disputes
from .holds import LegalHolds
from .keeper import RoomKeeper
from .management import ManagementRoom
from .moderation import Moderation
from .parties import PartyCheck
from .reconcile import Reconciler, plan_fingerprint
from .records.audit import AuditLog
from .records.blocked_invites import BlockedInvites
from .records.bot_actions import BotActions
from .records.disputes import DisputeRecords
from .records.mutes import Mutes
from .records.reconcile_runs import ReconcileRuns
from .records.rooms import ManagedRooms
from .records.settings import Settings
from .records.transactions import TransactionRecords
from .rooms import RoomPlanner
from .transactions import Transactions


@dataclass(frozen=True, slots=True)
class Market:
    transactions: Transactions
    disputes: Disputes
    moderation: Moderation
    management: ManagementRoom
    reconciler: Reconciler
    chat_list: ChatList
    planner: RoomPlanner
    transaction_records: TransactionRecords
    dispute_records: DisputeRecords
    rooms: ManagedRooms
    mutes: Mutes
    audit: AuditLog
    parties: PartyCheck
    holds: LegalHolds

    @classmethod
    def build(
        cls, config: Config, db: Database, bot: MatrixBot, clock: Clock, outbox: Wakeup
    ) -> Market:
        """Every part of the market, on one database; ``outbox`` is woken when a change
        queues notifications."""
        rooms, retry_for_ms = config.rooms, config.webhooks.retry_for_seconds * 1000
        admins = tuple(UserId(admin) for admin in rooms.admins)
        locks = KeyedLocks()  # one per transaction, shared by every use case
        audit, mutes = AuditLog(db, clock), Mutes(db)
        periods = config.retention.periods()
        transaction_records, dispute_records = (
            TransactionRecords(db, clock, periods),
            DisputeRecords(db, clock, periods),
        )
        policy = config.policy
        hosts, terms = tuple(policy.allowed_link_hosts), tuple(policy.off_platform_terms)
        planner = RoomPlanner(
            bot.user_id,
            admins,
            config.disputes.freeze_transaction_room,
            mutes,
            clock,
            mask=lambda text: mask_contact_details(text, hosts, terms, MARKER),
            links=RoomLinks(
                config.appservice.alias_prefix,
                config.homeserver.domain,
                str(web) if (web := config.identity.web_client_url) else None,
            ),
        )
        keeper = RoomKeeper(
            bot,
            clock,
            audit,
            BotActions(db, clock),
            config.appservice.alias_prefix,
            config.homeserver.domain,
            BlockedInvites(db, retry_for_ms),
            joins_directly=functools.partial(
                is_managed, config.identity.user_prefix, config.homeserver.domain
            ),
        )
        management = ManagementRoom(
            keeper,
            Settings(db),
            bot.user_id,
            admins,
            RoomId(rooms.management_room) if rooms.management_room else None,
            rooms.version,
        )
        parties = PartyCheck(bot, config.party_servers)
        transactions = Transactions(
            transaction_records,
            planner,
            keeper,
            parties,
            locks,
            clock,
            outbox,
            rooms.version,
            retry_for_ms,
        )
        disputes = Disputes(
            dispute_records,
            transaction_records,
            transactions,
            planner,
            keeper,
            management,
            locks,
            clock,
            outbox,
            config.disputes.decisions,
            retry_for_ms,
        )
        managed_rooms = ManagedRooms(db)
        return cls(
            transactions=transactions,
            disputes=disputes,
            moderation=Moderation(
                transactions, transaction_records, dispute_records, bot, audit, locks
            ),
            management=management,
            reconciler=Reconciler(
                transactions,
                disputes,
                management,
                managed_rooms,
                ReconcileRuns(db),
                clock,
                plan_fingerprint(config),
            ),
            chat_list=ChatList(db),
            planner=planner,
            transaction_records=transaction_records,
            dispute_records=dispute_records,
            rooms=managed_rooms,
            mutes=mutes,
            audit=audit,
            parties=parties,
            holds=LegalHolds(db, periods.hold_after_ms, clock),
        )
