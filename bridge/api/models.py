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
from pydantic.functional_validators import AfterValidator
from yarl import URL

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


Links = dict[str, str]
LINKS_DESCRIPTION = (
    "Deep links to the room: matrix_to (any Matrix client) and, with identity.web_client_url,"
    " web (Element Web)."
)


def is_market_id(value: str) -> bool:
    return re.fullmatch(ID_PATTERN, value) is not None


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _printable(value: str) -> str:
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise ValueError("must not contain control characters")
    return value


DisplayName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_printable),
    Field(description="Shown to the other party (contact details in it are masked)."),
]


def _fetchable(value: str) -> str:
    """A URL the avatar fetcher can request: read as aiohttp reads it (yarl), with a host
    (a bracket left open, say, is not one)."""
    try:
        host = URL(value).host
    except ValueError:
        host = None
    if not host:
        raise ValueError("must be an https URL with a host")
    return value


AvatarUrl = Annotated[
    str,
    AfterValidator(_fetchable),
    Field(
        max_length=2000,
        pattern=r"^https://[^\s]+$",
        description="An https URL of a JPEG, PNG, GIF or WebP image (identity.avatar_max_bytes"
        " at most), fetched once per change and stored in the homeserver's media repository;"
        " null: no avatar.",
    ),
]
Email = Annotated[
    str,
    Field(
        max_length=254,
        pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        description="Kept for the user's export; never shown to the other party.",
    ),
]


def _matrix_user_id(value: str | None) -> str | None:
    if value is not None and not is_matrix_user_id(value):
        raise ValueError("must be a Matrix user ID like @alice:example.org")
    return value


MatrixId = Annotated[
    str | None,
    AfterValidator(_matrix_user_id),
    Field(
        description="An account of the user's own on an allowed server, bound for good; leave"
        " it out and the bridge makes a managed account."
    ),
]


class UserIn(_Request):
    """A marketplace user as the marketplace says they are now (the whole profile)."""

    display_name: DisplayName | None = None
    avatar_url: AvatarUrl | None = None
    email: Email | None = None
    matrix_id: MatrixId = None


class PartyIn(_Request):
    """A party: its marketplace user id alone once the user exists, or with a profile (which
    upserts the user, as PUT /users/{user_id} does) or a Matrix ID of their own."""

    user_id: MarketId
    matrix_id: MatrixId = None
    display_name: DisplayName | None = None
    avatar_url: AvatarUrl | None = None
    email: Email | None = None

    @property
    def has_profile(self) -> bool:
        return any(v is not None for v in (self.display_name, self.avatar_url, self.email))


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
        if self.buyer.matrix_id and self.buyer.matrix_id == self.seller.matrix_id:
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
    links: Links = Field(description=LINKS_DESCRIPTION)
    created_at: datetime
    resolved_at: datetime | None
    purged_at: datetime | None = Field(
        description="When its room's removal for retention was announced (room.purged)."
    )
    transcript_hash: str | None = Field(
        description="The final hash of the transcript stored before the room was removed."
    )


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
    membership: Literal["invite_blocked"] | None = Field(
        None,
        description="invite_blocked: the account refuses invitations (M_INVITE_BLOCKED), so it"
        " is not in the room; null: invited or joined as usual.",
    )


class UserOut(BaseModel):
    user_id: str
    matrix_id: str
    managed: bool = Field(description="True: an account the bridge made and acts for.")
    display_name: str | None
    avatar_url: str | None = Field(description="The URL the marketplace gave.")
    avatar_mxc: str | None = Field(description="Its copy in the homeserver's media repository.")
    email: str | None
    suspended: bool
    erased: bool = Field(description="Erased for good: the profile is gone, the ids stay.")
    created_at: datetime
    updated_at: datetime | None


class SessionRequest(_Request):
    ttl_seconds: int | None = Field(
        None,
        ge=1,
        description="How long the session lasts (default identity.session_seconds;"
        " at most identity.max_session_seconds).",
    )


class SessionOut(BaseModel):
    matrix_id: str
    access_token: str = Field(description="For this user's Matrix client alone; keep it secret.")
    device_id: str
    homeserver_url: str = Field(description="Where the client connects: the client gateway.")
    expires_at: datetime = Field(description="The homeserver refuses the token from then on.")


class SessionInfoOut(BaseModel):
    device_id: str
    created_at: datetime
    expires_at: datetime


class SessionsOut(BaseModel):
    user_id: str
    sessions: list[SessionInfoOut]


class ReasonRequest(_Request):
    reason: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, max_length=1000),
            AfterValidator(_printable),
        ]
        | None
    ) = Field(None, description="Why: kept in the audit trail and the webhook.")


class UserExportOut(BaseModel):
    format: Literal["marketplace-user-export/1"]
    generated_at: str
    user: UserOut
    rooms: list[ChatOut] = Field(description="The user's chat list, as GET .../rooms shows it.")
    messages: list[dict] = Field(
        description="Every room event the user sent, as the bridge stored it (tombstones once"
        " erased)."
    )
    masked_originals: list[dict] = Field(
        description="What the user wrote before the homeserver masked its contact details."
    )
    sessions: list[SessionInfoOut] = Field(description="Every session handed out, revoked too.")
    audit: list[dict] = Field(description="Audit entries about the user or by them.")


class TransactionOut(BaseModel):
    transaction_id: str
    title: str
    state: TransactionState
    outcome: Outcome | None
    access: Access = Field(description="Who may post in the room now.")
    room_id: str | None
    links: Links = Field(description=LINKS_DESCRIPTION)
    buyer: PartyOut
    seller: PartyOut
    created_at: datetime
    paid_at: datetime | None
    closed_at: datetime | None
    legal_hold: bool = Field(
        description="Whether a manual legal hold keeps its rooms (disputes hold them too:"
        " GET .../hold lists every hold)."
    )
    purged_at: datetime | None = Field(
        description="When its room's removal for retention was announced (room.purged)."
    )
    transcript_hash: str | None = Field(
        description="The final hash of the transcript stored before the room was removed."
    )


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
