"""Bringing managed rooms back to their plans: state, power levels and members.

Runs (each compared room costs homeserver reads, about 1.5 ms of Synapse's CPU):

    changed    the rooms that may have left their plans since the start of the last completed
               run (`ReconcileRuns.changed_since`, less a margin): at start-up (with the
               rooms whose last comparison failed, the homeserver unavailable), then every
               TICK_SECONDS (a room this process compared after its latest change skipped)
    scheduled  the same with the failed ones, plus the active rooms (transactions not
               closed, open disputes): every policy.repair_interval_seconds
    full       every room (a room a failed call never made is made now): on the slow
               schedule (policy.full_reconcile_interval_seconds), by `python -m bridge
               reconcile`, and instead of a 'changed' run when there is no completed run to
               start from or the plans changed (settings or code: `plan_fingerprint`)

Why the start of the last completed run is a safe mark, after a clean stop or a crash alike:
it is written only once a run has compared everything it selected, and a run selects every
object stamped (`changed_at`, in the database transaction of the change) or event stored
since the previous mark. A change whose room update never finished (a crash, the homeserver
down) keeps its stamp, so the next run picks it up; a room that fails stays in
`reconcile_failures` until a run succeeds. The margin covers a change stamped just before a
run began but committed after it read (MARGIN_MS within one process, LEASE_MARGIN_MS when
the last run was another process's, whose clock may differ). Not seen this way: drift the
homeserver never sends (events it lost in a restart while the bridge was away,
element-hq/synapse#11637): the scheduled active rooms and the slow full run cover it.
Each kind of run is leased ('changed' and 'scheduled' share one): one process runs them and
keeps the lease while it lives; another takes over once it expires or is released.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path

from appservice.matrix import HomeserverUnavailable, MatrixError
from bridge.config import Config
from bridge.runtime.clock import Clock
from policy import membership
from policy import rooms as room_plans
from policy.ids import DisputeId, RoomId, TransactionId

from . import rooms as market_rooms
from .disputes import Disputes
from .errors import MarketError
from .management import ManagementRoom
from .records.reconcile_runs import Owner, ReconcileRuns
from .records.rooms import ManagedRooms
from .transactions import Transactions

CONCURRENCY = 8
TICK_SECONDS = 5.0
MARGIN_MS = 30_000
LEASE_MARGIN_MS = 5 * 60_000
LEASE_MS = 60_000
MANAGEMENT: Owner = ("management", "")


def plan_fingerprint(config: Config) -> str:
    """What the rooms' plans are made from: the settings that shape them and the code that
    writes them. When it differs from the last run's, every room is compared."""
    settings = {
        "bot": config.bot_mxid,
        "rooms": config.rooms.model_dump(mode="json", exclude={"command_prefix"}),
        "freeze": config.disputes.freeze_transaction_room,
        "hosts": config.policy.allowed_link_hosts,
        "terms": config.policy.off_platform_terms,
        "alias_prefix": config.appservice.alias_prefix,
        "domain": config.homeserver.domain,
        "user_prefix": config.identity.user_prefix,
        "web_client": str(config.identity.web_client_url or ""),
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for module in (room_plans, membership, market_rooms):
        digest.update(Path(str(module.__file__)).read_bytes())
    return digest.hexdigest()


class LeaseLost(Exception):
    """Another process took over the run (ours outlived its lease): this one stops."""


class Reconciler:
    def __init__(
        self,
        transactions: Transactions,
        disputes: Disputes,
        management: ManagementRoom,
        rooms: ManagedRooms,
        runs: ReconcileRuns,
        clock: Clock,
        fingerprint: str,
    ) -> None:
        self._transactions = transactions
        self._disputes = disputes
        self._management = management
        self._rooms = rooms
        self._runs = runs
        self._clock = clock
        self._fingerprint = fingerprint
        self._holder = uuid.uuid4().hex  # this process, as the leases name it
        # Rooms this process compared, with the time of the change it compared them after.
        self._compared: dict[Owner, int] = {}
        self._log = logging.getLogger("bridge.market.reconcile")

    async def run(self, kind: str = "changed") -> int | None:
        """One run of ``kind`` ('changed', 'scheduled' or 'full'; 'start' is a 'changed' run
        that always logs); the rooms it compared, or None when another process holds the
        lease for it."""
        quiet, kind = kind == "changed", "changed" if kind == "start" else kind
        last = await self._runs.last("changed")
        if kind != "full" and (not last.started_at or last.fingerprint != self._fingerprint):
            kind = "full"  # nothing to start from, or the plans changed: compare everything
        lease = "full" if kind == "full" else "changed"
        started = self._clock.now_ms()
        if not await self._runs.lease(lease, self._holder, started, started + LEASE_MS):
            self._log.debug("Another bridge process holds the %s reconcile", lease)
            return None
        if not quiet:  # made if missing (compared below otherwise)
            await self._management.ensure()
        failures = await self._runs.failures()
        changed: dict[Owner, int] = {}
        if kind == "full":
            owners: Iterable[Owner] = await self._runs.all_objects()
            management = True
        else:
            margin = MARGIN_MS if last.holder == self._holder else LEASE_MARGIN_MS
            since = last.started_at - margin
            changed = await self._runs.changed_since(since, self._management.room_id)
            # Compared by this process after its latest change: nothing new to see.
            self._compared = {o: at for o, at in self._compared.items() if at >= since}
            selected = {o for o, at in changed.items() if self._compared.get(o, -1) < at}
            if kind == "scheduled":
                selected |= await self._runs.active_objects()
            if not quiet:  # not every tick: while the homeserver is down, each would fail
                selected |= failures
            management = MANAGEMENT in selected
            owners = sorted(selected - {MANAGEMENT})
        jobs = ((owner, self._job(owner)) for owner in owners)
        if management and self._management.room_id is not None:
            jobs = _then(jobs, (MANAGEMENT, self._management.repair))
        try:
            done = await self._compare(jobs, failures, lease)
        except LeaseLost:
            self._log.warning("The %s reconcile's lease was taken over; stopping it", lease)
            return None
        self._compared.update(changed)
        completes = ("full", "changed") if kind == "full" else ("changed",)
        await self._runs.complete(completes, started, self._clock.now_ms(), self._fingerprint)
        if done or not quiet:
            self._log.info("Compared %d rooms with their plans (%s)", done, kind)
        return done

    async def keep(self, repair_interval: int, full_interval: int) -> None:
        """Forever: a 'changed' run at once and every TICK_SECONDS, a 'scheduled' one every
        ``repair_interval`` seconds (0: none), a full one when ``full_interval`` has passed
        since the last (any process's; 0: none)."""
        clock = self._clock
        kind, scheduled_at = "start", clock.monotonic() + repair_interval
        while True:
            try:
                if await self.due("full", full_interval):
                    kind = "full"
                await self.run(kind)
            except Exception:
                self._log.exception("Repairing the rooms failed; trying again on schedule")
            await clock.sleep(TICK_SECONDS)
            kind = "changed"
            if repair_interval and clock.monotonic() >= scheduled_at:
                kind, scheduled_at = "scheduled", scheduled_at + repair_interval

    async def release(self) -> None:
        """Leave the leases to another process at once (a clean stop)."""
        await self._runs.release(self._holder)

    async def reconcile(self, *, active_only: bool = False) -> None:
        """Every room (``active_only``: the active ones) compared with its plan, unleased and
        unrecorded (what a test or a caller that already decided wants)."""
        if active_only:
            owners = sorted(await self._runs.active_objects())
        else:
            owners = await self._runs.all_objects()
        jobs: Iterable = ((o, self._job(o)) for o in owners)
        if self._management.room_id is not None:
            jobs = _then(jobs, (MANAGEMENT, self._management.repair))
        done = await self._compare(jobs, await self._runs.failures(), None)
        self._log.info("Compared %d rooms with their plans", done)

    async def due(self, kind: str, interval_seconds: int) -> bool:
        """Whether the last completed run of ``kind`` is older than the interval (0: never)."""
        if not interval_seconds:
            return False
        last = await self._runs.last(kind)
        return self._clock.now_ms() - last.started_at >= interval_seconds * 1000

    async def repair_room(self, room_id: RoomId, *, changing: bool = False) -> None:
        """Put one managed room back to its plan (what the policy bot does on drift);
        ``changing``: the plan itself changed (a mute), so this is no repair."""
        if room_id == self._management.room_id:
            await self._management.repair()
        elif (owner := await self._rooms.owner(room_id)) is not None:
            transaction, dispute = owner
            if dispute is None:
                await self._transactions.repair(transaction.transaction_id, changing=changing)
            else:
                await self._disputes.repair(dispute.dispute_id, changing=changing)

    def _job(self, owner: Owner) -> Callable[[], Awaitable[None]]:
        kind, object_id = owner
        if kind == "transaction":
            return partial(self._transactions.repair, TransactionId(object_id))
        if kind == "dispute":
            return partial(self._disputes.repair, DisputeId(object_id))
        return self._management.repair

    async def _compare(
        self,
        jobs: Iterable[tuple[Owner, Callable[[], Awaitable[None]]]],
        failures: set[Owner],
        lease: str | None,
    ) -> int:
        """Run the jobs; a failed room is recorded, and forgotten once it succeeds.

        A fixed pool of workers pulls from one iterator of jobs: memory and event-loop time
        stay flat however many rooms there are (a task per room, or every record loaded at
        once, stalled the loop for seconds at 100,000 rooms; see docs/performance.md)."""
        done, lost = 0, False
        renew_at = self._clock.now_ms() + LEASE_MS // 2
        jobs = iter(jobs)

        async def worker() -> None:
            nonlocal done, renew_at, lost
            for owner, job in jobs:  # shared: each job is taken by one worker
                if lost:
                    return
                try:
                    await job()
                except (MarketError, HomeserverUnavailable, MatrixError) as e:
                    self._log.warning("Could not bring %s %s back to its plan: %s", *owner, e)
                    # Tried again by the next runs, unless the homeserver refused (a room the
                    # bot was put out of, or that is gone): asking again would not change that.
                    if isinstance(e, HomeserverUnavailable):
                        await self._runs.failed(owner, self._clock.now_ms(), str(e) or repr(e))
                else:
                    if owner in failures:
                        await self._runs.succeeded(owner)
                done += 1
                now = self._clock.now_ms()
                if lease is not None and now >= renew_at:
                    renew_at = now + LEASE_MS // 2
                    lost = not await self._runs.lease(lease, self._holder, now, now + LEASE_MS)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        if lost:
            raise LeaseLost
        return done


def _then(jobs: Iterable, last: tuple) -> Iterable:
    yield from jobs
    yield last
