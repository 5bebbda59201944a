"""Content rules: whether a party's message breaks one, and what the bot does about it.

    message content + the room's access + the sender's recent message count
      -> judge_message -> Verdict (the broken rules, and the union of their actions)

Rules read what the client declared (msgtype, media type and size); the homeserver checks the
bytes themselves. Every text a client may render is judged (`policy.messages.rendered_texts`),
the new content of an edit too, wherever it appears, so a message cannot be made harmless first
and edited into a phone number afterwards. An event the rules cannot read breaks a rule of its
own (``malformed_content``): a crafted field never makes a pass. Admins and the bot are exempt:
the caller judges parties' messages only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .contact import find_contact_details, find_contact_details_across
from .messages import MEDIA_MSGTYPES, malformed_reason, rendered_texts
from .states import Access


class Rule(StrEnum):
    MSGTYPE = "msgtype"
    MEDIA_TYPE = "media_type"
    MEDIA_SIZE = "media_size"
    CONTACT_DETAILS = "contact_details"
    FLOOD = "flood"
    MALFORMED_CONTENT = "malformed_content"


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
    # What is not allowed, for the sender and the admins. Never anything the sender chose (the
    # content, a msgtype, a media type, an event type): the bot repeats it in the room.
    reason: str
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
    return judge_event(
        "m.room.message",
        content,
        rules,
        access,
        transaction_closed=transaction_closed,
        recent_messages=recent_messages,
        muted=muted,
    )


def judge_event(
    event_type: str,
    content: Any,
    rules: ContentRules,
    access: Access,
    *,
    transaction_closed: bool,
    recent_messages: int,
    muted: bool,
    earlier: Sequence[str] = (),
) -> Verdict:
    """The rules a party's room event (not state) breaks. Messages are judged in full (the
    message as sent and as an edit turns it into); any other type (stickers, polls, calls,
    encrypted events in rooms that never enable encryption) breaks the msgtype rule, and
    every event's texts are judged for contact details (a reaction's key too), read after
    ``earlier``: the bodies of the sender's messages just before, oldest first, so a number
    split across messages is one number."""
    if event_type == "m.room.redaction":
        return Verdict()  # removing is never a violation; the power levels say who may
    found: list[Violation] = []

    def check(violation: Violation | None) -> None:
        if violation is not None and rules.applies(violation.rule, access):
            if violation.rule not in {v.rule for v in found}:
                found.append(violation)

    try:
        problem = malformed_reason(event_type, content)
        if problem is not None:
            check(MALFORMED)
            content = content if isinstance(content, Mapping) else {}
        if event_type == "m.room.message":
            new_content = content.get("m.new_content")
            for shown in (content, *([new_content] if isinstance(new_content, Mapping) else [])):
                _judge_shown(shown, rules, check)
        elif event_type != "m.reaction":
            check(Violation(Rule.MSGTYPE, "this kind of event is not allowed here"))
        if not transaction_closed:
            check(contact_violation(rendered_texts(content), rules, earlier))
        if event_type == "m.room.message" and recent_messages > rules.flood_messages:
            if not muted:
                seconds = rules.flood_window_ms // 1000
                check(
                    Violation(
                        Rule.FLOOD, f"more than {rules.flood_messages} messages in {seconds} s"
                    )
                )
    except Exception:  # a field the rules choke on: never a pass
        return malformed_verdict(rules, access)
    return _verdict(found, rules)


# A number split across messages: the sender's messages this recent (at most this many) are
# read with their next one.
ACROSS_WINDOW_MS = 60_000
ACROSS_MESSAGES = 4
CONTACT_REASON = (
    "contact details and payment outside the marketplace are not allowed before the deal is closed"
)
MALFORMED = Violation(Rule.MALFORMED_CONTENT, "this message cannot be read as a message")


def malformed_verdict(rules: ContentRules, access: Access) -> Verdict:
    """The verdict on an event that could not be read at all."""
    return _verdict([MALFORMED] if rules.applies(Rule.MALFORMED_CONTENT, access) else [], rules)


def _judge_shown(shown: Mapping[str, Any], rules: ContentRules, check: Any) -> None:
    """The message rules for one content a client may show (the message, or its edit)."""
    msgtype = shown.get("msgtype")
    check(_msgtype_violation(msgtype, rules))
    if msgtype in MEDIA_MSGTYPES:
        info = shown.get("info") if isinstance(shown.get("info"), Mapping) else {}
        check(_media_type_violation(info.get("mimetype"), rules))
        check(_media_size_violation(info.get("size"), rules))


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
    return Violation(Rule.MSGTYPE, "this type of message is not allowed here")


def _media_type_violation(mimetype: Any, rules: ContentRules) -> Violation | None:
    if not isinstance(mimetype, str) or not mimetype.strip():
        return Violation(Rule.MEDIA_TYPE, "media must declare its type")
    if media_type_allowed(mimetype, rules.allowed_media_types):
        return None
    return Violation(Rule.MEDIA_TYPE, "this type of file is not allowed here")


def _media_size_violation(size: Any, rules: ContentRules) -> Violation | None:
    # An undeclared size passes here; the homeserver's upload limit still holds.
    if isinstance(size, int) and not isinstance(size, bool) and size > rules.max_media_bytes:
        return Violation(
            Rule.MEDIA_SIZE,
            f"files larger than {_megabytes(rules.max_media_bytes)} are not allowed",
        )
    return None


def contact_violation(
    texts: list[str], rules: ContentRules, earlier: Sequence[str] = ()
) -> Violation | None:
    """The contact-details violation in the texts a client shows of one message (read
    together: a number split between a caption and a file name is one number), if any."""
    hosts, terms = rules.allowed_link_hosts, rules.off_platform_terms
    findings = []
    if len(texts) > 1 or not earlier:
        findings = find_contact_details("\n".join(texts), hosts, terms)
    for text in texts if earlier and not findings else ():
        # Each text may end what the sender's earlier messages began (an edit's new body
        # too, whatever its fallback body says).
        findings = find_contact_details_across([*earlier, text], hosts, terms)
        if findings:
            break
    if not findings:
        return None
    kinds = tuple(dict.fromkeys(finding.kind for finding in findings))
    return Violation(Rule.CONTACT_DETAILS, CONTACT_REASON, kinds)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"
