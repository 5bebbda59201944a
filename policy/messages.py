"""What a message's content holds, read alike by the rules, notifications and transcripts."""

from __future__ import annotations

# The spec's media message types. A sticker is an event type (m.sticker), not a msgtype:
# the content rules judge it as any event that is not a message (policy.rules.judge_event).
MEDIA_MSGTYPES = frozenset({"m.image", "m.file", "m.video", "m.audio"})


def strip_reply_fallback(body: str) -> str:
    """The body without the quote of another message that a reply's fallback puts first
    (its leading lines starting with '>')."""
    lines = body.split("\n")
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    return "\n".join(lines)
