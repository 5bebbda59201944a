"""The transition loop: decide a change on the latest record, apply it, and decide again when
another bridge process changed the record in between.

    load -> decide (policy; InvalidTransition -> InvalidState) -> nothing to do? done
         -> apply (a conditional write: None when the record changed meanwhile) -> again
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from policy.states import InvalidTransition

from .errors import InvalidState

R = TypeVar("R")
C = TypeVar("C")


async def settle(
    load: Callable[[], Awaitable[R]],
    decide: Callable[[R], C | None],
    apply: Callable[[R, C], Awaitable[R | None]],
) -> tuple[R, bool]:
    """The record once the decided change holds, and whether this call made it."""
    while True:
        record = await load()
        try:
            change = decide(record)
        except InvalidTransition as e:
            raise InvalidState(str(e)) from None
        if change is None:
            return record, False
        applied = await apply(record, change)
        if applied is not None:
            return applied, True
