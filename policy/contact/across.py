"""A sender's consecutive messages read together: "0791" then "1123456" is a phone number.

Everything but phone numbers is found in the messages joined by a line break (the earlier
ones read back at most ACROSS_CONTEXT characters): "add me on" then "signal", "my email is
john" then "@gmail.com". Phone numbers stop where a message ends there, because messages
are full of numbers that are no phone numbers together ("Model year 2018" then "45 000
miles", "1299" then "2000"). A number split across messages is looked for on its own, and
must give stronger evidence than one in a single message:

- the newest message begins with a piece of it, and it reaches back into the earlier
  messages that hold a digit or a number word (those that hold none, "ok", "hi", are
  skipped, so that they do not hide it: "07911", "hi", "ok", "123456");
- none of its digits belongs to an ordinary number of the message it is in, judged alone
  (a year, a price, a quantity with a unit: "2000", "45 000 miles");
- libphonenumber finds its digits a valid number: after "+" or "00" an international one,
  after a trunk prefix "0" a national one of a common region, otherwise a North American
  one (ten digits); after a cue word ("call", "tel"...) a possible one. It may begin at any
  group of digits before the break and end at any group after it ("I paid 1299", "0791",
  "112 3456" is 0791 112 3456). Numbers in words are no accident and count as they do in
  one message.

Valid, not merely possible: with a dozen regions' plans nearly any eight digits are possible
somewhere ("1299" then "2000" is a valid Belgian, Austrian and Irish number). A "+", "00" or
a trunk prefix "0" is what no price, year or quantity begins with; without one, only the
North American plan, whose area codes and exchanges are strict, is tried.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Collection, Sequence

from .detect import Finding, find
from .folding import fold_text
from .numbers import ordinary_numbers
from .phones import digit_groups, has_number, split_confirmed, starts_with_number

# What separates the messages judged together.
MESSAGE_SEPARATOR = "\n"
# How much of the earlier messages is read back.
ACROSS_CONTEXT = 2000
# How much of the newest message the end of a split number is looked for in.
_HEAD = 256
_MAX_DIGITS = 15  # E.164: no phone number has more
_MAX_LOOKUPS = 64  # libphonenumber's work for one split number; past that it is not one


def find_across(
    texts: Sequence[str], allowed_hosts: Collection[str], terms: Collection[str]
) -> list[Finding]:
    if not texts:
        return []
    newest = texts[-1]
    if len(texts) == 1:
        return find(newest, allowed_hosts, terms)
    joined, breaks = _joined(texts[:-1], newest)
    offset = len(joined) - len(newest)
    findings = [
        _clipped(finding, newest, offset)
        for finding in find(joined, allowed_hosts, terms, breaks)
        if finding.end > offset
    ]
    split = _split_number(texts[:-1], newest, allowed_hosts, terms)
    return findings if split is None else _merged(findings, split, newest)


def _joined(earlier: Sequence[str], newest: str) -> tuple[str, list[int]]:
    """The messages joined, the earlier ones read back at most ACROSS_CONTEXT characters
    (never half a word), and where each separator is."""
    text = MESSAGE_SEPARATOR.join(earlier)
    cut = 0
    if len(text) > ACROSS_CONTEXT:
        cut = len(text) - ACROSS_CONTEXT
        space = next((i for i, c in enumerate(text[cut:]) if c.isspace()), len(text) - cut)
        cut += space
    breaks, at = [], -len(MESSAGE_SEPARATOR)
    for message in earlier:
        at += len(message) + len(MESSAGE_SEPARATOR)
        if at >= cut:
            breaks.append(at - cut)
    return text[cut:] + MESSAGE_SEPARATOR + newest, breaks


def _clipped(finding: Finding, newest: str, offset: int) -> Finding:
    start, end = max(finding.start - offset, 0), finding.end - offset
    return Finding(finding.kind, newest[start:end], start, end)


def _split_number(
    earlier: Sequence[str], newest: str, allowed_hosts: Collection[str], terms: Collection[str]
) -> tuple[int, int] | None:
    """The span, in the newest message, of the end of a phone number that began in the
    earlier ones, if there is one."""
    head, rest = newest[:_HEAD], newest[_HEAD : _HEAD + 64]
    if rest and not rest[0].isspace():
        head += rest.split(None, 1)[0]  # never half a word or half a number
    if not starts_with_number(fold_text(head).text):
        return None
    messages, size = [head], 0
    for message in reversed(earlier):
        tail = message[-ACROSS_CONTEXT:]
        if has_number(fold_text(tail).text):
            messages.insert(0, tail)
            size += len(tail)
            if size >= ACROSS_CONTEXT:
                break
    if len(messages) == 1:
        return None
    starts = [0]
    for message in messages[:-1]:
        starts.append(starts[-1] + len(message) + len(MESSAGE_SEPARATOR))
    joined = MESSAGE_SEPARATOR.join(messages)
    offset = starts[-1]
    for finding in find(joined, allowed_hosts, terms):
        if finding.kind == "phone" and finding.start < offset < finding.end:
            span = _confirmed(joined, messages, starts, finding)
            return None if span is None else (span[0] - offset, span[1] - offset)
    return None


def _confirmed(
    joined: str, messages: list[str], starts: list[int], finding: Finding
) -> tuple[int, int] | None:
    """Where in `joined` the part of a split number in the newest message is, if its digits
    make a phone number (see the module's docstring)."""
    folded = fold_text(joined)
    origin = folded.origin
    first = _folded_index(origin, finding.start)
    last = bisect.bisect_right(origin, finding.end - 1)
    groups = digit_groups(folded.text, first, last)
    offset = starts[-1]
    if groups is None:  # number words: counted as in one message
        return offset, finding.end
    boundary = next((i for i, (a, _, _) in enumerate(groups) if origin[a] >= offset), 0)
    if boundary == 0:
        return None
    # Only the groups within _MAX_DIGITS digits of the break can be part of the number.
    counts = list(itertools.accumulate((len(digits) for _, _, digits in groups), initial=0))
    low = next(i for i in range(boundary + 1) if counts[boundary] - counts[i] < _MAX_DIGITS)
    high = max(
        j for j in range(boundary, len(groups)) if counts[j] - counts[boundary] < _MAX_DIGITS
    )
    spans = [(origin[a], origin[b - 1] + 1, digits) for a, b, digits in groups[low : high + 1]]
    starts_folded = [a for a, _, _ in groups[low : high + 1]]
    ordinary = _ordinary(messages, starts, spans)
    counts, boundary = counts[low : high + 2], boundary - low
    lookups = [0]
    for i in range(boundary):
        if any(ordinary[i:boundary]):
            continue
        for j in range(len(spans) - 1, boundary - 1, -1):
            if any(ordinary[boundary : j + 1]) or counts[j + 1] - counts[i] > _MAX_DIGITS:
                continue
            digits = "".join(d for _, _, d in spans[i : j + 1])
            if split_confirmed(folded.text, starts_folded[i], digits, lookups):
                return spans[boundary][0], spans[j][1]
            if lookups[0] > _MAX_LOOKUPS:
                return None
    return None


def _ordinary(
    messages: list[str], starts: list[int], spans: list[tuple[int, int, str]]
) -> list[bool]:
    """For each group of digits, whether it belongs to an ordinary number of its message
    judged alone (a year, a price, a quantity with a unit)."""
    ordinary = [False] * len(spans)
    for message, start in zip(messages, starts, strict=True):
        end = start + len(message)
        inside = [i for i, (a, _, _) in enumerate(spans) if start <= a < end]
        if not inside:
            continue
        folded = fold_text(message)
        for span in ordinary_numbers(folded.text):
            if not span:
                continue
            first, last = (
                folded.origin[span.start] + start,
                folded.origin[span.stop - 1] + start + 1,
            )
            for i in inside:
                ordinary[i] = ordinary[i] or (spans[i][0] < last and first < spans[i][1])
    return ordinary


def _folded_index(origin: Sequence[int], index: int) -> int:
    """The first folded character that came from the original character ``index``."""
    return bisect.bisect_left(origin, index)


def _merged(findings: list[Finding], span: tuple[int, int], newest: str) -> list[Finding]:
    """The findings with the end of a split number added, merged with any it overlaps."""
    start, end = span
    kept = []
    for finding in findings:
        if finding.start < end and start < finding.end:
            start, end = min(start, finding.start), max(end, finding.end)
        else:
            kept.append(finding)
    kept.append(Finding("phone", newest[start:end], start, end))
    return sorted(kept, key=lambda finding: finding.start)
