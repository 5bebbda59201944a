"""`room_by_room` (bridge.runtime.workers): items handled rooms side by side, each room's in
the order given, at most so many rooms at once, and a failure raised only once every room
has run to its end."""

from __future__ import annotations

import asyncio

import pytest

from bridge.runtime.workers import room_by_room

# (room, item): the follow-ups' and the planned actions' rows, reduced to what matters here
Item = tuple[str, str]


def room_of(item: Item) -> str:
    return item[0]


async def test_each_rooms_items_are_handled_in_the_order_given() -> None:
    handled: list[Item] = []

    async def handle(item: Item) -> None:
        await asyncio.sleep(0)  # let the other rooms interleave
        handled.append(item)

    items = [("a", "1"), ("b", "1"), ("a", "2"), ("c", "1"), ("b", "2"), ("a", "3")]
    await room_by_room(items, room_of, handle, 8)
    assert sorted(handled) == sorted(items)
    for room in "abc":
        assert [i for i in handled if i[0] == room] == [i for i in items if i[0] == room]


async def test_a_room_waiting_does_not_hold_the_others() -> None:
    last_room_done = asyncio.Event()

    async def handle(item: Item) -> None:
        if item == ("a", "1"):  # the first room waits for the last one's turn
            await last_room_done.wait()
        elif item == ("c", "1"):
            last_room_done.set()

    async with asyncio.timeout(10):  # one room at a time would wait here for ever
        await room_by_room([("a", "1"), ("b", "1"), ("c", "1")], room_of, handle, 8)


async def test_no_more_rooms_than_the_concurrency_run_at_once() -> None:
    running, most = 0, 0

    async def handle(item: Item) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        for _ in range(3):
            await asyncio.sleep(0)
        running -= 1

    await room_by_room([(f"room{n}", "1") for n in range(10)], room_of, handle, 3)
    assert most == 3


async def test_a_failing_room_stops_no_other_and_its_failure_is_raised_after() -> None:
    handled: list[Item] = []

    async def handle(item: Item) -> None:
        if item == ("a", "1"):
            raise RuntimeError("a bug")
        await asyncio.sleep(0)
        handled.append(item)

    items = [("a", "1"), ("a", "2"), ("b", "1"), ("b", "2")]
    with pytest.raises(RuntimeError, match="a bug"):
        await room_by_room(items, room_of, handle, 8)
    assert handled == [("b", "1"), ("b", "2")]  # the failed room's later items wait


async def test_nothing_to_handle_returns_at_once() -> None:
    async def handle(item: Item) -> None:
        raise AssertionError("nothing to handle")

    await room_by_room([], room_of, handle, 8)
