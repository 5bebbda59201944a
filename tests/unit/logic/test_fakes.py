"""The fakes stay true to what they stand in for."""

from __future__ import annotations

import inspect

import pytest

from appservice.matrix import MatrixBot, MatrixError

from .fakes import FakeClock, FakeMatrix

PUBLIC = sorted(
    name
    for name, member in inspect.getmembers(MatrixBot, inspect.iscoroutinefunction)
    if not name.startswith("_")
)


def test_the_fake_has_every_call_of_the_bot() -> None:
    assert "create_room" in PUBLIC and "send_message" in PUBLIC  # the list is not empty


@pytest.mark.parametrize("name", PUBLIC)
def test_each_fake_call_takes_what_the_bot_takes(name: str) -> None:
    real = inspect.signature(getattr(MatrixBot, name))
    fake = inspect.signature(getattr(FakeMatrix, name))
    assert list(fake.parameters) == list(real.parameters), name
    for parameter in real.parameters.values():
        assert fake.parameters[parameter.name].kind == parameter.kind, (name, parameter.name)
        assert fake.parameters[parameter.name].default == parameter.default, (name, parameter)


async def test_a_taken_alias_is_refused_as_synapse_does() -> None:
    matrix = FakeMatrix()
    await matrix.create_room(room_version="12", alias_localpart="a")
    with pytest.raises(MatrixError) as refused:
        await matrix.create_room(room_version="12", alias_localpart="a")
    assert refused.value.errcode == "M_ROOM_IN_USE"


async def test_a_repeated_txn_id_is_the_same_event() -> None:
    matrix = FakeMatrix()
    room = matrix.make_room()
    first = await matrix.send_message(room, "m.room.message", {"body": "a"}, "t1")
    assert await matrix.send_message(room, "m.room.message", {"body": "a"}, "t1") == first
    assert len(matrix.messages_in(room)) == 1


async def test_sleeping_moves_the_fake_clock_at_once() -> None:
    clock = FakeClock()
    start, mono = clock.now_ms(), clock.monotonic()
    await clock.sleep(2.5)
    assert (clock.now_ms() - start, clock.monotonic() - mono) == (2500, 2.5)
