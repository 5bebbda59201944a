"""The logic tier's fixtures: bridge parts on SQLite, a fake clock and a fake homeserver.

No Synapse: each test gets a fresh SQLite file (migrated, as the bridge opens it) and a
`FakeMatrix`, so a test of market or policy bot logic costs milliseconds. A test of a path
only PostgreSQL takes asks for it (``db`` parametrized indirectly, "postgres").
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest
from mautrix.util.async_db import Database
from prometheus_client import CollectorRegistry
from yarl import URL

import bridge.homeserver.inbox_worker as inbox_worker_module
from appservice.transactions import Transaction
from bridge.config import Config, DatabaseConfig
from bridge.deals import delays_from
from bridge.deals.tracker import DealTracker
from bridge.homeserver.decisions import Delivery
from bridge.homeserver.inbox import InboxStore
from bridge.homeserver.inbox_worker import InboxWorker
from bridge.homeserver.intake import HomeserverIntake
from bridge.market import Market
from bridge.market.models import NewTransaction, Party
from bridge.policybot.commands import CommandRunner
from bridge.policybot.enforcer import Enforcer
from bridge.policybot.originals import MaskedOriginals
from bridge.policybot.performer import ActionPerformer
from bridge.policybot.transcripts import Transcripts
from bridge.runtime.due import POLL_SECONDS, DueCheck, DueWatch
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeup, Wakeups
from bridge.storage.database import create_database, start_database
from policy.ids import MarketUserId, RoomId, TransactionId, UserId
from policy.rules import content_rules_from
from tests.harness import eventually, fresh_database, make_config

from .fakes import FakeClock, FakeMatrix, no_stored_transcript

ADMIN = "@admin:localhost"
BUYER = "@buyer:localhost"
SELLER = "@seller:localhost"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def matrix() -> FakeMatrix:
    fake = FakeMatrix()
    for user in (ADMIN, BUYER, SELLER):
        fake.add_user(user)
    return fake


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        database_url=f"sqlite://{tmp_path / 'bridge.db'}",
        rooms={"admins": [ADMIN]},
        policy={"flood_messages": 3, "flood_window_seconds": 10, "mute_seconds": 60},
    )


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database file migrated once per session; each test starts from a copy of it."""
    path = tmp_path_factory.mktemp("migrated") / "bridge.db"

    async def migrate() -> None:
        database = create_database(DatabaseConfig(url=f"sqlite://{path}", max_connections=1))
        await start_database(database)
        await database.stop()  # the last connection's close folds the WAL into the file

    asyncio.run(migrate())
    return path


@pytest.fixture
async def db(
    request: pytest.FixtureRequest, config: Config, migrated: Path, tmp_path: Path
) -> AsyncIterator[Database]:
    """SQLite; PostgreSQL for a test of its own paths (parametrized indirectly, "postgres")."""
    if getattr(request, "param", "sqlite") == "postgres":
        async with fresh_database("postgres", tmp_path) as url:
            database = create_database(DatabaseConfig(url=url, max_connections=4))
            await start_database(database)
            yield database
            await database.stop()
        return
    shutil.copyfile(migrated, URL(config.database.url).path)
    database = create_database(config.database)
    await start_database(database)  # finds the schema up to date
    yield database
    await database.stop()


async def until(condition: Callable[[], bool], turns: int = 200) -> None:
    """Let other tasks run until ``condition`` holds (no time passes)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


class CountingWakeup(Wakeup):
    """A wake-up that counts how often it was set."""

    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set(self, rooms: Iterable[str] | None = None) -> None:
        self.sets += 1
        super().set(rooms)


async def look(db: Database, clock: FakeClock, *checks: DueCheck) -> None:
    """One round of the `DueWatch` the bridge runs, asking only ``checks``."""
    await DueWatch(db, clock, checks, POLL_SECONDS).look()


@pytest.fixture
def wakeups() -> Wakeups:
    return Wakeups(CountingWakeup(), CountingWakeup(), CountingWakeup(), CountingWakeup())


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


@pytest.fixture
def inbox(db: Database, clock: FakeClock) -> InboxStore:
    return InboxStore(db, clock)


@pytest.fixture
def market(
    config: Config, db: Database, matrix: FakeMatrix, clock: FakeClock, wakeups: Wakeups
) -> Market:
    return Market.build(config, db, matrix, clock, wakeups.outbox)  # type: ignore[arg-type]


def build_enforcer(config: Config, market: Market, cls: type[Enforcer] = Enforcer) -> Enforcer:
    """As the composition root builds it (bridge.app)."""
    return cls(
        content_rules_from(config.policy.model_dump()),
        config.bot_mxid,
        market.planner.admins,
        config.disputes.freeze_transaction_room,
        config.policy.mute_seconds,
    )


def build_performer(
    market: Market, matrix: FakeMatrix, db: Database, clock: FakeClock
) -> ActionPerformer:
    """As the composition root builds it (bridge.app)."""
    return ActionPerformer(
        matrix,  # type: ignore[arg-type]
        market.reconciler,
        market.management,
        market.mutes,
        MaskedOriginals(db),
        clock,
    )


def build_runner(
    config: Config,
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    db: Database,
    clock: FakeClock,
    cls: type[CommandRunner] = CommandRunner,
) -> CommandRunner:
    """As the composition root builds it (bridge.app)."""
    transcripts = Transcripts(
        market.transaction_records,
        market.dispute_records,
        inbox,
        MaskedOriginals(db),
        market.audit,
        clock,
        no_stored_transcript,
    )
    return cls(
        config.rooms.command_prefix,
        market.planner.admins,
        market.transactions,
        market.transaction_records,
        market.disputes,
        market.dispute_records,
        market.moderation,
        market.management,
        transcripts,
        market.audit,
        matrix,  # type: ignore[arg-type]
    )


def new_transaction(
    transaction_id: str = "order-1",
    title: str = "Vintage bike",
    buyer: str = BUYER,
    seller: str = SELLER,
) -> NewTransaction:
    return NewTransaction(
        TransactionId(transaction_id),
        title,
        Party(MarketUserId(f"u-{buyer[1:].split(':')[0]}"), UserId(buyer)),
        Party(MarketUserId(f"u-{seller[1:].split(':')[0]}"), UserId(seller)),
    )


@dataclass
class Rows:
    """Reads the bridge's tables, for assertions."""

    db: Database

    async def outbox(self, type_: str | None = None) -> list[dict]:
        rows = await self.db.fetch(
            "SELECT id, stream, type, body, status FROM outbox ORDER BY seq"
        )
        return [dict(row) for row in rows if type_ is None or row["type"] == type_]

    async def audit(self, action: str | None = None) -> list[dict]:
        rows = await self.db.fetch("SELECT * FROM audit ORDER BY seq")
        return [dict(row) for row in rows if action is None or row["action"] == action]

    async def planned(self) -> list[dict]:
        rows = await self.db.fetch("SELECT * FROM planned_actions ORDER BY seq")
        return [dict(row) for row in rows]


@pytest.fixture
def rows(db: Database) -> Rows:
    return Rows(db)


def build_worker(
    config: Config,
    db: Database,
    market: Market,
    enforcer: Enforcer,
    commands: CommandRunner,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
    delivery: Delivery | None = None,
) -> InboxWorker:
    return InboxWorker(
        db,
        config.bot_mxid,
        market.planner.admins,
        config.webhooks.retry_for_seconds * 1000,
        enforcer,
        commands,
        market.management,
        clock,
        metrics,
        wakeups,
        DealTracker(delays_from(config), config.disputes.freeze_transaction_room, metrics),
        delivery=delivery,
    )


@pytest.fixture
def worker(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
) -> InboxWorker:
    enforcer = build_enforcer(config, market)
    commands = build_runner(config, market, matrix, inbox, db, clock)
    return build_worker(config, db, market, enforcer, commands, clock, metrics, wakeups)


# --- the intake, with a running inbox worker -----------------------------------------------


class StoringAlways:
    """Recovery, for a database that never fails here."""

    def store_failed(self, txn: Transaction) -> None:
        raise AssertionError(f"storing {txn.txn_id} failed")

    async def store_refused(self) -> None:
        pass


@pytest.fixture
async def paid_room(market: Market) -> RoomId:
    await market.transactions.create(new_transaction())
    room = (await market.transactions.record_payment(TransactionId("order-1"))).room_id
    assert room is not None
    return room


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[RoomId]:
    """The rooms the inbox worker read its pending events of."""
    rooms: list[RoomId] = []
    read_pending = inbox_worker_module.read_pending

    async def counted(conn, room_id, *args):  # type: ignore[no-untyped-def]
        rooms.append(room_id)
        return await read_pending(conn, room_id, *args)

    monkeypatch.setattr(inbox_worker_module, "read_pending", counted)
    return rooms


@pytest.fixture
async def running(
    worker: InboxWorker, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[asyncio.Task]:
    """The worker running, past its first round's look for pending rooms (nothing here
    looks again: no `DueWatch` runs)."""
    scans: list[list[RoomId]] = []
    pending_rooms = inbox_worker_module.pending_rooms

    async def noted(db: Database) -> list[RoomId]:
        scans.append(await pending_rooms(db))
        return scans[-1]

    monkeypatch.setattr(inbox_worker_module, "pending_rooms", noted)
    task = asyncio.create_task(worker.run())

    async def first_round() -> bool:
        return bool(scans)

    await eventually(first_round)
    yield task
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def intake(
    config: Config, inbox: InboxStore, metrics: Metrics, wakeups: Wakeups, worker: InboxWorker
) -> HomeserverIntake:
    return HomeserverIntake(
        inbox, config.bot_mxid, metrics, wakeups.inbox, StoringAlways(), worker
    )
