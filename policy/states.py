"""Transaction states, their transitions, and the room access each state implies.

    awaiting_payment --payment--> paid --close(outcome)--> closed
            \\------------------close(outcome)-----------/

Transitions are decided here and applied by the bridge; a repeat of the transition that already
happened is answered unchanged, so the marketplace can retry any call safely.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TransactionState(StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    CLOSED = "closed"


class Outcome(StrEnum):
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class Access(StrEnum):
    """Who may post in a room (see `policy.rooms.plan_room` for the power levels)."""

    LOCKED = "locked"  # waiting for payment: nobody but the bot and admins
    OPEN = "open"  # parties talk
    FROZEN = "frozen"  # a dispute is open: admins only
    ARCHIVED = "archived"  # closed: read-only for everyone


@dataclass(frozen=True, slots=True)
class Transition:
    """What a requested transition does: ``changed`` False means it had already happened."""

    state: TransactionState
    outcome: Outcome | None
    changed: bool


class InvalidTransition(Exception):
    """The transition is not allowed from the current state; the message says why."""


class DisputeState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


def decide_payment(
    state: TransactionState, outcome: Outcome | None, dispute_open: bool = False
) -> Transition:
    if dispute_open:
        raise InvalidTransition("a dispute is open; resolve it first")
    if state is TransactionState.AWAITING_PAYMENT:
        return Transition(TransactionState.PAID, None, changed=True)
    if state is TransactionState.PAID:
        return Transition(state, None, changed=False)
    raise InvalidTransition(f"the transaction is closed ({outcome}); payment cannot be recorded")


def decide_close(
    state: TransactionState,
    current: Outcome | None,
    requested: Outcome,
    dispute_open: bool = False,
) -> Transition:
    if dispute_open:
        raise InvalidTransition("a dispute is open; resolve it first")
    if state is not TransactionState.CLOSED:
        return Transition(TransactionState.CLOSED, requested, changed=True)
    if current is requested:
        return Transition(state, current, changed=False)
    raise InvalidTransition(
        f"the transaction is already closed as {current}; it cannot close as {requested}"
    )


def decide_open_dispute(state: TransactionState, open_dispute: str | None) -> None:
    """A dispute may open on a paid transaction without another open dispute."""
    if state is not TransactionState.PAID:
        raise InvalidTransition(f"a dispute needs a paid transaction; this one is {state}")
    if open_dispute is not None:
        raise InvalidTransition(f"dispute {open_dispute} is already open")


def decide_resolve(state: DisputeState, current: str | None, decision: str) -> bool:
    """Whether resolving changes anything (False: resolved the same way already)."""
    if state is DisputeState.OPEN:
        return True
    if current == decision:
        return False
    raise InvalidTransition(f"the dispute is already resolved as {current}")


def dispute_access(state: DisputeState) -> Access:
    return Access.OPEN if state is DisputeState.OPEN else Access.ARCHIVED


def transaction_access(
    state: TransactionState,
    dispute_open: bool = False,
    freeze_on_dispute: bool = True,
    override: Access | None = None,
) -> Access:
    """The transaction room's access: from its state, frozen while a dispute is open, or as an
    admin's lock/unlock says until the marketplace's next transition; closed is closed."""
    if state is TransactionState.CLOSED:
        return Access.ARCHIVED
    if override is not None:
        return override
    if state is TransactionState.PAID and dispute_open and freeze_on_dispute:
        return Access.FROZEN
    return {
        TransactionState.AWAITING_PAYMENT: Access.LOCKED,
        TransactionState.PAID: Access.OPEN,
        TransactionState.CLOSED: Access.ARCHIVED,
    }[state]
