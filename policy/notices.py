"""The bot's notices in transaction and dispute rooms: plain text and HTML, every value
escaped."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from html import escape

from .ids import RoomId, TransactionId, UserId
from .states import Outcome


class Milestone(StrEnum):
    """A moment the bot announces once in a transaction room, in this order."""

    CREATED = "created"
    PAID = "paid"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Notice:
    body: str
    html: str

    def content(self) -> dict[str, str]:
        return {
            "msgtype": "m.notice",
            "body": self.body,
            "format": "org.matrix.custom.html",
            "formatted_body": self.html,
        }


OUTCOME_WORDS = {
    Outcome.COMPLETED: "completed",
    Outcome.CANCELLED: "cancelled",
    Outcome.REFUNDED: "refunded",
}


# Why a room has no end-to-end encryption (Element warns of it in every room): said in each
# room's first notice. No value in it, so the same text serves plain and HTML bodies.
NOT_ENCRYPTED = (
    "This chat is not end-to-end encrypted, on purpose: the marketplace's moderators can read "
    "it to protect both parties, so that a dispute can be settled with the whole conversation "
    "at hand."
)
DISPUTE_NOT_ENCRYPTED = (
    "This chat and the transaction's are not end-to-end encrypted, on purpose: the moderators "
    "can read them to protect buyer and seller alike, so that this dispute can be settled with "
    "the whole conversation at hand."
)


def transaction_notice(milestone: Milestone, title: str, outcome: Outcome | None) -> Notice:
    if milestone is Milestone.CREATED:
        text = (
            "This is the chat for “{}”. It opens once the marketplace confirms payment. "
            + NOT_ENCRYPTED
        )
    elif milestone is Milestone.PAID:
        text = "Payment for “{}” is confirmed: the chat is open."
    else:
        assert outcome is not None, "a closed transaction has an outcome"
        text = (
            "“{}” is "
            + OUTCOME_WORDS[outcome]
            + ": the deal is closed, and this chat is now a read-only archive."
        )
    return Notice(body=text.format(title), html=text.format(f"<b>{escape(title)}</b>"))


def dispute_opened_notice(
    title: str, transaction_id: TransactionId, reason: str, opened_by: str
) -> Notice:
    text = (
        "A dispute about “{title}” (transaction {txn}) was opened by the {by}. Reason: {reason} "
        "The marketplace's moderators are here. " + DISPUTE_NOT_ENCRYPTED
    )
    if not reason.endswith((".", "!", "?", "…")):
        reason += "."  # a sentence of its own before the next
    plain = text.format(title=title, txn=transaction_id, by=opened_by, reason=reason)
    html = text.format(
        title=f"<b>{escape(title)}</b>",
        txn=escape(transaction_id),
        by=escape(opened_by),
        reason=escape(reason),
    )
    return Notice(body=plain, html=html)


def dispute_resolved_notice(decision: str, note: str) -> Notice:
    text = "The dispute is resolved: {decision}.{note} This chat is now a read-only archive."
    if note and not note.endswith((".", "!", "?", "…")):
        note += "."  # a sentence of its own before the next
    plain = text.format(decision=decision, note=f" {note}" if note else "")
    html = text.format(decision=escape(decision), note=f" {escape(note)}" if note else "")
    return Notice(body=plain, html=html)


def dispute_link_notice(dispute_room_id: RoomId) -> Notice:
    link = f"https://matrix.to/#/{dispute_room_id}"
    body = f"A dispute is open; it continues in its own room: {link}"
    html = f'A dispute is open; it continues in <a href="{escape(link)}">its own room</a>.'
    return Notice(body=body, html=html)


def warning_notice(
    user_id: UserId, reasons: list[str], redacted: bool, muted_for_s: int
) -> Notice:
    """What the bot tells a party whose message broke a rule (never the message itself)."""
    what = "your message was removed" if redacted else "please keep to the marketplace's rules"
    muted = f" You are muted for {_duration(muted_for_s)}." if muted_for_s else ""
    text = "{user}: {what}: {reasons}.{muted}"
    link = f"https://matrix.to/#/{user_id}"
    plain = text.format(user=user_id, what=what, reasons="; ".join(reasons), muted=muted)
    html = text.format(
        user=f'<a href="{escape(link)}">{escape(user_id)}</a>',
        what=what,
        reasons="; ".join(escape(reason) for reason in reasons),
        muted=muted,
    )
    return Notice(body=plain, html=html)


def violation_alert(user_id: UserId, where: str, rules: list[str], actions: list[str]) -> str:
    """The moderation room's alert (plain text; the announcer escapes it)."""
    return (
        f"Policy: {user_id} broke {', '.join(rules)} in {where}; the bot did: "
        f"{', '.join(actions)}."
    )


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def nudge_notice(seller: UserId, waited_s: int) -> Notice:
    """The bot's one polite reminder to a seller who has not answered the buyer."""
    text = (
        "{seller}: the buyer has been waiting {waited} for your answer. A short reply, even "
        "to say when you can answer in full, keeps the deal moving."
    )
    link = f"https://matrix.to/#/{seller}"
    waited = _duration(_rounded(waited_s))
    return Notice(
        body=text.format(seller=seller, waited=waited),
        html=text.format(seller=f'<a href="{escape(link)}">{escape(seller)}</a>', waited=waited),
    )


def _rounded(seconds: int) -> int:
    """To the hour past a few hours, to the minute past a few minutes: said, not measured."""
    if seconds >= 3 * 3600:
        return round(seconds / 3600) * 3600
    if seconds >= 3 * 60:
        return round(seconds / 60) * 60
    return seconds
