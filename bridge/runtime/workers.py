"""The loop every background worker runs, and the wake-ups that start a round early.

add rows (inbox events, outbox rows, planned actions) -> commit -> wakeups.<worker>.set()
worker: drain everything due -> wait for a wake-up (rows other bridge processes add, and
        work that comes due with time, are found once a second by `DueWatch`, which wakes
        the worker then)

Work a worker takes under a lease (a row's `lease_until`, so one process does it) runs inside
`keeping_lease`: the lease is short and renewed while the work lasts, so a process that dies
mid-work holds it a few seconds, not for the longest the work could take.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


class Wakeup:
    """Tells one worker there is new work for it, and where if the waker knows."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._rooms: set[str] = set()
        self._anywhere = True  # until the first take: whatever waits from before

    def set(self, rooms: Iterable[str] | None = None) -> None:
        """New work: in these ``rooms`` only, or (None) anywhere."""
        if rooms is None:
            self._anywhere = True
        else:
            self._rooms.update(rooms)
        self._event.set()

    def take(self) -> set[str] | None:
        """The rooms named since the last take (None: work may be anywhere); a worker that
        reads them looks at the rest on its own schedule."""
        rooms, anywhere = self._rooms, self._anywhere
        self._rooms, self._anywhere = set(), False
        return None if anywhere else rooms

    async def wait(self, at_most: float | None = None) -> None:
        """Until set, or ``at_most`` seconds (None: until set)."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
        # cancellation that stops the worker, and closing the bridge would wait forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most):
                await self._event.wait()

    def clear(self) -> None:
        self._event.clear()


@dataclass(frozen=True, slots=True)
class Wakeups:
    """One wake-up per worker, shared by everything that adds work for it."""

    inbox: Wakeup = field(default_factory=Wakeup)
    outbox: Wakeup = field(default_factory=Wakeup)
    actions: Wakeup = field(default_factory=Wakeup)
    follow_ups: Wakeup = field(default_factory=Wakeup)


async def drain_when_woken(
    drain: Callable[[], Awaitable[None]],
    wakeup: Wakeup,
    log: logging.Logger,
    what: str,
    poll_seconds: float | None = None,
) -> None:
    """Run ``drain`` until cancelled, again each time ``wakeup`` is set (or every
    ``poll_seconds``); a failure is logged and tried again on the next round."""
    while True:
        wakeup.clear()
        try:
            await drain()
        except Exception:
            log.exception("Could not %s; trying again", what)
        await wakeup.wait(poll_seconds)


async def room_by_room(
    items: Iterable[T],
    room_of: Callable[[T], str],
    handle: Callable[[T], Awaitable[object]],
    concurrency: int,
) -> None:
    """``handle`` each item: up to ``concurrency`` rooms side by side (their work waits mostly
    on the homeserver), each room's items one after another in the order given. Every room
    runs to its end, whatever another's failure; then the first failure is raised."""
    rooms: dict[str, list[T]] = {}
    for item in items:
        rooms.setdefault(room_of(item), []).append(item)
    limit = asyncio.Semaphore(concurrency)

    async def in_order(room: list[T]) -> None:
        async with limit:
            for item in room:
                await handle(item)

    ended = await asyncio.gather(*map(in_order, rooms.values()), return_exceptions=True)
    for outcome in ended:
        if isinstance(outcome, BaseException):
            raise outcome


async def keeping_lease(
    work: Awaitable[T],
    renew: Callable[[], Awaitable[object]],
    every: float,
    log: logging.Logger,
    what: str,
) -> T:
    """``work``, with ``renew`` called every ``every`` seconds until it ends (and never after:
    the caller records the outcome, releasing the lease, once this returns). A renewal that
    fails is logged and the work goes on: the lease may lapse, and the work be done twice.
    Most work (a webhook) ends long before its first renewal: a timer costs it less than a
    task waiting beside it would. Timed by the event loop, not the injected clock: a test
    clock that moves when slept on would renew in a tight loop."""
    loop = asyncio.get_running_loop()
    renewal: asyncio.Task | None = None
    ended = False

    def due() -> None:
        nonlocal renewal
        renewal = loop.create_task(renewing())

    async def renewing() -> None:
        nonlocal timer
        if ended:  # the work ended after the timer fired: no renewal after it
            return
        try:
            await renew()
        except Exception as e:
            log.warning("Could not renew the lease of %s: %s", what, e)
        if not ended:
            timer = loop.call_later(every, due)

    timer = loop.call_later(every, due)
    try:
        return await work
    finally:
        ended = True
        timer.cancel()
        if renewal is not None:
            await renewal  # one under way: the caller's outcome comes after it
