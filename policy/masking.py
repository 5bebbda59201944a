"""Masking before delivery: a party's message with its contact details replaced by a marker,
so the deal goes on and nothing reaches the other party (the Synapse module rewrites the
message before it is stored; the bridge keeps the original for admins).

    content -> every text a client may render (as in `policy.messages`) with each contact
               detail replaced by MARKER; an HTML body holding one is dropped (clients show
               the plain body instead); the edit's new content masked alike
            -> None when there was nothing to mask
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .contact import (
    Finding,
    contains_contact_info,
    find_contact_details,
    find_contact_details_across,
    replace_findings,
)
from .fields import as_text, is_declared_number, is_identifier, name_is_text
from .messages import MAX_DEPTH, html_text, rendered_texts
from .rules import (
    CONTACT_REASON,
    Action,
    ContentRules,
    Rule,
    Verdict,
    Violation,
    contact_violation,
)
from .states import Access

MARKER = "[contact details hidden]"
# The key the module adds to a masked message: which rules it masked for, and the id under
# which the original is kept for the bridge (never the original itself).
MASKED_KEY = "org.marketplace.masked"


def mask_content(
    content: Mapping[str, Any], rules: ContentRules, earlier: Sequence[str] = ()
) -> dict[str, Any] | None:
    """The content with its contact details masked, or None when it holds none. ``earlier``:
    the bodies of the sender's messages just before, oldest first; what the body adds to
    them (the end of a number split across messages) is masked too."""
    # Each text is read once: a message with one text (most) is read once in all.
    seen: dict[str, list[Finding]] = {}
    if not _violates(rendered_texts(content), rules, earlier, seen):
        return None  # most messages: one reading, as the rules' own
    masked = _mask(content, rules, 0, seen)
    if earlier:  # what the body (or an edit's new body) adds to the earlier messages
        for shown in (masked, masked.get("m.new_content")):
            if isinstance(shown, dict) and isinstance(shown.get("body"), str):
                shown["body"] = _mask_across(shown["body"], earlier, rules)
    texts = rendered_texts(masked)
    if (len(texts) > 1 or earlier) and _violates(texts, rules, earlier, seen):
        # A detail only the message's texts hold together (a number split between caption
        # and file name): no text can be kept.
        masked = _blank(masked, 0)
    return masked if masked != content else None


def _violates(
    texts: list[str], rules: ContentRules, earlier: Sequence[str], seen: dict[str, list[Finding]]
) -> bool:
    """Whether the texts break the contact rule, read as `contact_violation` reads them
    (without earlier messages: the texts joined)."""
    if earlier:
        return contact_violation(texts, rules, earlier) is not None
    if len(texts) == 1:  # the one text to mask: its findings are kept
        return bool(_findings(texts[0], rules, seen))
    return _holds("\n".join(texts), rules, seen)


def _findings(text: str, rules: ContentRules, seen: dict[str, list[Finding]]) -> list[Finding]:
    if text not in seen:
        seen[text] = find_contact_details(text, rules.allowed_link_hosts, rules.off_platform_terms)
    return seen[text]


def _holds(text: str, rules: ContentRules, seen: dict[str, list[Finding]]) -> bool:
    """Whether `text` holds a contact detail: the first detector to find one is enough (an
    HTML body or a key that holds one is dropped whole)."""
    if text in seen:
        return bool(seen[text])
    return contains_contact_info(text, rules.allowed_link_hosts, rules.off_platform_terms)


def _mask_across(body: str, earlier: Sequence[str], rules: ContentRules) -> str:
    findings = find_contact_details_across(
        [*earlier, body], rules.allowed_link_hosts, rules.off_platform_terms
    )
    return replace_findings(body, findings, MARKER)


def _mask(value: Any, rules: ContentRules, depth: int, seen: dict[str, list[Finding]]) -> Any:
    """``value`` with its contact details masked, read as `policy.messages` reads it."""
    if depth > MAX_DEPTH:
        return value
    if isinstance(value, list):
        return [_mask(item, rules, depth + 1, seen) for item in value]
    if not isinstance(value, Mapping):
        text = as_text(value)
        findings = _findings(text, rules, seen) if text else []
        return replace_findings(text, findings, MARKER) if findings else value
    masked: dict[str, Any] = {}
    for key, item in value.items():
        if name_is_text(key) and _holds(str(key), rules, seen):
            continue  # a key the sender made up, naming a contact detail: dropped, value too
        if is_identifier(key, item) or is_declared_number(key, item):
            masked[key] = item
        elif key == "formatted_body" and isinstance(item, str):
            if not _holds(html_text(item), rules, seen):
                masked[key] = item
            # else: dropped, with its "format" below; the masked body is what clients show
        else:
            masked[key] = _mask(item, rules, depth + 1, seen)
    if "format" in masked and "formatted_body" not in masked:
        del masked["format"]
    return masked


def _blank(value: Any, depth: int) -> Any:
    """The content with every text a client may render replaced by MARKER (and every key a
    sender made up dropped)."""
    if isinstance(value, list):
        return [_blank(item, depth + 1) for item in value] if depth <= MAX_DEPTH else []
    if not isinstance(value, Mapping):
        return MARKER if as_text(value) else value
    if depth > MAX_DEPTH:
        return {}
    return {
        key: item
        if is_identifier(key, item) or is_declared_number(key, item)
        else _blank(item, depth + 1)
        for key, item in value.items()
        if not name_is_text(key) and key not in ("format", "formatted_body")
    }


def mask_id_of(content: Any) -> str | None:
    """The id under which the homeserver kept a masked message's original, if it masked it."""
    marker = content.get(MASKED_KEY) if isinstance(content, Mapping) else None
    mask_id = marker.get("id") if isinstance(marker, Mapping) else None
    return mask_id if isinstance(mask_id, str) and 0 < len(mask_id) <= 64 else None


def with_masking(verdict: Verdict, rules: ContentRules, access: Access) -> Verdict:
    """The verdict on a message the homeserver masked: the masking is a contact-details
    violation to record, whose details are gone, so it needs no redaction (unless the text
    still breaks a rule, which keeps its own actions)."""
    if not rules.applies(Rule.CONTACT_DETAILS, access):
        return verdict
    if any(v.rule is Rule.CONTACT_DETAILS for v in verdict.violations):
        return verdict
    masking = Violation(Rule.CONTACT_DETAILS, CONTACT_REASON, ("masked",))
    actions = verdict.actions | (rules.settings[Rule.CONTACT_DETAILS].actions - {Action.REDACT})
    return Verdict((*verdict.violations, masking), actions)
