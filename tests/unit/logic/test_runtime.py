"""What every worker runs on: backoff, retrying, keyed locks, wake-ups, the worker loop, the
clock and the metrics registry. Time is the fake clock's, or no time at all."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time

import pytest
from prometheus_client import CollectorRegistry

from bridge.runtime.backoff import Backoff, retry_until_done
from bridge.runtime.clock import SystemClock
from bridge.runtime.locks import KeyedLocks
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeup, Wakeups, drain_when_woken

from .conftest import until
from .fakes import FakeClock

LOG = logging.getLogger("tests.runtime")
FOREVER = 3600.0  # a poll interval no test waits out: only a wake-up starts the next round


# --- Backoff.delay ------------------------------------------------------------------------


def test_the_first_failure_waits_the_initial_delay() -> None:
    assert Backoff(initial=1.5, maximum=60.0).delay(1) == 1.5


def test_each_failure_doubles_the_wait_up_to_the_maximum() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0)
    assert [backoff.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]


def test_no_failures_yet_counts_as_the_first() -> None:
    assert Backoff(initial=2.0, maximum=30.0).delay(0) == 2.0


def test_jitter_draws_each_wait_from_its_upper_half() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0, jitter=True)
    rng = random.Random(7)
    for failures in range(1, 9):
        whole = min(30.0, 2.0 ** (failures - 1))
        draws = [backoff.delay(failures, rng) for _ in range(300)]
        assert all(whole / 2 <= d <= whole for d in draws)
        # Spread over the half, not stuck at one end.
        assert min(draws) < whole * 0.6 and max(draws) > whole * 0.9


def test_jitter_reaches_exactly_half_and_whole_at_its_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backoff = Backoff(initial=4.0, maximum=30.0, jitter=True)
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    assert [backoff.delay(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 15.0]
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    assert [backoff.delay(n) for n in (1, 2, 3, 4)] == [4.0, 8.0, 16.0, 30.0]


def test_jitter_with_the_same_seed_repeats_its_waits() -> None:
    backoff = Backoff(initial=1.0, maximum=30.0, jitter=True)
    first = [backoff.delay(n, random.Random(3)) for n in range(1, 6)]
    again = [backoff.delay(n, random.Random(3)) for n in range(1, 6)]
    assert first == again


@pytest.mark.parametrize("failures", [63, 64, 1_100, 10**6, 2**80])
def test_huge_failure_counts_do_not_overflow(failures: int) -> None:
    assert Backoff(initial=1.0, maximum=30.0).delay(failures) == 30.0
    assert 15.0 <= Backoff(initial=1.0, maximum=30.0, jitter=True).delay(failures) <= 30.0
    unbounded = Backoff(initial=1.0, maximum=math.inf).delay(failures)
    assert math.isfinite(unbounded) and unbounded == 2.0**62


# --- retry_until_done ---------------------------------------------------------------------


class Flaky:
    """Fails ``failures`` times, then answers."""

    def __init__(self, failures: int, answer: str = "done") -> None:
        self.failures = failures
        self.answer = answer
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"refused #{self.calls}")
        return self.answer


async def test_retry_until_done_returns_at_once_when_the_first_attempt_works(
    clock: FakeClock,
) -> None:
    attempt = Flaky(0, "value")
    result = await retry_until_done(attempt, Backoff(1.0, 30.0), clock, LOG, "connect")
    assert result == "value" and attempt.calls == 1
    assert clock.slept == []


async def test_retry_until_done_waits_the_backoff_between_failures(clock: FakeClock) -> None:
    attempt = Flaky(4, "value")
    started = clock.monotonic()
    result = await retry_until_done(attempt, Backoff(1.0, 5.0), clock, LOG, "connect")
    assert result == "value" and attempt.calls == 5
    assert clock.slept == [1.0, 2.0, 4.0, 5.0]
    assert clock.monotonic() - started == pytest.approx(12.0)


async def test_retry_until_done_logs_each_failure_with_what_and_why(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        await retry_until_done(Flaky(2), Backoff(1.0, 30.0), clock, LOG, "reach the database")
    messages = [r.getMessage() for r in caplog.records if r.name == LOG.name]
    assert messages == [
        "Could not reach the database (refused #1); retrying in 1.0s",
        "Could not reach the database (refused #2); retrying in 2.0s",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == LOG.name)


async def test_retry_until_done_with_jitter_waits_within_bounds(clock: FakeClock) -> None:
    await retry_until_done(Flaky(5), Backoff(1.0, 8.0, jitter=True), clock, LOG, "connect")
    bounds = [1.0, 2.0, 4.0, 8.0, 8.0]
    assert len(clock.slept) == 5
    assert all(
        whole / 2 <= slept <= whole for slept, whole in zip(clock.slept, bounds, strict=True)
    )


async def test_retry_until_done_lets_cancellation_through(clock: FakeClock) -> None:
    calls = 0

    async def cancelled_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise asyncio.CancelledError
        return "retried"  # what a retry would answer, were cancellation swallowed

    with pytest.raises(asyncio.CancelledError):
        await retry_until_done(cancelled_once, Backoff(1.0, 30.0), clock, LOG, "connect")
    assert calls == 1 and clock.slept == []


# --- KeyedLocks ---------------------------------------------------------------------------


async def _hold(
    locks: KeyedLocks, key: str, name: str, log: list[str], gate: asyncio.Event | None = None
) -> None:
    async with locks.hold(key):
        log.append(f"{name} in")
        if gate is not None:
            await gate.wait()
        await asyncio.sleep(0)
        log.append(f"{name} out")


async def test_one_key_is_held_by_one_task_at_a_time() -> None:
    locks, log, gate = KeyedLocks(), [], asyncio.Event()
    first = asyncio.create_task(_hold(locks, "order-1", "first", log, gate))
    await until(lambda: log == ["first in"])
    second = asyncio.create_task(_hold(locks, "order-1", "second", log))
    for _ in range(20):
        await asyncio.sleep(0)
    assert log == ["first in"]  # the second waits for the first
    gate.set()
    await asyncio.gather(first, second)
    assert log == ["first in", "first out", "second in", "second out"]


async def test_waiters_on_one_key_go_in_arrival_order() -> None:
    locks, log, gate = KeyedLocks(), [], asyncio.Event()
    tasks = [asyncio.create_task(_hold(locks, "k", "t0", log, gate))]
    await until(lambda: log == ["t0 in"])
    for n in range(1, 4):
        tasks.append(asyncio.create_task(_hold(locks, "k", f"t{n}", log)))
        await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    assert [entry for entry in log if entry.endswith(" in")] == [
        "t0 in",
        "t1 in",
        "t2 in",
        "t3 in",
    ]


async def test_different_keys_do_not_wait_for_each_other() -> None:
    locks, log, gate = KeyedLocks(), [], asyncio.Event()
    blocked = asyncio.create_task(_hold(locks, "order-1", "one", log, gate))
    await until(lambda: log == ["one in"])
    await asyncio.wait_for(_hold(locks, "order-2", "two", log), 5)
    assert log == ["one in", "two in", "two out"]
    gate.set()
    await blocked


async def test_a_key_is_forgotten_once_nobody_holds_or_waits_for_it() -> None:
    locks, log, gate = KeyedLocks(), [], asyncio.Event()
    first = asyncio.create_task(_hold(locks, "k", "first", log, gate))
    await until(lambda: log == ["first in"])
    second = asyncio.create_task(_hold(locks, "k", "second", log))
    await asyncio.sleep(0)
    assert set(locks._locks) == {"k"}
    gate.set()
    await first
    assert set(locks._locks) == {"k"}  # the second still wants it
    await second
    assert locks._locks == {}


async def test_a_key_is_forgotten_when_its_holder_raises() -> None:
    locks = KeyedLocks()
    with pytest.raises(ValueError, match="boom"):
        async with locks.hold("k"):
            raise ValueError("boom")
    assert locks._locks == {}
    async with locks.hold("k"):  # and it can be taken again
        pass


async def test_a_cancelled_waiter_is_forgotten_and_the_lock_still_works() -> None:
    locks, log, gate = KeyedLocks(), [], asyncio.Event()
    holder = asyncio.create_task(_hold(locks, "k", "holder", log, gate))
    await until(lambda: log == ["holder in"])
    waiter = asyncio.create_task(_hold(locks, "k", "waiter", log))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.set()
    await holder
    assert locks._locks == {} and "waiter in" not in log
    await asyncio.wait_for(_hold(locks, "k", "later", log), 5)
    assert log[-2:] == ["later in", "later out"]


# --- Wakeup -------------------------------------------------------------------------------


async def test_a_wakeup_set_before_waiting_returns_at_once() -> None:
    wakeup = Wakeup()
    wakeup.set()
    await asyncio.wait_for(wakeup.wait(FOREVER), 5)


async def test_a_wakeup_wait_ends_after_at_most_seconds_when_not_set() -> None:
    await asyncio.wait_for(Wakeup().wait(0), 5)


async def test_a_cleared_wakeup_waits_until_set_again() -> None:
    wakeup = Wakeup()
    wakeup.set()
    wakeup.clear()
    waiting = asyncio.create_task(wakeup.wait(FOREVER))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done()
    wakeup.set()
    await asyncio.wait_for(waiting, 5)


def test_each_worker_has_its_own_wakeup() -> None:
    one, two = Wakeups(), Wakeups()
    assert len({id(one.inbox), id(one.outbox), id(one.actions)}) == 3
    assert one.outbox is not two.outbox


# --- drain_when_woken ---------------------------------------------------------------------


class Rounds:
    """A drain that records its rounds and can be told to fail or to block."""

    def __init__(self) -> None:
        self.count = 0
        self.failures = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> None:
        self.count += 1
        await asyncio.sleep(0)  # a round yields, as one reading the database would
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise RuntimeError(f"drain failed in round {self.count}")


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_loop_drains_at_once_and_again_when_woken() -> None:
    drain, wakeup = Rounds(), Wakeup()
    loop = asyncio.create_task(drain_when_woken(drain, wakeup, LOG, "drain", FOREVER))
    await until(lambda: drain.count == 1)
    for _ in range(20):
        await asyncio.sleep(0)
    assert drain.count == 1  # nothing more until woken (the poll is an hour away)
    wakeup.set()
    await until(lambda: drain.count == 2)
    for _ in range(20):
        await asyncio.sleep(0)
    assert drain.count == 2  # one wake, one round
    wakeup.set()
    await until(lambda: drain.count == 3)
    await _stop(loop)


async def test_a_wake_during_a_drain_is_not_lost() -> None:
    drain, wakeup = Rounds(), Wakeup()
    drain.gate = asyncio.Event()
    loop = asyncio.create_task(drain_when_woken(drain, wakeup, LOG, "drain", FOREVER))
    await until(lambda: drain.count == 1)
    wakeup.set()  # new work arrives while the round is running
    drain.gate.set()
    await until(lambda: drain.count == 2)
    await _stop(loop)


async def test_the_loop_polls_without_a_wake() -> None:
    drain = Rounds()
    loop = asyncio.create_task(drain_when_woken(drain, Wakeup(), LOG, "drain", 0))
    await until(lambda: drain.count >= 3)
    await _stop(loop)


async def test_a_failing_drain_is_logged_and_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    drain, wakeup = Rounds(), Wakeup()
    drain.failures = 1
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        loop = asyncio.create_task(drain_when_woken(drain, wakeup, LOG, "read the outbox", 0))
        await until(lambda: drain.count >= 2)
        await _stop(loop)
    records = [r for r in caplog.records if r.name == LOG.name]
    assert [r.getMessage() for r in records] == ["Could not read the outbox; trying again"]
    assert records[0].exc_info is not None
    assert str(records[0].exc_info[1]) == "drain failed in round 1"


async def test_cancelling_the_loop_while_it_waits_stops_it() -> None:
    drain, wakeup = Rounds(), Wakeup()
    loop = asyncio.create_task(drain_when_woken(drain, wakeup, LOG, "drain", FOREVER))
    await until(lambda: drain.count == 1)
    await _stop(loop)
    wakeup.set()
    for _ in range(20):
        await asyncio.sleep(0)
    assert drain.count == 1 and loop.cancelled()


async def test_cancelling_the_loop_mid_drain_stops_it_unlogged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    drain, wakeup = Rounds(), Wakeup()
    drain.gate = asyncio.Event()
    with caplog.at_level(logging.DEBUG, logger=LOG.name):
        loop = asyncio.create_task(drain_when_woken(drain, wakeup, LOG, "drain", 0))
        await until(lambda: drain.count == 1)
        await _stop(loop)
    assert drain.count == 1
    assert [r for r in caplog.records if r.name == LOG.name] == []


# --- SystemClock and Metrics --------------------------------------------------------------


async def test_the_system_clock_tells_wall_and_monotonic_time() -> None:
    clock = SystemClock()
    before = time.time_ns() // 1_000_000
    now = clock.now_ms()
    after = time.time_ns() // 1_000_000
    assert isinstance(now, int) and before <= now <= after
    first = clock.monotonic()
    await clock.sleep(0)
    assert clock.monotonic() >= first


def test_metrics_live_in_the_registry_they_are_given() -> None:
    one, two = Metrics(CollectorRegistry()), Metrics(CollectorRegistry())
    one.webhooks_delivered.inc()
    assert one.registry.get_sample_value("bridge_webhooks_delivered_total") == 1.0
    assert two.registry.get_sample_value("bridge_webhooks_delivered_total") == 0.0
    with pytest.raises(ValueError, match="Duplicated"):
        Metrics(one.registry)
