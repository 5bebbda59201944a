"""The composition root: builds every part of the bridge from the config, and runs it.

    Bridge.open(config)  the database (migrated) and an HTTP client, then every part in
                         dependency order (below), and the aiohttp app serving them
    serve()              listen (homeserver routes, marketplace API, probes); start the workers
    connect()            in the background: register the bot and ping the homeserver (Synapse
                         then re-sends pending transactions at once), retrying until it answers;
                         then bring every room back to its plan, and again on schedule
    close()              stop the workers and listening; close the HTTP client and the database

Parts, in the order they are built: runtime (clock, metrics, wake-ups, locks) -> the bot's
Matrix calls -> market (records, room keeper, use cases) -> identity (accounts, sessions) ->
policy bot (enforcer, actions, commands, transcripts) -> delivery (outbox worker) -> deals
(follow-ups, responsiveness) -> retention (purges, pruning) -> homeserver (inbox, intake,
inbox worker, recovery) -> api, web chat and ops (routes).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, web
from mautrix.appservice import AppServiceAPI
from mautrix.util.async_db import Database
from prometheus_client import CollectorRegistry

from appservice.matrix import MatrixBot
from appservice.routes import HomeserverRoutes
from appservice.transactions import Transaction
from bridge.api.handlers import MarketApi
from bridge.config import Config
from bridge.deals import delays_from
from bridge.deals.responsiveness import Responsiveness
from bridge.deals.tracker import DealTracker
from bridge.deals.worker import FollowUpWorker
from bridge.delivery.outbox import Outbox, OutboxRow
from bridge.delivery.outbox_worker import OutboxWorker
from bridge.delivery.sender import WebhookSender
from bridge.delivery.signing import Signer
from bridge.homeserver.inbox import InboxStore
from bridge.homeserver.inbox_worker import InboxWorker
from bridge.homeserver.intake import HomeserverIntake
from bridge.homeserver.recovery import Recovery
from bridge.identity import Identity
from bridge.market import Market
from bridge.ops.health import HealthRoutes
from bridge.policybot.action_worker import ActionWorker
from bridge.policybot.actions import PlannedActions
from bridge.policybot.commands import CommandRunner
from bridge.policybot.enforcer import Enforcer
from bridge.policybot.originals import MaskedOriginals
from bridge.policybot.performer import ActionPerformer
from bridge.policybot.transcripts import Transcripts
from bridge.retention.records import PurgeRecords, StoredTranscripts
from bridge.retention.worker import RetentionSettings, RetentionWorker
from bridge.runtime.backoff import Backoff, retry_until_done
from bridge.runtime.clock import Clock, SystemClock
from bridge.runtime.due import POLL_SECONDS, DueWatch
from bridge.runtime.metrics import Metrics
from bridge.runtime.process import StartError, stop_on_signals
from bridge.runtime.workers import Wakeups
from bridge.storage.database import create_database, start_database
from bridge.storage.transcripts import DirectoryStore
from bridge.webchat.assets import Bundle
from bridge.webchat.server import WebChat
from policy.ids import RoomId
from policy.rules import content_rules_from

CONNECT_RETRY = Backoff(initial=1.0, maximum=30.0)


def http_session() -> ClientSession:
    """The bridge's one HTTP client, for Synapse and the webhooks. No cookie jar: a cookie a
    receiver sets must never ride on a later webhook or on a call to Synapse (cookies ignore
    ports), and calls between servers keep no state; a jar also costs each request a look
    (8 % of a webhook POST's client CPU, docs/performance.md). Each call sets its own timeout
    under this ceiling."""
    return ClientSession(timeout=ClientTimeout(60), cookie_jar=DummyCookieJar())


@dataclass(frozen=True, slots=True)
class Workers:
    inbox: InboxWorker
    outbox: OutboxWorker
    actions: ActionWorker
    recovery: Recovery
    follow_ups: FollowUpWorker
    retention: RetentionWorker


class Bridge:
    """A bridge built from its config: every part, the HTTP app serving them, the workers."""

    def __init__(self, config: Config, clock: Clock, db: Database, session: ClientSession) -> None:
        self.config, self.clock, self.db, self._session = config, clock, db, session
        self.log = logging.getLogger("bridge")
        self.metrics = Metrics(CollectorRegistry())
        self.wakeups = Wakeups()
        self.connected = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._runner: web.AppRunner | None = None
        api = AppServiceAPI(
            base_url=str(config.homeserver.url).rstrip("/"),
            bot_mxid=config.bot_mxid,
            token=config.appservice.as_token.get_secret_value(),
            log=logging.getLogger("bridge.matrix"),
            client_session=session,
        )
        self.bot = MatrixBot(api, config.bot_mxid)
        self.market = Market.build(config, db, self.bot, clock, self.wakeups.outbox)
        self.identity = Identity.build(config, db, self.bot, clock, self.market)
        self.inbox = InboxStore(db, clock)
        self.outbox = Outbox(db)
        self.originals = MaskedOriginals(db)
        self.stored_transcripts = StoredTranscripts(
            PurgeRecords(db), DirectoryStore(config.retention.transcripts_directory)
        )
        self.transcripts = Transcripts(
            self.market.transaction_records,
            self.market.dispute_records,
            self.inbox,
            self.originals,
            self.market.audit,
            clock,
            self.stored_transcripts.of_room,
        )
        self.workers = self._build_workers()
        self.web_app = self._build_web_app()

    @classmethod
    async def open(cls, config: Config, clock: Clock | None = None) -> Bridge:
        """Connect (and migrate) the database, and build the bridge on it."""
        db = create_database(config.database)
        await start_database(db)
        bridge = cls(config, clock or SystemClock(), db, http_session())
        await bridge.market.management.load()
        return bridge

    def _build_workers(self) -> Workers:
        config, market, clock, metrics = self.config, self.market, self.clock, self.metrics
        admins = market.planner.admins
        webhooks, delays = config.webhooks, delays_from(config)
        freeze = config.disputes.freeze_transaction_room
        performer = ActionPerformer(
            self.bot, market.reconciler, market.management, market.mutes, self.originals, clock
        )
        commands = CommandRunner(
            config.rooms.command_prefix,
            admins,
            market.transactions,
            market.transaction_records,
            market.disputes,
            market.dispute_records,
            market.moderation,
            market.management,
            self.transcripts,
            market.audit,
            self.bot,
        )
        enforcer = Enforcer(
            content_rules_from(config.policy.model_dump()),
            config.bot_mxid,
            admins,
            freeze,
            config.policy.mute_seconds,
        )
        sender = WebhookSender(
            self._session,
            str(webhooks.url),
            webhooks.timeout_seconds,
            Signer([secret.get_secret_value() for secret in webhooks.secrets]),
            clock,
        )
        outbox = OutboxWorker(
            self.outbox,
            sender.send,
            Backoff(webhooks.backoff_initial_seconds, webhooks.backoff_max_seconds, True),
            int(webhooks.timeout_seconds * 1000),
            clock,
            metrics,
            self.wakeups.outbox,
            on_dead=self._announce_dead,
        )
        return Workers(
            inbox=InboxWorker(
                self.db,
                config.bot_mxid,
                admins,
                webhooks.retry_for_seconds * 1000,
                enforcer,
                commands,
                market.management,
                clock,
                metrics,
                self.wakeups,
                DealTracker(delays, freeze, metrics),
                market.planner.links,
                outbox,
            ),
            outbox=outbox,
            actions=ActionWorker(
                PlannedActions(self.db),
                performer.perform,
                config.bot_mxid,
                clock,
                metrics,
                self.wakeups.actions,
            ),
            recovery=Recovery(
                self.bot,
                self.inbox,
                self._rooms_to_catch_up,
                config.appservice.id,
                config.homeserver.watch_interval_seconds,
                clock,
                metrics,
                self.wakeups.inbox,
            ),
            follow_ups=FollowUpWorker(
                self.db,
                delays,
                market.disputes,
                config.bot_mxid,
                admins,
                freeze,
                market.planner.links,
                webhooks.retry_for_seconds * 1000,
                clock,
                metrics,
                self.wakeups,
                self.connected,
                self._refresh_reads,
            ),
            retention=RetentionWorker(
                self.db,
                RetentionSettings.of(config),
                self.transcripts,
                self.stored_transcripts.store,
                self.bot.purge_room,
                config.bot_mxid,
                clock,
                self.wakeups.outbox,
                self.connected,
            ),
        )

    def _build_web_app(self) -> web.Application:
        config, market = self.config, self.market
        app = web.Application(client_max_size=config.appservice.max_transaction_bytes)
        intake = HomeserverIntake(
            self.inbox,
            config.bot_mxid,
            self.metrics,
            self.wakeups.inbox,
            self.workers.recovery,
            self.workers.inbox,
        )
        HomeserverRoutes(
            config.appservice.hs_token.get_secret_value(),
            intake,
            logging.getLogger("bridge.homeserver"),
        ).add_to(app)
        MarketApi(
            config.api.token.get_secret_value(),
            config.api.max_body_bytes,
            market.transactions,
            market.disputes,
            market.chat_list,
            self.transcripts,
            market.holds,
            market.audit,
            self.identity,
            Responsiveness(self.db),
            self.outbox,
            self.wakeups.outbox,
            config.webhooks.retry_for_seconds * 1000,
            self.clock,
        ).add_to(app)
        WebChat(
            config,
            Bundle.load(),
            market.chat_list,
            market.transactions.access,
            self._session,
        ).add_to(app)
        HealthRoutes(
            {"database": self._check_database, "homeserver": self._check_homeserver},
            self.metrics.registry,
            logging.getLogger("bridge.health"),
        ).add_to(app)
        return app

    @property
    def recovery(self) -> Recovery:
        return self.workers.recovery

    async def serve(self) -> None:
        self._runner = web.AppRunner(self.web_app, access_log=None)
        await self._runner.setup()
        server = self.config.server
        await web.TCPSite(self._runner, server.host, server.port).start()
        workers = self.workers
        checks = [workers.inbox.due, workers.outbox.due, workers.actions.due]
        due = DueWatch(self.db, self.clock, [*checks, workers.follow_ups.due], POLL_SECONDS)
        self._tasks += [
            asyncio.create_task(due.run(), name="due"),
            asyncio.create_task(workers.inbox.run(), name="inbox"),
            asyncio.create_task(workers.outbox.run(), name="outbox"),
            asyncio.create_task(workers.actions.run(), name="actions"),
            asyncio.create_task(workers.recovery.run(), name="recovery"),
            asyncio.create_task(workers.follow_ups.run(), name="follow-ups"),
            asyncio.create_task(workers.retention.run(), name="retention"),
        ]
        self.log.info("Listening on %s:%d as %s", server.host, server.port, self.config.bot_mxid)

    def connect(self) -> None:
        self._tasks.append(asyncio.create_task(self._connect(), name="connect"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        try:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            try:  # another process may take over the reconcile at once, not when it ends
                await self.market.reconciler.release()
            except Exception:
                self.log.exception("Could not release the reconcile's lease")
            if self._runner:
                await self._runner.cleanup()
            await self._session.close()
        finally:  # whatever failed above, the database is let go (SQLite's file above all)
            await self.db.stop()

    async def _connect(self) -> None:
        """Register the bot and ping the homeserver, retrying until the homeserver answers;
        then put the rooms back to their plans, now and on schedule."""
        await retry_until_done(
            self.bot.ensure_registered, CONNECT_RETRY, self.clock, self.log, "register the bot"
        )
        await self.recovery.ask_to_resend()
        self.log.info("Connected to the homeserver at %s", self.config.homeserver.url)
        self.connected.set()
        # Rooms may have drifted while the bridge was down (live events are enforced as they
        # come): those that changed since the last completed run now, in the background of a
        # ready API; then as they change, the active ones on schedule, and every room daily.
        policy = self.config.policy
        await self.market.reconciler.keep(
            policy.repair_interval_seconds, policy.full_reconcile_interval_seconds
        )

    async def _announce_dead(self, row: OutboxRow, error: str) -> None:
        await self.market.management.announce(
            f"dead:{row.id}",
            f"Webhook {row.id} ({row.type}) for {row.stream} was given up ({error}). "
            "See GET /api/v1/webhooks/failed; POST /api/v1/webhooks/replay sends it again.",
        )

    async def _refresh_reads(self, room_id: RoomId) -> None:
        """Store the room's read receipts as the homeserver has them (a moved read position
        is notified, in order, like one it pushed)."""
        receipts = await self.bot.read_receipts(room_id)
        await self.inbox.store_transaction(Transaction(f"reads:{room_id}", [], receipts))
        self.wakeups.inbox.set()

    async def _rooms_to_catch_up(self) -> list[RoomId]:
        management = self.market.management.room_id
        return [*await self.market.rooms.active(), *([management] if management else [])]

    async def _check_database(self) -> None:
        await self.db.fetchval("SELECT 1")

    async def _check_homeserver(self) -> None:
        await self.bot.versions()


async def run_bridge(
    config: Config, before_connect: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Serve until SIGINT or SIGTERM; ``before_connect`` runs once the bridge listens."""
    stop = stop_on_signals()
    bridge: Bridge | None = None
    try:
        try:
            bridge = await Bridge.open(config)
            await bridge.serve()
        except (OSError, ConnectionError, asyncpg.PostgresError, sqlite3.Error) as e:
            raise StartError(f"cannot start the bridge: {e}") from e
        if before_connect is not None:
            await before_connect()
        bridge.connect()
        await stop.wait()
        bridge.log.info("Stopping")
    finally:
        if bridge is not None:
            await bridge.close()
