"""The bot's notices in transaction rooms: plain text and HTML, every value escaped."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from html import escape

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


def transaction_notice(milestone: Milestone, title: str, outcome: Outcome | None) -> Notice:
    if milestone is Milestone.CREATED:
        text = "This is the chat for “{}”. It opens once the marketplace confirms payment."
    elif milestone is Milestone.PAID:
        text = "Payment for “{}” is confirmed: the chat is open."
    else:
        assert outcome is not None, "a closed transaction has an outcome"
        text = "“{}” is " + OUTCOME_WORDS[outcome] + ". This chat is now a read-only archive."
    return Notice(body=text.format(title), html=text.format(f"<b>{escape(title)}</b>"))
