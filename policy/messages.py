"""What a room event's content shows people, read alike by the rules, notifications and
transcripts.

`rendered_texts` collects every text a client may render of an event: the body (a reply's
quote of the other message left out, when the event really replies), the HTML body as text
(its text, and the targets and titles of its links and images), the new content of an edit
wherever it appears, file names and captions, poll questions and answers, location
descriptions, a reaction's key, and any other string, number or key name a sender chose. Only
identifiers in their grammar and declared numbers are skipped (`policy.fields`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from html.parser import HTMLParser
from typing import Any

from .fields import as_text, is_declared_number, is_identifier, name_is_text

# The spec's media message types. A sticker is an event type (m.sticker), not a msgtype:
# the content rules judge it as any event that is not a message (policy.rules.judge_event).
MEDIA_MSGTYPES = frozenset({"m.image", "m.file", "m.video", "m.audio"})

MAX_DEPTH = 32  # deeper content is malformed: no client renders it, and it costs to walk
_FALLBACK = re.compile(r"(?:>[^\n]*\n)+\n")  # the spec's reply fallback: quoted lines, a blank
_MX_REPLY = re.compile(r"<mx-reply>.*?</mx-reply>", re.DOTALL | re.IGNORECASE)
_MATRIX_TO = "https://matrix.to/#/"
# Random identifiers (rooms, events) read as text hold digit runs that look like numbers.
_RANDOM_ID = re.compile(r"[!$][^\s/?]*/?")


def strip_reply_fallback(body: str) -> str:
    """The body without the quote of another message that a reply's fallback puts first
    (its leading lines starting with '>', up to the first blank line)."""
    match = _FALLBACK.match(body)
    return body[match.end() :] if match else body


def replies(content: Mapping[str, Any]) -> bool:
    """Whether the event really replies to another (only then is a fallback quote skipped)."""
    relates = content.get("m.relates_to")
    return isinstance(relates, Mapping) and isinstance(relates.get("m.in_reply_to"), Mapping)


def rendered_texts(content: Any) -> list[str]:
    """Every text a client may render of an event's content (see the module's docstring)."""
    if not isinstance(content, Mapping):
        return []
    quoting = replies(content)
    texts: list[str] = []
    for key, value in _strings(content, 0):
        if key == "body" and quoting:
            value = strip_reply_fallback(value)
        elif key == "formatted_body":
            value = html_text(_MX_REPLY.sub("", value) if quoting else value)
        texts.append(value)
    return texts


def shown_body(content: Any) -> str:
    """The plain text a message shows: an edit's new body, else its body ("" if none)."""
    if not isinstance(content, Mapping):
        return ""
    new = content.get("m.new_content")
    body = (new if isinstance(new, Mapping) else content).get("body")
    return body if isinstance(body, str) else ""


def html_text(html: str) -> str:
    """The text an HTML body shows, with the targets, titles and alternative texts of its
    elements (a link shows its target on hover; an image its title)."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return "\n".join(parser.parts)


def malformed_reason(event_type: str, content: Any) -> str | None:
    """Why an event's content cannot be read as its type says, or None when it can."""
    if not isinstance(content, Mapping):
        return "its content is not an object"
    if _too_deep(content, 0):
        return "its content is nested too deeply"
    if event_type != "m.room.message":
        return None
    for shown in (content, content.get("m.new_content", {})):
        if not isinstance(shown, Mapping):
            return "its new content is not an object"
        for key in ("body", "msgtype"):
            if not isinstance(shown.get(key, "" if shown is not content else None), str):
                return f"its {key} is not a text"
        for key in ("formatted_body", "format", "filename"):
            if key in shown and not isinstance(shown[key], str):
                return f"its {key} is not a text"
        for key in ("info", "m.relates_to"):
            if key in shown and not isinstance(shown[key], Mapping):
                return f"its {key} is not an object"
    return None


def _strings(value: Any, depth: int, key: str = "") -> Iterator[tuple[str, str]]:
    """Every text under ``value`` with the key it is found under: strings, numbers nobody
    declared, and key names a sender made up; identifiers in their grammar skipped
    (`policy.fields`)."""
    if depth > MAX_DEPTH:
        return
    if isinstance(value, Mapping):
        for name, item in value.items():
            if name_is_text(name):
                yield "", str(name)
            if not (is_identifier(name, item) or is_declared_number(name, item)):
                yield from _strings(item, depth + 1, str(name))
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, depth + 1, key)
    else:
        text = as_text(value)
        if text:
            yield key, text


def _too_deep(value: Any, depth: int) -> bool:
    if depth > MAX_DEPTH:
        return True
    if isinstance(value, Mapping):
        return any(_too_deep(item, depth + 1) for item in value.values())
    if isinstance(value, list):
        return any(_too_deep(item, depth + 1) for item in value)
    return False


def _attribute_text(value: str) -> str:
    """What an attribute's value says: a media reference says nothing, a pill's target only
    its user or alias (a user on another server is a link elsewhere), not its random room or
    event identifiers."""
    if value.startswith("mxc://"):
        return ""
    if value.startswith(_MATRIX_TO):
        target = value.removeprefix(_MATRIX_TO).split("?", 1)[0]
        return _RANDOM_ID.sub("", target)
    return value


class _TextParser(HTMLParser):
    """Every text of an HTML body: its text, every attribute's value (titles, alternative
    texts, spoiler reasons, maths, list numbering, ...: clients show many of them), and
    comments and declarations (HTML parsers disagree on where a comment ends, so what one
    hides another may show). Only random identifiers are left out (`_attribute_text`)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for _, value in attrs:
            text = _attribute_text(value) if value else ""
            if text:
                self.parts.append(text)

    def handle_comment(self, data: str) -> None:
        self.parts.append(data)

    def handle_decl(self, decl: str) -> None:
        self.parts.append(decl)

    def unknown_decl(self, data: str) -> None:
        self.parts.append(data)

    def handle_pi(self, data: str) -> None:
        self.parts.append(data)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)
