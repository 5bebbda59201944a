"""Content rules: whether a party's message breaks one, and what the bot does about it.

    message content + the room's access + the sender's recent message count
      -> judge_message -> Verdict (the broken rules, and the union of their actions)

Rules read what the client declared (msgtype, media type and size); the homeserver checks the
bytes themselves. Edits are judged by their new content, so a message cannot be made harmless
first and edited into a phone number afterwards. Admins and the bot are exempt: the caller
judges parties' messages only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .contact import find_contact_details
from .messages import MEDIA_MSGTYPES, strip_reply_fallback
from .states import Access

_HREF = re.compile(r"""href\s*=\s*["']?([^"' >]+)""", re.IGNORECASE)


class Rule(StrEnum):
    MSGTYPE = "msgtype"
    MEDIA_TYPE = "media_type"
    MEDIA_SIZE = "media_size"
    CONTACT_DETAILS = "contact_details"
    FLOOD = "flood"


class Action(StrEnum):
    REDACT = "redact"
    WARN = "warn"
    MUTE = "mute"
    ALERT = "alert"


@dataclass(frozen=True, slots=True)
class RuleSetting:
    actions: frozenset[Action]
    access: frozenset[Access]  # the room access states the rule applies in


@dataclass(frozen=True, slots=True)
class ContentRules:
    allowed_msgtypes: frozenset[str]
    allowed_media_types: tuple[str, ...]  # "image/png" or "image/*"
    max_media_bytes: int
    allowed_link_hosts: tuple[str, ...]
    off_platform_terms: tuple[str, ...]
    flood_messages: int
    flood_window_ms: int
    settings: Mapping[Rule, RuleSetting]

    def applies(self, rule: Rule, access: Access) -> bool:
        setting = self.settings.get(rule)
        return setting is not None and access in setting.access


@dataclass(frozen=True, slots=True)
class Violation:
    rule: Rule
    reason: str  # what is not allowed, for the sender and the admins; never the content itself
    findings: tuple[str, ...] = ()  # contact details: the kinds found (email, phone, ...)


@dataclass(frozen=True, slots=True)
class Verdict:
    violations: tuple[Violation, ...] = ()
    actions: frozenset[Action] = frozenset()

    @property
    def broken(self) -> bool:
        return bool(self.violations)


def content_rules_from(policy: Mapping[str, Any]) -> ContentRules:
    """The config's `policy` section (a plain mapping, as in YAML) as `ContentRules`: the
    bridge and the Synapse module build theirs from the same settings."""
    return ContentRules(
        allowed_msgtypes=frozenset(policy["allowed_msgtypes"]),
        allowed_media_types=tuple(policy["allowed_media_types"]),
        max_media_bytes=int(policy["max_media_bytes"]),
        allowed_link_hosts=tuple(policy["allowed_link_hosts"]),
        off_platform_terms=tuple(policy["off_platform_terms"]),
        flood_messages=int(policy["flood_messages"]),
        flood_window_ms=int(policy["flood_window_seconds"]) * 1000,
        settings={
            Rule(name): RuleSetting(
                frozenset(Action(a) for a in setting["actions"]),
                frozenset(Access(a) for a in setting["access"]),
            )
            for name, setting in policy["rules"].items()
        },
    )


def judge_message(
    content: Any,
    rules: ContentRules,
    access: Access,
    *,
    transaction_closed: bool,
    recent_messages: int,
    muted: bool,
) -> Verdict:
    """The rules a party's message breaks in a room of ``access``.

    ``recent_messages`` counts the sender's messages in the room within the flood window,
    this one included; ``muted`` says the sender is already muted (a flood is not punished
    twice for the messages that were in flight).
    """
    content = content if isinstance(content, Mapping) else {}
    new_content = content.get("m.new_content")
    if isinstance(new_content, Mapping):  # an edit: what it turns the message into
        content = new_content
    found: list[Violation] = []

    def check(rule: Rule, violation: Violation | None) -> None:
        if violation is not None and rules.applies(rule, access):
            found.append(violation)

    msgtype = content.get("msgtype")
    check(Rule.MSGTYPE, _msgtype_violation(msgtype, rules))
    if msgtype in MEDIA_MSGTYPES:
        info = content.get("info") if isinstance(content.get("info"), Mapping) else {}
        check(Rule.MEDIA_TYPE, _media_type_violation(info.get("mimetype"), rules))
        check(Rule.MEDIA_SIZE, _media_size_violation(info.get("size"), rules))
    if not transaction_closed:
        check(Rule.CONTACT_DETAILS, _contact_violation(content, rules))
    if recent_messages > rules.flood_messages and not muted:
        seconds = rules.flood_window_ms // 1000
        check(
            Rule.FLOOD,
            Violation(Rule.FLOOD, f"more than {rules.flood_messages} messages in {seconds} s"),
        )
    return _verdict(found, rules)


def judge_event(
    event_type: str,
    content: Any,
    rules: ContentRules,
    access: Access,
    *,
    transaction_closed: bool,
    recent_messages: int,
    muted: bool,
) -> Verdict:
    """The rules a party's room event (not state) breaks: messages are judged in full, a
    reaction's key for contact details, and any other type (stickers, polls, calls,
    encrypted events in rooms that never enable encryption) breaks the msgtype rule."""
    if event_type == "m.room.message":
        return judge_message(
            content,
            rules,
            access,
            transaction_closed=transaction_closed,
            recent_messages=recent_messages,
            muted=muted,
        )
    if event_type == "m.room.redaction":
        return Verdict()  # removing is never a violation; the power levels say who may
    content = content if isinstance(content, Mapping) else {}
    if event_type == "m.reaction":
        relates = (
            content.get("m.relates_to") if isinstance(content.get("m.relates_to"), Mapping) else {}
        )
        key = relates.get("key")
        found = []
        if isinstance(key, str) and not transaction_closed:
            found = [_contact_violation({"body": key}, rules)]
        found = [v for v in found if v is not None and rules.applies(v.rule, access)]
        return _verdict(found, rules)
    shown = re.sub(r"[^\w.:-]", "", event_type)[:64]
    violation = Violation(Rule.MSGTYPE, f"events of type {shown} are not allowed here")
    return _verdict([violation] if rules.applies(Rule.MSGTYPE, access) else [], rules)


def _verdict(found: list[Violation], rules: ContentRules) -> Verdict:
    actions = frozenset().union(*(rules.settings[v.rule].actions for v in found))
    return Verdict(tuple(found), actions)


def media_type_allowed(media_type: str, allowed: tuple[str, ...]) -> bool:
    """Whether a declared type (parameters ignored, any case) is allowed, 'image/*' style."""
    essence = media_type.split(";", 1)[0].strip().lower()
    major = essence.split("/", 1)[0]
    return any(pattern in (essence, f"{major}/*") for pattern in allowed)


def _msgtype_violation(msgtype: Any, rules: ContentRules) -> Violation | None:
    if isinstance(msgtype, str) and msgtype in rules.allowed_msgtypes:
        return None
    shown = msgtype if isinstance(msgtype, str) else "none"
    return Violation(Rule.MSGTYPE, f"messages of type {shown[:64]} are not allowed here")


def _media_type_violation(mimetype: Any, rules: ContentRules) -> Violation | None:
    if not isinstance(mimetype, str) or not mimetype.strip():
        return Violation(Rule.MEDIA_TYPE, "media must declare its type")
    if media_type_allowed(mimetype, rules.allowed_media_types):
        return None
    shown = re.sub(r"[^\w./+*-]", "", mimetype)[:64]
    return Violation(Rule.MEDIA_TYPE, f"files of type {shown} are not allowed here")


def _media_size_violation(size: Any, rules: ContentRules) -> Violation | None:
    # An undeclared size passes here; the homeserver's upload limit still holds.
    if isinstance(size, int) and not isinstance(size, bool) and size > rules.max_media_bytes:
        return Violation(
            Rule.MEDIA_SIZE,
            f"files larger than {_megabytes(rules.max_media_bytes)} are not allowed",
        )
    return None


def _contact_violation(content: Mapping[str, Any], rules: ContentRules) -> Violation | None:
    text = "\n".join(_texts(content))
    findings = find_contact_details(text, rules.allowed_link_hosts, rules.off_platform_terms)
    if not findings:
        return None
    kinds = tuple(dict.fromkeys(finding.kind for finding in findings))
    return Violation(
        Rule.CONTACT_DETAILS,
        "contact details and payment outside the marketplace are not allowed before the deal "
        "is closed",
        kinds,
    )


def _texts(content: Mapping[str, Any]) -> list[str]:
    """What a reader sees of a message: its body (without a reply's quote of another message),
    its file name, and the targets of its HTML links (mention pills to matrix.to aside)."""
    texts = []
    body = content.get("body")
    if isinstance(body, str):
        if isinstance(content.get("m.relates_to"), Mapping):
            body = strip_reply_fallback(body)
        texts.append(body)
    if isinstance(content.get("filename"), str):
        texts.append(content["filename"])
    html = content.get("formatted_body")
    if isinstance(html, str):
        texts += [
            href for href in _HREF.findall(html) if not href.startswith("https://matrix.to/")
        ]
    return texts


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"
