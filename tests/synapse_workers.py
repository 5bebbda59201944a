"""Synapse in worker mode, from the venv, on loopback (the scale-out test and benchmark).

    main process (python -m synapse.app.homeserver)  client API; replication listener;
                                                     persists every event
    "appservice" worker (synapse.app.generic_worker) the appservice pusher alone
                                                     (notify_appservices_from_worker)
    "client-N" workers (optional)                    client API (sends, reads) off the main
    PostgreSQL (a fresh database, C collation)       shared by all of them
    Redis                                            replication between them (pub/sub)

Synapse names its Redis channels after the server name, so each launch takes a server name
of its own: two worker-mode Synapses on one Redis must never hear each other.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from yarl import URL

from bridge.ops.local_synapse import (
    READY_TIMEOUT,
    LocalSynapse,
    SynapseError,
    exit_error,
    free_loopback_port,
    on_free_ports,
)
from tests.harness import postgres_server_url, random_word

APPSERVICE_WORKER = "appservice"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"


@dataclass(frozen=True)
class Redis:
    host: str
    port: int


def find_redis() -> Redis:
    """The Redis at BRIDGE_TEST_REDIS_URL (default 127.0.0.1:6379), checked with a PING;
    fails saying where it looked."""
    url = URL(os.environ.get("BRIDGE_TEST_REDIS_URL", DEFAULT_REDIS_URL))
    redis = Redis(url.host or "127.0.0.1", url.port or 6379)
    try:
        with socket.create_connection((redis.host, redis.port), timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except OSError as e:
        answer = repr(e).encode()
    if not answer.startswith(b"+PONG"):
        raise RuntimeError(
            f"Redis is needed for Synapse's workers and did not answer PING at "
            f"{redis.host}:{redis.port} ({answer!r}). Start it (redis-server), or point "
            "BRIDGE_TEST_REDIS_URL at one."
        )
    return redis


@asynccontextmanager
async def synapse_database() -> AsyncIterator[dict[str, Any]]:
    """A fresh PostgreSQL database as Synapse wants it (UTF8, C collation), dropped after;
    yields Synapse's `database` section."""
    server = URL(postgres_server_url())
    name = f"synapse_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(str(server), timeout=10)
    try:
        await admin.execute(
            f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            " TEMPLATE template0"
        )
        args = {"host": server.host, "port": server.port or 5432, "database": name}
        if server.user:
            args["user"] = server.user
        if server.password:
            args["password"] = server.password
        yield {"name": "psycopg2", "args": {**args, "cp_min": 1, "cp_max": 5}}
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


class SynapseWorkers(LocalSynapse):
    """LocalSynapse's main process on PostgreSQL and Redis, with an appservice-sender worker
    and ``client_workers`` generic workers serving the client API (``client_urls``)."""

    def __init__(
        self,
        data_dir: Path,
        *,
        database: dict[str, Any],
        redis: Redis,
        client_workers: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("server_name", f"{random_word()}.localhost")
        kwargs.setdefault("port", free_loopback_port())
        super().__init__(data_dir, **kwargs)
        self.database = database
        self.redis = redis
        self.replication_port = free_loopback_port({self.port})
        self.worker_ports: dict[str, int] = {}
        for name in [APPSERVICE_WORKER, *(f"client-{n}" for n in range(client_workers))]:
            taken = {self.port, self.replication_port, *self.worker_ports.values()}
            self.worker_ports[name] = free_loopback_port(taken)
        self._workers: dict[str, subprocess.Popen] = {}

    @property
    def client_urls(self) -> list[str]:
        """Where clients may talk: the client workers, or the main process without any."""
        urls = [f"http://127.0.0.1:{p}" for n, p in self.worker_ports.items() if n != "appservice"]
        return urls or [self.url]

    def pids(self) -> dict[str, int]:
        """Each process's pid by name ("synapse main", "synapse appservice", ...)."""
        found = {f"synapse {name}": p.pid for name, p in self._workers.items()}
        if self._process is not None:
            found["synapse main"] = self._process.pid
        return found

    def homeserver_yaml(self) -> dict[str, Any]:
        config = super().homeserver_yaml()
        config["database"] = self.database
        config["listeners"].append(
            {
                "port": self.replication_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "resources": [{"names": ["replication"]}],
            }
        )
        config["instance_map"] = {"main": {"host": "127.0.0.1", "port": self.replication_port}}
        config["redis"] = {"enabled": True, "host": self.redis.host, "port": self.redis.port}
        config["notify_appservices_from_worker"] = APPSERVICE_WORKER
        return config

    def worker_yaml(self, name: str) -> dict[str, Any]:
        resources = ["health"] if name == APPSERVICE_WORKER else ["client"]
        return {
            "worker_app": "synapse.app.generic_worker",
            "worker_name": name,
            "worker_listeners": [
                {
                    "type": "http",
                    "port": self.worker_ports[name],
                    "bind_addresses": ["127.0.0.1"],
                    "x_forwarded": True,
                    "resources": [{"names": resources, "compress": False}],
                }
            ],
        }

    def ports(self) -> list[int]:
        return [self.port, self.replication_port]

    def move_port(self, port: int) -> None:
        """The main process's, its replication listener's or a worker's port, moved."""
        fresh = free_loopback_port({*self.ports(), *self.worker_ports.values()})
        if port == self.port:
            self.port = fresh
        elif port == self.replication_port:
            self.replication_port = fresh
        else:
            (name,) = (name for name, taken in self.worker_ports.items() if taken == port)
            self.worker_ports[name] = fresh

    def start(self) -> None:
        """The main process, then each worker; each waited for until /health answers."""
        super().start()
        try:
            for name in self.worker_ports:
                self._start_worker_on_a_free_port(name)
        except Exception:
            self.stop()
            raise

    def _start_worker_on_a_free_port(self, name: str) -> None:
        """Every server of a test run picks its port from the same range, and another can bind
        the one picked here before the worker starts (seen once in a CI-style run): then the
        worker is started again on another."""
        on_free_ports(lambda: self._start_worker(name, self.worker_ports[name]), self.move_port)

    def _start_worker(self, name: str, port: int) -> None:
        config_path = self.data_dir / f"worker-{name}.yaml"
        config_path.write_text(yaml.safe_dump(self.worker_yaml(name)))
        log_path = self.data_dir / f"worker-{name}.log"
        # The shared file, then the worker's own.
        command = [sys.executable, "-m", "synapse.app.generic_worker", "-c", str(self.config_path)]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*command, "-c", str(config_path)],
                cwd=self.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._workers[name] = process
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-6000:]
                message = f"worker {name} exited with {process.returncode}:\n{tail[-3000:]}"
                raise exit_error([port], tail, message)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise SynapseError(f"worker {name} did not answer within {READY_TIMEOUT}s")

    def stop(self) -> None:
        for process in self._workers.values():
            if process.poll() is None:
                process.terminate()
        for process in self._workers.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        super().stop()
