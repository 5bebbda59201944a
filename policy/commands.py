"""Admin commands given in Matrix: parsing and who may give them, decided purely.

    "!market resolve d-1 refund_buyer Photos show damage"
        -> Command("resolve", ("d-1", "refund_buyer", "Photos show damage"))

A message is a command only when it starts with the exact prefix (ASCII, so look-alike
characters never make one). One command per message: a second line is refused, not ignored.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from .rooms import RoomKind

MAX_LENGTH = 1000
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_DECISION = re.compile(r"[a-z0-9_]{1,64}")
_USER = re.compile(r"@[a-z0-9._=/+-]+:[A-Za-z0-9.-]+(:[0-9]{1,5})?")


class CommandName(StrEnum):
    HELP = "help"
    DISPUTES = "disputes"
    STATUS = "status"
    LOCK = "lock"
    UNLOCK = "unlock"
    RESOLVE = "resolve"
    REMOVE = "remove"
    TRANSCRIPT = "transcript"


@dataclass(frozen=True, slots=True)
class CommandSpec:
    usage: str
    summary: str
    min_args: int
    max_args: int  # the last argument takes the rest of the line when it is free text
    free_text_last: bool = False


COMMANDS: dict[CommandName, CommandSpec] = {
    CommandName.HELP: CommandSpec("help", "list the commands", 0, 0),
    CommandName.DISPUTES: CommandSpec("disputes", "list the open disputes", 0, 0),
    CommandName.STATUS: CommandSpec(
        "status <transaction or dispute id>", "show its state and room", 1, 1
    ),
    CommandName.LOCK: CommandSpec(
        "lock <transaction id>", "make the transaction room read-only", 1, 1
    ),
    CommandName.UNLOCK: CommandSpec("unlock <transaction id>", "let the parties post again", 1, 1),
    CommandName.RESOLVE: CommandSpec(
        "resolve <dispute id> <decision> [note]",
        "resolve the dispute (as the marketplace API would)",
        2,
        3,
        free_text_last=True,
    ),
    CommandName.REMOVE: CommandSpec(
        "remove <user> <transaction or dispute id>", "remove someone who is not a party", 2, 2
    ),
    CommandName.TRANSCRIPT: CommandSpec(
        "transcript <transaction or dispute id>",
        "upload its room's transcript here (JSON, hash-chained evidence)",
        1,
        1,
    ),
}


@dataclass(frozen=True, slots=True)
class Command:
    name: CommandName
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str


def parse_command(body: object, prefix: str) -> Command | Refusal | None:
    """The command in a message body; None when the message is not addressed to the bot."""
    if not isinstance(body, str) or not body.startswith(prefix):
        return None
    rest = body[len(prefix) :]
    if rest and not rest[0].isspace():
        return None  # "!marketing" is not "!market"
    if len(body) > MAX_LENGTH:
        return Refusal(f"a command is at most {MAX_LENGTH} characters")
    text = rest.strip()
    if any(ch in "\n\r" or unicodedata.category(ch) in ("Zl", "Zp") for ch in text):
        return Refusal("one command per message")
    if any(unicodedata.category(ch)[0] == "C" for ch in text):
        return Refusal("control characters are not allowed")
    name, _, arguments = text.partition(" ")
    spec = COMMANDS.get(name)
    if spec is None:
        return Refusal(
            f"unknown command {name!r}; try help" if name else "which command? try help"
        )
    words = arguments.split()
    if spec.free_text_last and len(words) > spec.max_args:
        head = words[: spec.max_args - 1]
        note = arguments.strip()
        for word in head:
            note = note[len(word) :].lstrip()
        words = [*head, " ".join(note.split())]  # any run of spaces becomes one
    if not spec.min_args <= len(words) <= spec.max_args:
        return Refusal(f"usage: {prefix} {spec.usage}")
    problem = _argument_problem(name, words)
    if problem:
        return Refusal(problem)
    return Command(CommandName(name), tuple(words))


def _argument_problem(name: str, args: list[str]) -> str | None:
    if name in ("status", "lock", "unlock", "transcript") and not _ID.fullmatch(args[0]):
        return f"{args[0]!r} is not an id"
    if name == "resolve":
        if not _ID.fullmatch(args[0]):
            return f"{args[0]!r} is not a dispute id"
        if not _DECISION.fullmatch(args[1]):
            return f"{args[1]!r} is not a decision"
    if name == "remove":
        if not _USER.fullmatch(args[0]):
            return f"{args[0]!r} is not a Matrix user ID"
        if not _ID.fullmatch(args[1]):
            return f"{args[1]!r} is not an id"
    return None


def may_command(
    sender: str, admins: tuple[str, ...] | list[str], room_kind: RoomKind | None
) -> bool:
    """Only allow-listed admins, only in the management room or a dispute room."""
    return sender in admins and room_kind in (RoomKind.MANAGEMENT, RoomKind.DISPUTE)


def help_text(prefix: str) -> str:
    return "\n".join(f"{prefix} {spec.usage}: {spec.summary}" for spec in COMMANDS.values())
