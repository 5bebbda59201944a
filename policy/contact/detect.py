"""One text judged: every detector over its folded copy, from the most to the least
specific, each ignoring what an earlier one claimed (see the package's docstring)."""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from .domains import host_key, hosts, urls
from .emails import emails
from .folding import fold_text, original_span, squeeze
from .ibans import ibans
from .phones import BREAK, masked, phones
from .terms import terms_found
from .wallets import wallets


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # one of KINDS
    text: str  # the matched piece of the original text (for tests and admin review only)
    start: int = field(compare=False, default=0)  # text == original[start:end]
    end: int = field(compare=False, default=0)


def find(
    text: str,
    allowed_hosts: Collection[str] = (),
    terms: Collection[str] = (),
    breaks: Sequence[int] = (),
    stop_early: bool = False,
) -> list[Finding]:
    """Every contact detail or off-platform cue in `text`, in order of appearance.

    ``breaks`` are indexes of `text` (ASCII characters) that no phone number reaches across:
    where one message ends and the next begins, when messages are read together. With
    ``stop_early``, the detectors stop after the first one that finds anything: enough to
    tell whether there is anything (a claim is never taken back), not what.
    """
    if isinstance(allowed_hosts, str):
        allowed_hosts = (allowed_hosts,)  # one host, not its letters
    if isinstance(terms, str):
        terms = (terms,)
    folded = fold_text(text)
    allowed = tuple(host for host in map(host_key, allowed_hosts) if host)
    claims: list[tuple[int, int, str | None]] = []  # (start, end, kind); None claims quietly
    # Emails and links are read with characters spaced out one by one joined up.
    spaced = squeeze(folded.text)
    view, back = spaced if spaced else (folded.text, None)
    origin = view_origin = folded.origin
    if back is not None:  # where each joined-up character came from (a range: none moved)
        view_origin = back if isinstance(origin, range) else [origin[i] for i in back]
    detectors = (  # from the most to the least specific
        lambda: _mapped(urls(view, allowed), back),  # first: "https://a.com@b.io" is no email
        lambda: _mapped(emails(view, allowed), back),
        lambda: _mapped(hosts(text, view, view_origin, allowed), back),
        lambda: wallets(folded.cased, folded.text),
        lambda: ibans(folded.text),
        lambda: phones(_broken(masked(folded.text, claims), folded.origin, breaks)),
        lambda: terms_found(folded.text, terms),
    )
    for detector in detectors:
        _claim(claims, detector())
        if stop_early and any(kind is not None for _, _, kind in claims):
            break
    findings = []
    for start, end, kind in claims:
        if kind is not None:
            first, last = original_span(folded.origin, start, end)
            findings.append(Finding(kind, text[first:last], first, last))
    return findings


def _broken(folded: str, origin: Sequence[int], breaks: Sequence[int]) -> str:
    """`folded` with the characters that came from ``breaks`` made breaks."""
    pieces, done = [], 0
    for index in sorted(breaks):
        at = bisect.bisect_left(origin, index)
        if done <= at < len(folded) and origin[at] == index:
            pieces += [folded[done:at], BREAK]
            done = at + 1
    pieces.append(folded[done:])
    return "".join(pieces)


def _mapped(
    found: Iterable[tuple[int, int, str | None]], back: list[int] | None
) -> Iterable[tuple[int, int, str | None]]:
    """Spans found in the joined-up view, as spans of the folded text."""
    if back is None:
        return found
    return ((back[start], back[end - 1] + 1, kind) for start, end, kind in found)


def _claim(
    claims: list[tuple[int, int, str | None]], found: Iterable[tuple[int, int, str | None]]
) -> None:
    """Add what a detector found, first and longest first, where nothing is claimed yet.

    ``claims`` never overlap, so kept sorted by start they are sorted by end too.
    """
    for start, end, kind in sorted(found, key=lambda f: (f[0], f[0] - f[1])):
        at = bisect.bisect_right(claims, start, key=lambda c: c[0])
        free_before = at == 0 or claims[at - 1][1] <= start
        free_after = at == len(claims) or claims[at][0] >= end
        if end > start and free_before and free_after:
            claims.insert(at, (start, end, kind))
