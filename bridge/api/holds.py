"""The legal holds routes' bodies and answers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from policy.retention import Hold

from .models import _printable, _Request, timestamp

Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=1000),
    AfterValidator(_printable),
]


class HoldRequest(_Request):
    reason: Reason = Field(description="Why the rooms must be kept (a claim, a request): audited.")


class ReleaseRequest(_Request):
    reason: Reason | None = Field(None, description="Why the hold ends: audited.")


class HoldOut(BaseModel):
    transaction_id: str
    kind: Literal["manual", "dispute"] = Field(
        description="manual: placed through this API, until released; dispute: one of the"
        " transaction's disputes, while open and retention.hold_after_resolution_days after."
    )
    dispute_id: str | None
    reason: str | None
    placed_by: str | None = Field(description="For a manual hold: who placed it.")
    since: datetime
    until: datetime | None = Field(description="null: until released or resolved.")


class TransactionHoldsOut(BaseModel):
    transaction_id: str
    held: bool = Field(description="Whether anything holds the transaction's rooms now.")
    holds: list[HoldOut]
    purged_at: datetime | None = Field(
        description="When its room's removal was announced (a hold placed after it cannot"
        " bring the room back; it still stops the parties' erasure)."
    )


class HoldsOut(BaseModel):
    holds: list[HoldOut] = Field(description="Manual holds, then those of disputes.")


def hold_out(hold: Hold) -> HoldOut:
    return HoldOut(
        transaction_id=hold.transaction_id,
        kind=hold.kind,  # type: ignore[arg-type]
        dispute_id=hold.dispute_id,
        reason=hold.reason,
        placed_by=hold.placed_by,
        since=timestamp(hold.since),  # type: ignore[arg-type]
        until=timestamp(hold.until),
    )


def transaction_holds_out(
    transaction_id: str, holds: list[Hold], purged_at: int | None
) -> TransactionHoldsOut:
    return TransactionHoldsOut(
        transaction_id=transaction_id,
        held=bool(holds),
        holds=[hold_out(hold) for hold in holds],
        purged_at=timestamp(purged_at),
    )
