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


def decide_payment(state: TransactionState, outcome: Outcome | None) -> Transition:
    if state is TransactionState.AWAITING_PAYMENT:
        return Transition(TransactionState.PAID, None, changed=True)
    if state is TransactionState.PAID:
        return Transition(state, None, changed=False)
    raise InvalidTransition(f"the transaction is closed ({outcome}); payment cannot be recorded")


def decide_close(
    state: TransactionState, current: Outcome | None, requested: Outcome
) -> Transition:
    if state is not TransactionState.CLOSED:
        return Transition(TransactionState.CLOSED, requested, changed=True)
    if current is requested:
        return Transition(state, current, changed=False)
    raise InvalidTransition(
        f"the transaction is already closed as {current}; it cannot close as {requested}"
    )


def transaction_access(state: TransactionState) -> Access:
    """The transaction room's access for a transaction state (no dispute, no override)."""
    return {
        TransactionState.AWAITING_PAYMENT: Access.LOCKED,
        TransactionState.PAID: Access.OPEN,
        TransactionState.CLOSED: Access.ARCHIVED,
    }[state]
