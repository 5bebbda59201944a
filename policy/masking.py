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

from .contact import find_contact_details_across, mask_contact_details
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
    if contact_violation(rendered_texts(content), rules, earlier) is None:
        return None  # most messages: one reading, as the rules' own
    masked = _mask(content, rules, 0)
    if earlier:  # what the body (or an edit's new body) adds to the earlier messages
        for shown in (masked, masked.get("m.new_content")):
            if isinstance(shown, dict) and isinstance(shown.get("body"), str):
                shown["body"] = _mask_across(shown["body"], earlier, rules)
    texts = rendered_texts(masked)
    if (len(texts) > 1 or earlier) and contact_violation(texts, rules, earlier) is not None:
        # A detail only the message's texts hold together (a number split between caption
        # and file name): no text can be kept.
        masked = _blank(masked, 0)
    return masked if masked != content else None


def _mask_across(body: str, earlier: Sequence[str], rules: ContentRules) -> str:
    findings = find_contact_details_across(
        [*earlier, body], rules.allowed_link_hosts, rules.off_platform_terms
    )
    for finding in sorted(findings, key=lambda f: f.start, reverse=True):
        body = body[: finding.start] + MARKER + body[finding.end :]
    return body


def _mask(value: Any, rules: ContentRules, depth: int) -> Any:
    """``value`` with its contact details masked, read as `policy.messages` reads it."""
    if depth > MAX_DEPTH:
        return value
    if isinstance(value, list):
        return [_mask(item, rules, depth + 1) for item in value]
    if not isinstance(value, Mapping):
        text = as_text(value)
        hidden = _mask_text(text, rules) if text else text
        return value if hidden == text else hidden
    masked: dict[str, Any] = {}
    for key, item in value.items():
        if name_is_text(key) and _mask_text(str(key), rules) != str(key):
            continue  # a key the sender made up, naming a contact detail: dropped, value too
        if is_identifier(key, item) or is_declared_number(key, item):
            masked[key] = item
        elif key == "formatted_body" and isinstance(item, str):
            text = html_text(item)
            if _mask_text(text, rules) == text:
                masked[key] = item
            # else: dropped, with its "format" below; the masked body is what clients show
        else:
            masked[key] = _mask(item, rules, depth + 1)
    if "format" in masked and "formatted_body" not in masked:
        del masked["format"]
    return masked


def _mask_text(text: str, rules: ContentRules) -> str:
    return mask_contact_details(text, rules.allowed_link_hosts, rules.off_platform_terms, MARKER)


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
