"""Bringing managed rooms back to their plans: state, power levels and members.

On start, every transaction's and dispute's room (a room a failed call never made is made
now) and the management room; on schedule, the active ones (transactions not closed, open
disputes); and one room when the policy bot sees it drift.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from itertools import chain

from appservice.matrix import HomeserverUnavailable, MatrixError
from policy.ids import RoomId

from .disputes import Disputes
from .errors import MarketError
from .management import ManagementRoom
from .records.disputes import DisputeRecords
from .records.rooms import ManagedRooms
from .records.transactions import TransactionRecords
from .transactions import Transactions

CONCURRENCY = 8


class Reconciler:
    def __init__(
        self,
        transactions: Transactions,
        disputes: Disputes,
        management: ManagementRoom,
        transaction_records: TransactionRecords,
        dispute_records: DisputeRecords,
        rooms: ManagedRooms,
    ) -> None:
        self._transactions = transactions
        self._disputes = disputes
        self._management = management
        self._transaction_records = transaction_records
        self._dispute_records = dispute_records
        self._rooms = rooms
        self._log = logging.getLogger("bridge.market.reconcile")

    async def reconcile(self, *, active_only: bool = False) -> None:
        """Every room (``active_only``: the active ones) compared with its plan and repaired.

        A fixed pool of workers pulls from one iterator of jobs: memory and event-loop time
        stay flat however many rooms there are (a task per room, or every record loaded at
        once, stalled the loop for seconds at 100,000 rooms; see docs/performance.md)."""
        jobs: Iterator[tuple[str, Callable[[], Awaitable[None]]]]
        if active_only:
            rooms = await self._rooms.active()
            jobs = ((room, partial(self.repair_room, room)) for room in rooms)
        else:
            transactions = await self._transaction_records.ids()
            disputes = await self._dispute_records.ids()
            jobs = chain(
                ((t, partial(self._transactions.repair, t)) for t in transactions),
                ((d, partial(self._disputes.repair, d)) for d in disputes),
            )
        if self._management.room_id is not None:
            jobs = chain(jobs, [(self._management.room_id, self._management.repair)])
        done = 0

        async def worker() -> None:
            nonlocal done
            for what, job in jobs:  # shared: each job is taken by one worker
                try:
                    await job()
                except (MarketError, HomeserverUnavailable, MatrixError) as e:
                    self._log.warning("Could not bring %s back to its plan: %s", what, e)
                done += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        self._log.info("Compared %d rooms with their plans", done)

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
