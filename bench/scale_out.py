"""Scale-out: sustained events a second from Synapse in worker mode through one, then two,
bridge replicas to webhooks, and each process's CPU to say where the bottleneck sits.

    buyers (scale_out_rooms rooms at once, each room's messages one after another, as fast
    as Synapse answers) -> Synapse's client worker (makes the event) -> its main process
    (persists it) -> the appservice worker (Synapse's one pusher: one transaction in flight,
    at most 100 events) -> round-robin proxy -> bridge replica(s), one PostgreSQL database
    -> webhooks -> a receiver here that notes each message.created's arrival

Both runs share one Synapse (PostgreSQL, Redis) and one bridge database; the second adds a
replica behind the proxy. Rate = messages / (first send -> last webhook). A process's CPU
share is its CPU seconds over the run's wall time: a single-threaded process near 1.0, or
all of them near the machine's CPU count, is the limit.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import ClientSession, web
from nio import AsyncClient, JoinResponse, RoomSendResponse

from bridge.ops.deployment import write_registration
from tests.harness import (
    BridgeProcess,
    MarketClient,
    free_port,
    make_config,
    random_secret,
    unique_id,
)
from tests.round_robin import RoundRobinProxy
from tests.synapse_workers import SynapseWorkers, find_redis, synapse_database

from .cpu import CpuMeter
from .env import Env
from .plan import Scale
from .postgres import DatabaseBackends
from .report import Figure, Result, percentiles

DEADLINE_S = 120.0


class Arrivals:
    """The marketplace's end: 200 at once, each message.created's first arrival noted."""

    def __init__(self) -> None:
        self.port = free_port()
        self.at: dict[str, float] = {}  # event id -> time.time()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        async def receive(request: web.Request) -> web.Response:
            body = json.loads(await request.read())
            if body["type"] == "message.created":
                self.at.setdefault(body["data"]["event_id"], time.time())
            return web.Response()

        app = web.Application()
        app.router.add_post("/hooks", receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class Deployment:
    """Synapse in worker mode, a proxy, replicas on one database, a buyer, a seller."""

    def __init__(self, workdir: Path, synapse: SynapseWorkers, database_url: str) -> None:
        self.workdir = workdir
        self.synapse = synapse
        self.database_url = database_url
        self.replica_ports = [free_port(), free_port()]
        self.proxy = RoundRobinProxy(self.replica_ports[:1])
        self.arrivals = Arrivals()
        self.config = make_config(
            database_url=database_url,
            homeserver_url=synapse.url,
            bridge_port=self.proxy.port,
            homeserver={"domain": synapse.server_name},
            webhooks={"url": self.arrivals.url},
            # The buyer floods every room on purpose: the pipeline is measured, not the mute.
            policy={"flood_messages": 10000},
            logging={"level": "WARNING"},
        )
        self.replicas = [
            BridgeProcess(
                self.config.model_copy(
                    update={"server": self.config.server.model_copy(update={"port": port})}
                ),
                workdir,
            )
            for port in self.replica_ports
        ]
        self.clients: list[AsyncClient] = []

    def pids(self) -> dict[str, int | None]:
        found: dict[str, int | None] = {
            ("synapse" if name == "synapse main" else name): pid
            for name, pid in self.synapse.pids().items()
        }
        for n, replica in enumerate(self.replicas, 1):
            if replica.process is not None and replica.process.poll() is None:
                found[f"bridge {n}"] = replica.process.pid
        return found

    async def party(self, role: str) -> AsyncClient:
        account = await asyncio.to_thread(
            self.synapse.register_user, unique_id(role), random_secret()
        )
        client = AsyncClient(self.synapse.client_urls[0], account["user_id"])
        client.user_id, client.access_token = account["user_id"], account["access_token"]
        client.device_id = account["device_id"]
        self.clients.append(client)
        return client


@asynccontextmanager
async def deployment(env: Env) -> AsyncIterator[Deployment]:
    workdir = env.workdir / "scale-out"
    workdir.mkdir(parents=True, exist_ok=True)
    async with synapse_database() as synapse_db:
        registration = workdir / "registration.yaml"
        synapse = SynapseWorkers(
            workdir / "synapse",
            database=synapse_db,
            redis=find_redis(),
            client_workers=1,
            registration_files=[registration],
            relaxed_rate_limits=True,
        )
        d = Deployment(workdir, synapse, await env.postgres())
        write_registration(d.config, registration)
        await d.proxy.start()
        await d.arrivals.start()
        try:
            await asyncio.to_thread(synapse.start)
            await d.replicas[0].start()
            yield d
        finally:
            for client in d.clients:
                await client.close()
            for replica in d.replicas:
                if replica.process is not None and replica.process.poll() is None:
                    replica.kill(signal.SIGTERM)
            await d.arrivals.stop()
            await d.proxy.stop()
            synapse.stop()


async def run(env: Env, scale: Scale) -> Result:
    result = Result("scale_out")
    async with deployment(env) as d, ClientSession() as session:
        api = MarketClient(session, d.proxy.url, d.config.api.token.get_secret_value())
        buyer, seller = await d.party("buyer"), await d.party("seller")
        rooms = [await _open_room(api, buyer, seller) for _ in range(scale.scale_out_rooms)]
        runs = {}
        for replicas in (1, 2):
            if replicas == 2:
                await d.replicas[1].start()
                d.proxy.upstreams = list(d.replica_ports)
            await _stream(d, buyer, rooms, len(rooms))  # warm-up: a message per room
            runs[replicas] = await _measure(d, buyer, rooms, scale.scale_out_messages)
    one, two = runs[1], runs[2]
    result.figures = [
        Figure("events/s, 1 replica", one["rate"], "ev/s"),
        Figure("events/s, 2 replicas", two["rate"], "ev/s"),
        Figure("2 replicas / 1 replica", round(two["rate"] / one["rate"], 2), "x"),
        Figure("Synapse accepted, 2 replicas", two["sent_rate"], "ev/s"),
        Figure("send -> webhook p50, 2 replicas", two["lag"]["p50"], "ms"),
        Figure("send -> webhook p99, 2 replicas", two["lag"]["p99"], "ms"),
        Figure("send -> webhook p99, 1 replica", one["lag"]["p99"], "ms"),
        Figure("events per push, 2 replicas", two["per_push"], "ev"),
        Figure("messages per run", scale.scale_out_messages, "msgs"),
    ]
    result.cpu_seconds = {
        **{f"{name} (1 replica)": s for name, s in one["cpu"].items()},
        **two["cpu"],
    }
    result.notes = (
        f"{scale.scale_out_messages} messages over {len(rooms)} rooms, each room's one after "
        f"another; CPU share of the run (2 replicas, {two['seconds']:.1f} s): "
        + ", ".join(f"{name} {share:.2f}" for name, share in two["share"].items())
        + "; 1 replica: "
        + ", ".join(f"{name} {share:.2f}" for name, share in one["share"].items())
    )
    return result


async def _open_room(api: MarketClient, buyer: AsyncClient, seller: AsyncClient) -> str:
    transaction = {
        "transaction_id": unique_id("bench"),
        "title": "Vintage bike",
        # A marketplace user is bound to its Matrix ID for good: its localpart serves as both.
        "buyer": {"user_id": buyer.user_id[1:].split(":")[0], "matrix_id": buyer.user_id},
        "seller": {"user_id": seller.user_id[1:].split(":")[0], "matrix_id": seller.user_id},
    }
    status, body = await api.call("POST", "/transactions", transaction)
    if status != 201:
        raise RuntimeError(f"create answered {status}: {body}")
    for party in (buyer, seller):
        response = await party.join(body["room_id"])
        if not isinstance(response, JoinResponse):
            raise RuntimeError(f"join failed: {response}")
    path = f"/transactions/{transaction['transaction_id']}/payment"
    status, answer = await api.call("POST", path)
    if status != 200:
        raise RuntimeError(f"payment answered {status}: {answer}")
    return body["room_id"]


async def _stream(
    d: Deployment, buyer: AsyncClient, rooms: list[str], count: int
) -> dict[str, float]:
    """``count`` messages, the rooms' at once; waits until each one's webhook arrived.
    Returns each event id with the time its send started."""
    sent: dict[str, float] = {}

    async def talk(room_id: str, n: int) -> None:
        for i in range(n):
            started = time.time()
            response = await buyer.room_send(
                room_id, "m.room.message", {"msgtype": "m.text", "body": f"offer {i}"}
            )
            if not isinstance(response, RoomSendResponse):
                raise RuntimeError(f"send failed: {response}")
            sent[response.event_id] = started

    share, extra = divmod(count, len(rooms))
    await asyncio.gather(*(talk(r, share + (i < extra)) for i, r in enumerate(rooms)))
    deadline = time.monotonic() + DEADLINE_S
    while missing := [e for e in sent if e not in d.arrivals.at]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(missing)} of {len(sent)} messages never became webhooks")
        await asyncio.sleep(0.02)
    return sent


async def _measure(d: Deployment, buyer: AsyncClient, rooms: list[str], count: int) -> dict:
    bridge_pg = DatabaseBackends(d.database_url, 2 * d.config.database.max_connections)
    synapse_pg = DatabaseBackends(_synapse_url(d.synapse), 40)
    await bridge_pg.refresh()
    await synapse_pg.refresh()
    meter = CpuMeter(
        {
            **{name: (lambda pid=pid: pid) for name, pid in d.pids().items()},
            **{f"pg bridge {k}": v for k, v in bridge_pg.meters().items()},
            **{f"pg synapse {k}": v for k, v in synapse_pg.meters().items()},
        }
    )
    pushes = sum(d.proxy.served_by(p, "homeserver") for p in d.replica_ports)
    started = time.time()
    meter.start()
    sent = await _stream(d, buyer, rooms, count)
    await bridge_pg.refresh()
    await synapse_pg.refresh()
    cpu = _merge(meter.stop())
    finished = max(d.arrivals.at[e] for e in sent)
    pushes = sum(d.proxy.served_by(p, "homeserver") for p in d.replica_ports) - pushes
    seconds = finished - started
    last_sent = max(sent.values())
    return {
        "rate": round(len(sent) / seconds, 1),
        "sent_rate": round(len(sent) / max(last_sent - started, 1e-3), 1),
        "lag": percentiles([(d.arrivals.at[e] - at) * 1000 for e, at in sent.items()]),
        "per_push": round(len(sent) / max(pushes, 1), 1),
        "seconds": seconds,
        "cpu": cpu,
        "share": {name: round(s / seconds, 2) for name, s in cpu.items()},
    }


def _synapse_url(synapse: SynapseWorkers) -> str:
    args = synapse.database["args"]
    user = f"{args['user']}@" if "user" in args else ""
    return f"postgresql://{user}{args['host']}:{args['port']}/{args['database']}"


def _merge(cpu: dict[str, float]) -> dict[str, float]:
    """The database's backends summed into "postgres (bridge)" and "postgres (synapse)"."""
    merged: dict[str, float] = {}
    for name, seconds in cpu.items():
        for prefix in ("bridge", "synapse"):
            if name.startswith(f"pg {prefix} "):
                name, seconds = f"postgres ({prefix})", max(seconds, 0.0)
        merged[name] = round(merged.get(name, 0.0) + seconds, 2)
    return merged
