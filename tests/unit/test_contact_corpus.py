"""The contact corpus under corpus/: ordinary chat that must stay quiet, evasions that must be
found. One message per line, UTF-8, "#" starts a comment; in evasions.txt each line is the
kind that must be found, then the message, and "\\n" stands for a line break."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy.contact import (
    DEFAULT_TERMS,
    KINDS,
    contains_contact_info,
    find_contact_details,
    find_contact_details_across,
    mask_contact_details,
)

CORPUS = Path(__file__).parent / "corpus"
ALLOWED = ("example.com",)
ORDINARY_FILES = ("ordinary_en.txt", "ordinary_fr.txt", "ordinary_other.txt")


def corpus_lines(name: str) -> list[str]:
    lines = (CORPUS / name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


ORDINARY = [line for name in ORDINARY_FILES for line in corpus_lines(name)]
EVASIONS = [
    (kind, text.replace("\\n", "\n"))
    for kind, text in (line.split(None, 1) for line in corpus_lines("evasions.txt"))
]


def test_the_corpus_is_large_enough() -> None:
    assert len(ORDINARY) >= 150
    assert len(EVASIONS) >= 150
    assert len(set(ORDINARY)) == len(ORDINARY), "a sentence is in the corpus twice"
    assert {kind for kind, _ in EVASIONS} == set(KINDS)


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_chat_finds_nothing(text: str) -> None:
    assert find_contact_details(text, ALLOWED, DEFAULT_TERMS) == []
    assert mask_contact_details(text, ALLOWED, DEFAULT_TERMS) == text


@pytest.mark.parametrize(("kind", "text"), EVASIONS)
def test_evasion_is_found_and_masked(kind: str, text: str) -> None:
    findings = find_contact_details(text, ALLOWED, DEFAULT_TERMS)
    assert kind in [finding.kind for finding in findings], findings
    assert all(text[f.start : f.end] == f.text for f in findings)
    masked = mask_contact_details(text, ALLOWED, DEFAULT_TERMS)
    assert not contains_contact_info(masked, ALLOWED, DEFAULT_TERMS), masked


@pytest.mark.parametrize("separator", ["\n", " ", ". "])
def test_the_ordinary_corpus_as_one_message_finds_nothing(separator: str) -> None:
    # Numbers of neighbouring sentences meet here; they must not make a phone number.
    assert find_contact_details(separator.join(ORDINARY), ALLOWED, DEFAULT_TERMS) == []


@pytest.mark.parametrize("name", ORDINARY_FILES)
def test_ordinary_messages_read_together_find_nothing(name: str) -> None:
    # find_contact_details_across joins a sender's messages: five ordinary ones in a row
    # must stay as quiet as each alone.
    lines = corpus_lines(name)
    for newest in range(len(lines)):
        window = lines[max(0, newest - 4) : newest + 1]
        assert find_contact_details_across(window, ALLOWED, DEFAULT_TERMS) == [], window
