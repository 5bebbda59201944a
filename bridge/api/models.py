"""The marketplace API's request and response models (also the source of its OpenAPI)."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from appservice.identifiers import is_matrix_user_id
from policy.states import Access, DisputeState, Outcome, TransactionState

ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
MarketId = Annotated[
    str,
    Field(
        pattern=ID_PATTERN,
        description="A marketplace id: 1 to 128 of A-Z a-z 0-9 . _ : -, compared exactly.",
    ),
]


def is_market_id(value: str) -> bool:
    return re.fullmatch(ID_PATTERN, value) is not None


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartyIn(_Request):
    user_id: MarketId
    matrix_id: str = Field(description="The party's Matrix user ID, e.g. @alice:example.org.")

    @field_validator("matrix_id")
    @classmethod
    def _valid_matrix_id(cls, value: str) -> str:
        if not is_matrix_user_id(value):
            raise ValueError("must be a Matrix user ID like @alice:example.org")
        return value


class CreateTransactionRequest(_Request):
    transaction_id: MarketId
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    buyer: PartyIn
    seller: PartyIn

    @field_validator("title")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
            raise ValueError("must not contain control characters")
        return value

    @model_validator(mode="after")
    def _two_people(self) -> CreateTransactionRequest:
        if self.buyer.user_id == self.seller.user_id:
            raise ValueError("buyer and seller must be different marketplace users")
        if self.buyer.matrix_id == self.seller.matrix_id:
            raise ValueError("buyer and seller must have different Matrix IDs")
        return self


class PaymentRequest(_Request):
    """No fields: the call itself reports the payment."""


class CloseTransactionRequest(_Request):
    outcome: Outcome


class CreateDisputeRequest(_Request):
    dispute_id: MarketId
    transaction_id: MarketId
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
    opened_by: Literal["buyer", "seller", "marketplace"]

    @field_validator("reason")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value if ch != "\n"):
            raise ValueError("must not contain control characters")
        return value


class ResolveDisputeRequest(_Request):
    decision: str = Field(min_length=1, max_length=64, description="One of disputes.decisions.")
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)] = ""


class DisputeOut(BaseModel):
    dispute_id: str
    transaction_id: str
    state: DisputeState
    access: Access = Field(description="Who may post in the dispute room now.")
    reason: str
    opened_by: str
    decision: str | None
    note: str | None
    resolved_by: str | None
    source: str | None = Field(description="api or matrix: where it was resolved.")
    room_id: str | None
    created_at: datetime
    resolved_at: datetime | None


class ReplayRequest(_Request):
    """Which dead letters to queue again: by ids, by room, or (empty body) all of them."""

    ids: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None, max_length=1000
    )
    room_id: str | None = Field(None, min_length=1, max_length=255)


class ReplayOut(BaseModel):
    replayed: int


class DeadLetterOut(BaseModel):
    id: str
    type: str
    room_id: str
    attempts: int
    last_error: str | None
    created_at: datetime
    body: dict


class DeadLettersOut(BaseModel):
    failed: list[DeadLetterOut]


class ChatOut(BaseModel):
    kind: Literal["transaction", "dispute"]
    transaction_id: str
    dispute_id: str | None
    title: str
    role: str = Field(description="The user's role in the room: buyer or seller.")
    state: str = Field(description="The transaction's state, or the dispute's.")
    access: Access
    room_id: str | None
    last_message: str | None = Field(description="Preview of the latest message.")
    last_message_at: datetime | None
    unread: int = Field(description="Messages from others after the user's read position.")


class ChatListOut(BaseModel):
    user_id: str
    rooms: list[ChatOut]


class PartyOut(BaseModel):
    user_id: str
    matrix_id: str


class TransactionOut(BaseModel):
    transaction_id: str
    title: str
    state: TransactionState
    outcome: Outcome | None
    access: Access = Field(description="Who may post in the room now.")
    room_id: str | None
    buyer: PartyOut
    seller: PartyOut
    created_at: datetime
    paid_at: datetime | None
    closed_at: datetime | None


class ErrorOut(BaseModel):
    errcode: str = Field(examples=["MARKET_INVALID_PARAM"])
    error: str
    fields: list[str] | None = Field(None, description="The fields a 409 conflict is about.")
    problems: list[dict] | None = Field(None, description="Each invalid parameter, on 400.")


def timestamp(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


class AuditEntryOut(BaseModel):
    id: int = Field(description="Grows with every entry; pass the last one as `after`.")
    at: datetime
    actor: str = Field(description="Who: the bot's or an admin's Matrix ID, or marketplace.")
    action: str = Field(examples=["member.removed", "message.redacted", "command"])
    outcome: str = Field(description="done, refused or failed.")
    room_id: str | None
    transaction_id: str | None
    dispute_id: str | None
    subject: str | None = Field(description="Whom or what it concerned: a user or an event.")
    reason: str | None = Field(description="Why: the rule, the cause, the refusal.")
    detail: str


class AuditPageOut(BaseModel):
    entries: list[AuditEntryOut]
    next: int | None = Field(description="`after` for the next page; null on the last one.")


class TranscriptOut(BaseModel):
    """A room's transcript; each entry carries the hash of the previous one (see docs/api.md)."""

    format: Literal["marketplace-transcript/1"]
    room_id: str
    room_kind: Literal["transaction", "dispute"]
    transaction_id: str
    dispute_id: str | None
    generated_at: str
    entry_count: int
    entries: list[dict]
    final_hash: str
