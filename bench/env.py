"""What the benchmarks run against, all on loopback, started once per run and stopped after.

Synapse from the venv (rate limits raised for the people, the bot exempt anyway) with two
registrations: the bridge's, and a minimal recording appservice with a non-exclusive
namespace over every room (it joins none): it notes when Synapse pushed each event,
the baseline the bridge's own latency is measured against
PostgreSQL databases (fresh, dropped at the end) and SQLite files in the work directory
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from bridge.config import Config
from bridge.ops.deployment import EXAMPLE_CONFIG, write_registration
from bridge.ops.local_synapse import LocalSynapse
from tests.harness import free_port, fresh_postgres_database, make_config, random_secret

from .cpu import CpuMeter

RECORDER_ID = "bench-recorder"


@dataclass
class Recorder:
    """The baseline: a bare appservice that stores nothing and notes each event's arrival."""

    hs_token: str = field(default_factory=random_secret)
    as_token: str = field(default_factory=random_secret)
    port: int = field(default_factory=free_port)
    arrivals: dict[str, float] = field(default_factory=dict)  # event id -> time.time()
    _runner: web.AppRunner | None = None

    def registration(self) -> dict[str, Any]:
        return {
            "id": RECORDER_ID,
            "url": f"http://127.0.0.1:{self.port}",
            "as_token": self.as_token,
            "hs_token": self.hs_token,
            "sender_localpart": f"bench-recorder-{secrets.token_hex(4)}",
            "rate_limited": False,
            "namespaces": {
                "users": [],
                "aliases": [],
                "rooms": [{"exclusive": False, "regex": "!.*"}],
            },
        }

    async def start(self) -> None:
        async def transaction(request: web.Request) -> web.Response:
            now = time.time()
            body = await request.json()
            for event in body.get("events", []):
                self.arrivals.setdefault(event.get("event_id", ""), now)
            return web.json_response({})

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_put("/_matrix/app/v1/transactions/{txn}", transaction)
        app.router.add_post("/_matrix/app/v1/ping", lambda _: web.json_response({}))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Env:
    workdir: Path
    synapse: LocalSynapse
    recorder: Recorder
    bridge_port: int
    as_token: str
    hs_token: str
    _exit: AsyncExitStack

    @property
    def client_url(self) -> str:
        """Where the benchmark's clients talk: Synapse itself (no client gateway here, as the
        benchmarks measure the bridge, not the lockdown)."""
        return self.synapse.url

    def bridge_config(self, database_url: str, **sections: dict[str, Any]) -> Config:
        """A bridge config for this Synapse; its webhooks go wherever ``sections`` say. The
        pool is the example configuration's (the tests' is smaller)."""
        pool = yaml.safe_load(EXAMPLE_CONFIG.read_text())["database"]["max_connections"]
        return make_config(
            database_url=database_url,
            homeserver_url=self.synapse.url,
            bridge_port=self.bridge_port,
            as_token=self.as_token,
            hs_token=self.hs_token,
            **{"logging": {"level": "WARNING"}, "database": {"max_connections": pool}, **sections},
        )

    async def postgres(self) -> str:
        """A fresh, empty PostgreSQL database, dropped when the run ends."""
        return await self._exit.enter_async_context(fresh_postgres_database())

    def sqlite(self, name: str) -> str:
        return f"sqlite://{self.workdir / name}"

    def meter(self, **processes: Any) -> CpuMeter:
        """CPU time of Synapse, this driver, and ``processes`` (name -> callable giving a pid)."""
        synapse = self.synapse

        def synapse_pid() -> int | None:
            return synapse._process.pid if synapse._process else None

        return CpuMeter({"synapse": synapse_pid, **processes})


def _write_registrations(workdir: Path, bridge: Config, recorder: Recorder) -> list[Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    paths = [workdir / "registration.yaml", workdir / "recorder.yaml"]
    write_registration(bridge, paths[0])
    paths[1].write_text(yaml.safe_dump(recorder.registration()))
    return paths


@asynccontextmanager
async def bench_env(workdir: Path) -> AsyncIterator[Env]:
    async with AsyncExitStack() as exit_stack:
        bridge_port = free_port()
        as_token, hs_token = random_secret(), random_secret()
        bridge = make_config(
            database_url="sqlite:unused.db",
            bridge_port=bridge_port,
            as_token=as_token,
            hs_token=hs_token,
        )
        recorder = Recorder()
        registrations = _write_registrations(workdir, bridge, recorder)
        await recorder.start()
        exit_stack.push_async_callback(recorder.stop)
        synapse = LocalSynapse(
            workdir / "synapse",
            server_name="localhost",
            port=free_port(),
            registration_files=registrations,
            relaxed_rate_limits=True,
        )
        synapse.start_on_free_ports()  # blocks until Synapse answers (about a second)
        exit_stack.callback(synapse.stop)
        yield Env(workdir, synapse, recorder, bridge_port, as_token, hs_token, exit_stack)
