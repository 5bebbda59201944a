"""Shared test tools: polling with a deadline, free ports, test configs, fresh databases."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import signal
import sqlite3
import string
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import yaml
from pydantic import SecretStr
from yarl import URL

from bridge.app import Bridge
from bridge.config import Config, build_config
from bridge.ops.deployment import EXAMPLE_CONFIG, lockdown_module, write_registration
from bridge.ops.local_synapse import LocalSynapse, free_loopback_port
from bridge.runtime.clock import Clock, SystemClock
from bridge.storage.database import is_sqlite
from tests.sqlite_lock import report_sqlite_lock

T = TypeVar("T")

# How long each Synapse took to answer after launch, printed at the end of the run.
SYNAPSE_READY = pytest.StashKey[list[float]]()
# `make run`: (which run, seconds until stack.json appeared, seconds to stop on SIGTERM).
MAKE_RUN_READY = pytest.StashKey[list[tuple[str, float, float]]]()
# Seconds from a message's origin_server_ts to its webhook's arrival at the receiver.
WEBHOOK_LATENCY = pytest.StashKey[list[float]]()
# How long marketplace API calls took against a real Synapse, printed at the end of the run.
API_TIMINGS = pytest.StashKey[dict[str, list[float]]]()
# One line of figures per chaos scenario (tests/chaos), printed at the end of the run.
CHAOS_FIGURES = pytest.StashKey[list[str]]()

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def eventually(
    check: Callable[[], Awaitable[T]], *, within: float = 15.0, interval: float = 0.05
) -> T:
    """Call ``check`` until it returns a truthy value without raising AssertionError.

    Returns that value; after ``within`` seconds re-raises the last AssertionError (or fails
    naming the last falsy value), so a failure says what was never reached.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            result = await check()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        else:
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"condition not met within {within}s (last: {result!r})")
        await asyncio.sleep(interval)


# The tests' phone number is +44 7911 123456. Any of its text in a webhook is a leak; ids,
# timestamps and numbers are left out of the search, as "7911" turns up in them by chance.
IDENTIFIER_PREFIXES = ("$", "!", "@", "#", "mxc://")


def random_word(length: int = 10) -> str:
    """Random lowercase letters: unique enough, and never read as a contact detail (a run of
    hex digits such as "83333218" in a message, a title or a name would be taken for a phone
    number, one id in 40)."""
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(length))


def unique_id(prefix: str) -> str:
    """An id, user name or title for one test: ``prefix-`` and a random word."""
    return f"{prefix}-{random_word()}"


def leaks_phone(value: Any) -> bool:
    if isinstance(value, dict):
        return any(
            leaks_phone(item)
            for key, item in value.items()
            if not (key == "id" or key.endswith(("_id", "_at")))
        )
    if isinstance(value, list):
        return any(leaks_phone(item) for item in value)
    return isinstance(value, str) and "7911" in value and not value.startswith(IDENTIFIER_PREFIXES)


def free_port() -> int:
    return free_loopback_port()


def random_secret() -> str:
    return secrets.token_urlsafe(40)


def webhook_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def make_config(
    *,
    database_url: str,
    homeserver_url: str = "http://127.0.0.1:8008",
    bridge_port: int = 29330,
    as_token: str | None = None,
    hs_token: str | None = None,
    api_token: str | None = None,
    **sections: dict[str, Any],
) -> Config:
    example = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data: dict[str, Any] = {
        "homeserver": {**example["homeserver"], "url": homeserver_url, "domain": "localhost"},
        "appservice": {
            "id": "marketplace",
            "url": f"http://127.0.0.1:{bridge_port}",
            "as_token": as_token or random_secret(),
            "hs_token": hs_token or random_secret(),
            "bot_localpart": "marketbot",
            "alias_prefix": "market_",
            "max_transaction_bytes": 32 * 1024 * 1024,
        },
        "api": {
            "token": api_token or random_secret(),
            "max_body_bytes": 65536,
            "allowed_matrix_servers": [],
        },
        "rooms": {
            "version": "12",
            "admins": [],
            "command_prefix": "!market",
            "management_room": "",
        },
        "disputes": {
            "freeze_transaction_room": True,
            "decisions": ["refund_buyer", "release_to_seller", "no_action"],
        },
        "webhooks": {
            "url": "http://127.0.0.1:9/unused",
            "secrets": [webhook_secret()],
            "timeout_seconds": 5,
            "retry_for_seconds": 3600,
            "backoff_initial_seconds": 0.05,
            "backoff_max_seconds": 0.5,
        },
        **{key: example[key] for key in ("policy", "lockdown")},
        "server": {"host": "127.0.0.1", "port": bridge_port},
        "gateway": example["gateway"],
        "identity": example["identity"],
        "webchat": example["webchat"],
        "reminders": example["reminders"],
        "deals": example["deals"],
        "retention": example["retention"],
        "database": {"url": database_url, "max_connections": 5},
        "logging": {"level": "DEBUG"},
    }
    for name, values in sections.items():
        data[name] = {**data[name], **values}
    return build_config(data)


def postgres_server_url() -> str:
    return os.environ.get("BRIDGE_TEST_DATABASE_URL", DEFAULT_POSTGRES_URL)


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A new, empty database on the test server, dropped afterwards; yields its URL."""
    server = URL(postgres_server_url())
    try:
        admin = await asyncpg.connect(str(server), timeout=10)
    except (OSError, asyncpg.PostgresError) as e:
        raise RuntimeError(
            f"PostgreSQL is needed for these tests and did not answer at {server.host}:"
            f"{server.port} ({e}). Start it, or point BRIDGE_TEST_DATABASE_URL at one."
        ) from e
    name = f"bridge_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        yield str(server.with_path(f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@dataclass(frozen=True)
class Arrival:
    """A room event in a bridge's inbox, in the order it was stored."""

    event_id: str
    room_id: str
    origin_server_ts: int
    txn_id: str

    @property
    def read_back(self) -> bool:
        """Read from the room's timeline (bridge/recovery.py), not pushed by the homeserver."""
        return self.txn_id.startswith("catch-up:")


async def inbox_arrivals(postgres_url: str) -> list[Arrival]:
    conn = await asyncpg.connect(postgres_url)
    try:
        rows = await conn.fetch(
            "SELECT event_id, room_id, origin_server_ts, txn_id FROM inbox_events"
            " WHERE event_type <> 'm.receipt' ORDER BY seq"
        )
    finally:
        await conn.close()
    return [Arrival(**dict(row)) for row in rows]


async def where_stopped(postgres_url: str, event_ids: set[str]) -> str:
    """What a bridge's database holds of events that never reached the marketplace: each one's
    inbox row, and its room's webhooks not delivered (a failed chaos run's evidence)."""
    conn = await asyncpg.connect(postgres_url)
    try:
        lines = []
        for event_id in sorted(event_ids):
            inbox = await conn.fetchrow(
                "SELECT seq, room_id, status, error, txn_id, received_at FROM inbox_events"
                " WHERE event_id = $1",
                event_id,
            )
            lines.append(f"{event_id}: inbox {dict(inbox) if inbox else 'no row'}")
            if inbox is None:
                continue
            webhooks = await conn.fetch(
                "SELECT seq, id, type, status, attempts, next_attempt_at, lease_until,"
                " created_at, delivered_at, last_error, body LIKE '%' || $2 || '%' AS this_event"
                " FROM outbox WHERE stream = $1 AND (status <> 'delivered' OR body LIKE"
                " '%' || $2 || '%') ORDER BY seq",
                inbox["room_id"],
                event_id,
            )
            lines += [f"  outbox {dict(row)}" for row in webhooks] or ["  no outbox row"]
        return "\n".join(lines)
    finally:
        await conn.close()


def sent_late(arrival: Arrival, arrivals: list[Arrival]) -> bool:
    """Whether the homeserver pushed ``arrival`` after a newer transaction with an event of
    its room had been stored (Synapse's transaction ids count up as it makes them)."""
    if not arrival.txn_id.isdigit():
        return False
    before = arrivals[: arrivals.index(arrival)]
    return any(
        other.room_id == arrival.room_id
        and other.txn_id.isdigit()
        and int(other.txn_id) > int(arrival.txn_id)
        for other in before
    )


def stored_late(arrivals: list[Arrival]) -> list[Arrival]:
    """Events stored after a newer event of their room (so notified out of order)."""
    newest: dict[str, int] = {}
    late = []
    for arrival in arrivals:
        if arrival.origin_server_ts < newest.get(arrival.room_id, 0):
            late.append(arrival)
        newest[arrival.room_id] = max(newest.get(arrival.room_id, 0), arrival.origin_server_ts)
    return late


@asynccontextmanager
async def fresh_database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite://{tmp_path / 'bridge.db'}"
    else:
        async with fresh_postgres_database() as url:
            yield url


CONNECT_TIMEOUT = 30.0


@dataclass
class Homeserver:
    """A session's Synapse, and what a bridge needs to be the appservice it knows."""

    synapse: LocalSynapse
    bridge_port: int
    as_token: str
    hs_token: str
    # Settings the homeserver was started with that its bridges must share (the hardened
    # one's module knows the admins and the content rules).
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    gateway: GatewayProcess | None = None  # what clients connect to, when there is one

    @property
    def client_url(self) -> str:
        """Where clients connect: the client gateway in front of Synapse, or Synapse."""
        return self.gateway.url if self.gateway is not None else self.synapse.url

    def stop(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        self.synapse.stop()

    def database(self) -> sqlite3.Connection:
        """Synapse's own SQLite database, for tests that need a state its API refuses to make
        (they depend on Synapse's schema)."""
        return sqlite3.connect(self.synapse.data_dir / "homeserver.db")

    def bridge_config(self, database_url: str, **sections: dict[str, Any]) -> Config:
        return make_config(
            database_url=database_url,
            homeserver_url=self.synapse.url,
            bridge_port=self.bridge_port,
            as_token=self.as_token,
            hs_token=self.hs_token,
            **{**self.sections, **sections},
        )


# The hardened homeserver's admin, named in its module's config before it exists.
HARDENED_ADMIN = "moderator"
HARDENED_SECTIONS: dict[str, dict[str, Any]] = {
    "rooms": {"admins": [f"@{HARDENED_ADMIN}:localhost"]},
    "lockdown": {"before_delivery": "mask"},
    "policy": {"max_media_bytes": 1024 * 1024},
}


def start_homeserver(root: Path, *, hardened: bool = False) -> Homeserver:
    """Synapse with a fresh data directory and our registration, on free loopback ports.

    ``hardened``: with the marketplace's module (refusing before delivery) and the settings
    `make run` uses; otherwise permissive, so other tests can do what the lockdown forbids.
    The bridge's port is fixed for the session because Synapse reads the registration (with
    the bridge's URL) once at start; bridges therefore run one at a time per homeserver.
    """
    bridge_port = free_port()
    as_token, hs_token = random_secret(), random_secret()
    sections = HARDENED_SECTIONS if hardened else {}
    config = make_config(
        database_url="sqlite:unused.db",
        bridge_port=bridge_port,
        as_token=as_token,
        hs_token=hs_token,
        **sections,
    )
    registration = root / "registration.yaml"
    write_registration(config, registration)
    synapse = LocalSynapse(
        root / "synapse",
        server_name="localhost",
        port=free_port(),
        registration_files=[registration],
        relaxed_rate_limits=True,
        module=lockdown_module(config.model_dump(mode="json")) if hardened else None,
    )
    synapse.start_on_free_ports()
    homeserver = Homeserver(synapse, bridge_port, as_token, hs_token, dict(sections))
    if hardened:  # as in make run: clients reach Synapse through the client gateway
        gateway_config = homeserver.bridge_config(
            "sqlite:unused.db", gateway={"host": "127.0.0.1", "port": free_port()}
        )
        homeserver.gateway = GatewayProcess(gateway_config, root)
        try:
            homeserver.gateway.start()
        except Exception:
            synapse.stop()
            raise
    return homeserver


class GatewayProcess:
    """The client gateway as its own process (`python -m bridge gateway`)."""

    def __init__(self, config: Config, workdir: Path) -> None:
        self.config = config
        self.config_path = workdir / "gateway.yaml"
        self.log_path = workdir / "gateway.log"
        self.config_path.write_text(yaml.safe_dump(config_data(config)))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.gateway.host}:{self.config.gateway.port}"

    def start(self) -> None:
        """Launch, and wait until it answers (Synapse's /health, through it)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bridge", "gateway", "-c", str(self.config_path)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the gateway did not answer: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class OffsetClock(SystemClock):
    """The system's clock, moved forward by hand: a bridge's timers come due at once while
    the homeserver keeps real time (sleeping stays real)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return super().now_ms() + self.offset_ms

    def advance(self, seconds: float) -> None:
        self.offset_ms += round(seconds * 1000)


@asynccontextmanager
async def running_bridge(config: Config, clock: Clock | None = None) -> AsyncIterator[Bridge]:
    """A bridge listening on the session's port and connected to the homeserver."""
    bridge = await Bridge.open(config, clock)
    try:
        await bridge.serve()
        bridge.connect()
        await asyncio.wait_for(bridge.connected.wait(), CONNECT_TIMEOUT)
        yield bridge
    finally:
        await bridge.close()
        if is_sqlite(config.database.url):
            report_sqlite_lock(URL(config.database.url).path)


class TcpProxy:
    """A loopback TCP forwarder that a test can cut (an outage) or hold (a hung peer)."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.held_bytes = 0  # read while holding, not yet forwarded
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        server, self._server = self._server, None  # _serve drops what connects from now on
        if server is None:
            return
        server.close()
        # Cut open connections before waiting: wait_closed() waits for them (Python >= 3.11.6).
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
        await server.wait_closed()

    def hold(self) -> None:
        """Keep accepting and reading, forward nothing: requests hang until release()."""
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()
        self.held_bytes = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = self._server
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        if server is None or self._server is not server:  # cut while connecting
            writer.close()
            up_writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if not self._flowing.is_set():
                    self.held_bytes += len(data)
                    await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
            self._writers.discard(writer)


@dataclass
class MarketClient:
    """The marketplace backend's view: the bridge's /api/v1 over real HTTP."""

    session: Any  # aiohttp.ClientSession
    base_url: str
    token: str
    # Seconds each successful call took, by operation ("POST /transactions/{id}/payment").
    timings: dict[str, list[float]] | None = None

    async def call(self, method: str, path: str, body: Any = None, **kwargs: Any):
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        url = self.base_url + "/api/v1" + path
        started = time.perf_counter()
        async with self.session.request(method, url, json=body, headers=headers, **kwargs) as r:
            text = await r.text()
        elapsed = time.perf_counter() - started
        if self.timings is not None and 200 <= r.status < 300:
            template = re.sub(r"^/(transactions|users|disputes)/[^/]+", r"/\1/{id}", path)
            template = re.sub(r"^(/users/\{id\}/sessions)/[^/]+", r"\1/{device_id}", template)
            operation = f"{method} {template}"
            self.timings.setdefault(operation, []).append(elapsed)
        return r.status, (json.loads(text) if text else None)


@dataclass
class Delivery:
    """One webhook attempt as the receiver saw it."""

    headers: dict[str, str]
    raw: bytes
    body: dict[str, Any]
    answered: int  # the status we answered (0: we let it time out)
    received_at: float  # time.time() when the request reached the handler


class WebhookReceiver:
    """The marketplace's end: records every attempt, answers as ``behave`` says.

    ``behave(body, attempt_number)`` returns a status to answer, "redirect", or "timeout".
    It also notes any id that arrives while an attempt with the same id is still open.

    An attempt's arrival is noted before anything else is done with it, as the benchmarks'
    recording appservice notes Synapse's pushes: the work of recording (it once counted the
    id's earlier attempts by reading every attempt so far, 0.8 ms a webhook after 1,000)
    is not charged to the bridge's latency.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.attempts: list[Delivery] = []
        self.concurrent_duplicates: list[str] = []
        self.behave: Callable[[dict, int], int | str] = lambda body, n: 200
        self.delay = 0.0  # seconds each answer takes
        self._open: set[str] = set()
        self._tries: Counter[str] = Counter()  # webhook id -> attempts so far
        self._runner: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        from aiohttp import web

        async def receive(request: web.Request) -> web.StreamResponse:
            arrived = time.time()
            raw = await request.read()
            body = json.loads(raw)
            webhook_id = request.headers.get("webhook-id", "")
            if webhook_id in self._open:
                self.concurrent_duplicates.append(webhook_id)
            self._open.add(webhook_id)
            try:
                await asyncio.sleep(self.delay)
                self._tries[body["id"]] += 1
                action = self.behave(body, self._tries[body["id"]])
                if action == "timeout":
                    self.attempts.append(Delivery(dict(request.headers), raw, body, 0, arrived))
                    await asyncio.sleep(30)
                if action == "redirect":
                    self.attempts.append(Delivery(dict(request.headers), raw, body, 307, arrived))
                    raise web.HTTPTemporaryRedirect(self.url)
                status = int(action)
                self.attempts.append(Delivery(dict(request.headers), raw, body, status, arrived))
                return web.Response(status=status)
            finally:
                self._open.discard(webhook_id)

        app = web.Application()
        app.router.add_post("/hooks", receive)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def delivered(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Bodies answered with 2xx, in arrival order (repeats included)."""
        return [
            a.body
            for a in self.attempts
            if 200 <= a.answered < 300 and (type_ is None or a.body["type"] == type_)
        ]


def config_data(config: Config) -> dict[str, Any]:
    """The config as a YAML-ready mapping, secrets included (for a child process's file)."""

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, str | int | float | bool) or value is None:
            return value
        return str(value)

    return plain(config.model_dump())


class BridgeProcess:
    """The bridge as its own process (`python -m bridge run`), to be killed for real."""

    def __init__(self, config: Config, workdir: Path) -> None:
        self.config = config
        self.config_path = workdir / f"bridge-{config.server.port}.yaml"
        self.log_path = workdir / f"bridge-{config.server.port}.log"
        self.config_path.write_text(yaml.safe_dump(config_data(config)))
        self.process: subprocess.Popen | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.config.server.port}{path}"

    def launch(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bridge", "run", "-c", str(self.config_path)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def start(self) -> None:
        """Launch, and wait until the process answers /ready."""
        from aiohttp import ClientError, ClientSession

        self.launch()
        url = f"http://127.0.0.1:{self.config.server.port}/ready"
        async with ClientSession() as session:

            async def ready() -> bool:
                assert self.process is not None and self.process.poll() is None, self.log()
                try:
                    async with session.get(url) as response:
                        return response.status == 200
                except ClientError:
                    return False

            await eventually(ready, within=30)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        self.process.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]
