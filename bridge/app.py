"""The composition root: builds every part of the bridge from the config and wires them.

open()  -> database (migrated), HTTP client, mautrix AppServiceAPI, the aiohttp app
serve() -> listen for the homeserver, the marketplace and probes
connect() -> in the background: register the bot and ping the homeserver (the ping makes
           Synapse re-send pending transactions at once), retrying until it answers
close() -> stop listening, then close the HTTP client and the database
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3
from collections.abc import Awaitable, Callable

import asyncpg
from aiohttp import ClientSession, ClientTimeout, web
from mautrix.appservice import AppServiceAPI
from mautrix.util.async_db import Database
from prometheus_client import CollectorRegistry

from appservice.matrix import MatrixBot
from appservice.routes import HomeserverRoutes
from bridge.api.handlers import MarketApi
from bridge.config.settings import Config
from bridge.delivery.outbox import Outbox, OutboxRow, OutboxWorker
from bridge.homeserver.inbox import EventStore
from bridge.homeserver.inbox_worker import InboxWorker
from bridge.homeserver.intake import HomeserverInbound
from bridge.homeserver.recovery import Recovery
from bridge.market.audit import AuditLog
from bridge.market.records.transactions import Records
from bridge.market.transactions import Market
from bridge.ops.health import HealthRoutes
from bridge.policybot.actions import ActionWorker, PolicyActions
from bridge.policybot.commands import CommandRunner
from bridge.policybot.enforcer import Enforcer
from bridge.policybot.transcripts import Transcripts
from bridge.runtime.metrics import Metrics
from bridge.storage.database import create_database, start_database

CONNECT_RETRY_MAX = 30.0


class Bridge:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.log = logging.getLogger("bridge")
        self.db: Database | None = None
        self.events: EventStore | None = None
        self.api: AppServiceAPI | None = None
        self.metrics: Metrics | None = None
        self.market: Market | None = None
        self.records: Records | None = None
        self.bot: MatrixBot | None = None
        self.web_app: web.Application | None = None
        self._session: ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._connect_task: asyncio.Task | None = None
        self._workers: list[asyncio.Task] = []
        self.connected = asyncio.Event()

    async def open(self) -> None:
        config = self.config
        self.db = create_database(config.database)
        await start_database(self.db)
        self._session = ClientSession(timeout=ClientTimeout(total=60))
        self.api = AppServiceAPI(
            base_url=str(config.homeserver.url).rstrip("/"),
            bot_mxid=config.bot_mxid,
            token=config.appservice.as_token.get_secret_value(),
            log=logging.getLogger("bridge.matrix"),
            client_session=self._session,
        )
        self.bot = MatrixBot(self.api, config.bot_mxid)
        self.events = EventStore(self.db)
        self.metrics = Metrics(CollectorRegistry())
        self.outbox = Outbox(self.db)
        self.outbox_worker = OutboxWorker(
            self.outbox, config.webhooks, self._session, self.metrics, self._announce_dead
        )
        self.records = records = Records(self.db)
        self.market = Market(config, records, self.bot, on_queued=self.outbox_worker.wake)
        transcripts = Transcripts(self.db, records)
        commands = CommandRunner(config, self.market, records, transcripts, self.bot)
        self.action_worker = ActionWorker(
            self.db,
            config.bot_mxid,
            PolicyActions(self.bot, self.market, records).perform,
            self.metrics,
        )
        self.inbox_worker = InboxWorker(
            self.db,
            config.bot_mxid,
            config.rooms.admins,
            config.webhooks.retry_for_seconds * 1000,
            self.metrics,
            Enforcer(config),
            management_room=lambda: self.market.management_room,
            on_queued=self.outbox_worker.wake,
            on_planned=self.action_worker.wake,
            on_message=commands.handle,
        )
        self.recovery = Recovery(
            self.bot,
            self.events,
            self._rooms_to_catch_up,
            config.appservice.id,
            config.homeserver.watch_interval_seconds,
            self.metrics,
            on_stored=self.inbox_worker.wake,
        )
        self.web_app = web.Application(client_max_size=config.appservice.max_transaction_bytes)
        HomeserverRoutes(
            config.appservice.hs_token.get_secret_value(),
            HomeserverInbound(
                self.events,
                config.bot_mxid,
                self.metrics,
                on_stored=self.inbox_worker.wake,
                on_store_failed=self.recovery.store_failed,
            ),
            logging.getLogger("bridge.homeserver"),
        ).add_to(self.web_app)
        MarketApi(
            config.api.token.get_secret_value(),
            config.api.max_body_bytes,
            self.market,
            self.outbox,
            self.outbox_worker.wake,
            config.webhooks.retry_for_seconds * 1000,
            transcripts,
            AuditLog(self.db),
        ).add_to(self.web_app)
        HealthRoutes(
            {"database": self._check_database, "homeserver": self._check_homeserver},
            self.metrics.registry,
            logging.getLogger("bridge.health"),
        ).add_to(self.web_app)

    async def serve(self) -> None:
        assert self.web_app is not None, "open() the bridge first"
        self._runner = web.AppRunner(self.web_app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.server.host, self.config.server.port)
        await site.start()
        self._workers = [
            asyncio.create_task(self.inbox_worker.run(), name="inbox"),
            asyncio.create_task(self.outbox_worker.run(), name="outbox"),
            asyncio.create_task(self.action_worker.run(), name="actions"),
            asyncio.create_task(self.recovery.run(), name="recovery"),
        ]
        self.log.info(
            "Listening on %s:%d as %s",
            self.config.server.host,
            self.config.server.port,
            self.config.bot_mxid,
        )

    def connect(self) -> None:
        self._connect_task = asyncio.create_task(self._connect_homeserver())

    async def close(self) -> None:
        tasks = [*self._workers, *([self._connect_task] if self._connect_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner:
            await self._runner.cleanup()
        if self._session:
            await self._session.close()
        if self.db:
            await self.db.stop()

    async def _connect_homeserver(self) -> None:
        """Register the bot and ping the homeserver, retrying until the homeserver answers."""
        delay = 1.0
        while True:
            try:
                await self.bot.ensure_registered()
                await self.bot.ping(self.config.appservice.id)
            except Exception as e:
                self.log.warning("Homeserver not reachable yet (%s); retrying in %.0fs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, CONNECT_RETRY_MAX)
                continue
            self.log.info("Connected to the homeserver at %s", self.config.homeserver.url)
            self.connected.set()
            break
        # Rooms may have drifted while the bridge was down: put them back to their plans,
        # then again on schedule (live events are enforced as they come).
        interval = self.config.policy.repair_interval_seconds
        active_only = False
        while True:
            try:
                await self.market.ensure_management_room()
                await self.market.reconcile(active_only=active_only)
            except Exception:
                self.log.exception("Repairing the rooms failed; trying again on schedule")
            if not interval:
                return
            await asyncio.sleep(interval)
            active_only = True

    async def _announce_dead(self, row: OutboxRow, error: str) -> None:
        assert self.market is not None
        await self.market.announce(
            f"dead:{row.id}",
            f"Webhook {row.id} ({row.type}) for {row.stream} was given up ({error}). "
            "See GET /api/v1/webhooks/failed; POST /api/v1/webhooks/replay sends it again.",
        )

    async def _rooms_to_catch_up(self) -> list[str]:
        assert self.market is not None and self.records is not None
        management = self.market.management_room
        return [*await self.records.active_rooms(), *([management] if management else [])]

    async def _check_database(self) -> None:
        assert self.db is not None
        await self.db.fetchval("SELECT 1")

    async def _check_homeserver(self) -> None:
        assert self.bot is not None
        await self.bot.versions()


class StartError(Exception):
    """The bridge could not start (database or port unavailable); the message says why."""


async def run_bridge(
    config: Config, before_connect: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Serve until SIGINT or SIGTERM; ``before_connect`` runs once the bridge listens."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bridge = Bridge(config)
    try:
        try:
            await bridge.open()
            await bridge.serve()
        except (OSError, ConnectionError, asyncpg.PostgresError, sqlite3.Error) as e:
            raise StartError(f"cannot start the bridge: {e}") from e
        if before_connect is not None:
            await before_connect()
        bridge.connect()
        await stop.wait()
        bridge.log.info("Stopping")
    finally:
        await bridge.close()
