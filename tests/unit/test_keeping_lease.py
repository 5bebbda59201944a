"""`keeping_lease` (bridge.runtime.workers): a lease renewed every so often while its work
lasts, a failed renewal logged without stopping the work, and no renewal once it ended."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bridge.runtime.workers import keeping_lease

EVERY = 0.01  # seconds: the renewals are timed by the event loop


async def test_the_lease_is_renewed_while_the_work_lasts_and_never_after() -> None:
    renewals = 0
    third = asyncio.Event()

    async def renew() -> None:
        nonlocal renewals
        renewals += 1
        if renewals == 3:
            third.set()

    async def work() -> str:
        await third.wait()  # lasts three renewals
        return "done"

    log = logging.getLogger("test")
    assert await keeping_lease(work(), renew, EVERY, log, "the work") == "done"
    assert renewals == 3
    await asyncio.sleep(EVERY * 5)  # a timer left behind would renew by now
    assert renewals == 3


async def test_a_failed_renewal_is_logged_and_the_work_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts = 0
    again = asyncio.Event()

    async def renew() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 2:
            again.set()
        raise ConnectionError("database unreachable")

    async def work() -> int:
        await again.wait()  # renewed again after the first failed
        return 7

    log = logging.getLogger("test")
    assert await keeping_lease(work(), renew, EVERY, log, "the work") == 7
    assert "Could not renew the lease of the work" in caplog.text


async def test_work_that_ends_at_once_is_never_renewed() -> None:
    renewals = 0

    async def renew() -> None:
        nonlocal renewals
        renewals += 1

    async def work() -> None:
        return None

    await keeping_lease(work(), renew, EVERY, logging.getLogger("test"), "the work")
    await asyncio.sleep(EVERY * 5)
    assert renewals == 0
