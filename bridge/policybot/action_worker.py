"""The action worker: carries out the policy bot's planned actions once their plans commit.

    woken when actions are planned (or by `DueWatch`, once one comes due) -> due pending
      rows, oldest first in each room, ROOM_CONCURRENCY rooms at a time
      -> claim (a lease, so two bridge processes never both act) -> perform, the lease
         renewed while it runs (short: a killed process holds an action LEASE_MS at most)
      -> done, with its audit entry, in one transaction
         homeserver unavailable -> tried again with backoff; refused -> failed (audited)

An action is carried out at least once: a crash after the homeserver acted and before the row
is marked done repeats it, which the homeserver absorbs (sends reuse their txn ids; a second
redaction or kick changes nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from appservice.matrix import HomeserverUnavailable, MatrixError
from bridge.market.records.audit import AuditEntry
from bridge.runtime.backoff import Backoff
from bridge.runtime.clock import Clock
from bridge.runtime.due import DueCheck
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeup, drain_when_woken, keeping_lease, room_by_room
from policy.ids import UserId

from .actions import DUE, DueAction, PlannedAction, PlannedActions

LEASE_MS = 3_000
RENEW_SECONDS = 1.0
BATCH = 50
ROOM_CONCURRENCY = 8  # rooms whose actions are carried out side by side, each room's in order
MAX_ATTEMPTS = 12
BACKOFF = Backoff(initial=2, maximum=300)

Perform = Callable[[PlannedAction], Awaitable[AuditEntry | None]]


class ActionWorker:
    def __init__(
        self,
        actions: PlannedActions,
        perform: Perform,
        bot: UserId,
        clock: Clock,
        metrics: Metrics,
        wakeup: Wakeup,
        renew_seconds: float = RENEW_SECONDS,
    ) -> None:
        self._actions = actions
        self._renew_seconds = renew_seconds
        self._perform = perform
        self._bot = bot
        self._clock = clock
        self._metrics = metrics
        self._wakeup = wakeup
        self._log = logging.getLogger("bridge.policybot.actions")

    async def run(self) -> None:
        await drain_when_woken(
            self.drain, self._wakeup, self._log, "carry out the planned actions"
        )

    @property
    def due(self) -> DueCheck:
        """`DueWatch`'s look for actions come due (or another process's, a failed one's)."""
        return DueCheck.waking(DUE, self._wakeup)

    async def drain(self) -> None:
        """Carry out every action that is due, oldest first in each room; rooms side by side
        (`room_by_room`)."""
        while True:
            due = await self._actions.due(self._clock.now_ms(), BATCH)
            await room_by_room(due, lambda d: d.action.room_id, self._carry_out, ROOM_CONCURRENCY)
            if len(due) < BATCH:
                return

    async def _carry_out(self, due: DueAction) -> None:
        now = self._clock.now_ms()
        if not await self._actions.claim(due.seq, now, now + LEASE_MS):
            return  # another process has it
        action, attempts = due.action, due.attempts + 1
        try:
            entry = await keeping_lease(
                self._perform(action),
                lambda: self._actions.renew(due.seq, self._clock.now_ms() + LEASE_MS),
                self._renew_seconds,
                self._log,
                f"action {due.seq}",
            )
        except HomeserverUnavailable as e:
            if attempts < MAX_ATTEMPTS:
                retry_at = self._clock.now_ms() + int(BACKOFF.delay(attempts) * 1000)
                await self._actions.retry_at(due.seq, retry_at, str(e))
                self._log.warning("Action %s in %s: %s; retrying", action.kind, action.room_id, e)
                return
            await self._finish(due, "failed", self._failed(action, str(e)), str(e))
        except MatrixError as e:  # refused by the homeserver: trying again changes nothing
            self._log.warning("Action %s in %s failed: %s", action.kind, action.room_id, e)
            await self._finish(due, "failed", self._failed(action, str(e)), str(e))
        except Exception as e:  # a bug, or a malformed row: park it rather than loop on it
            self._log.exception("Action %s in %s failed", action.kind, action.room_id)
            error = f"{type(e).__name__}: {e}"
            await self._finish(due, "failed", self._failed(action, error), error)
        else:
            await self._finish(due, "done", entry, None)

    def _failed(self, action: PlannedAction, error: str) -> AuditEntry:
        return AuditEntry(
            actor=self._bot,
            action=f"action.{action.kind}",
            room_id=action.room_id,
            outcome="failed",
            subject=action.params.get("user_id") or action.params.get("event_id"),
            detail=error,
        )

    async def _finish(
        self, due: DueAction, status: str, entry: AuditEntry | None, error: str | None
    ) -> None:
        self._metrics.policy_actions.labels(due.action.kind.value, status).inc()
        await self._actions.finish(due.seq, status, self._clock.now_ms(), error, entry)
