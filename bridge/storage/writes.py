"""Writes gathered while one event is processed, sent to the database together.

PostgreSQL: the statements become the parts of one ``WITH`` query, one round trip for all
of them (a round trip costs the bridge more CPU than any of these statements costs the
server: docs/performance.md). SQLite runs them one by one, in the order they were added:
it is in process, so there is no round trip to save.

The parts of a ``WITH`` query all see the database as it was before the query, and none sees
another's changes; PostgreSQL does not say in which order they run, and a row changed by two
of them is changed by one only. So the statements gathered must change different rows, and a
statement that reads what another changes must be added first (SQLite, running them in
order, then sees what PostgreSQL sees).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mautrix.util.async_db import Connection, Scheme

Rows = list[dict[str, Any]]

_PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass(frozen=True, slots=True)
class _Statement:
    sql: str
    args: tuple[Any, ...]
    then: Callable[[Rows], None] | None  # given the rows of its RETURNING clause


class Writes:
    """Data-changing statements (INSERT, UPDATE, DELETE), run together by `run`."""

    def __init__(self) -> None:
        self._statements: list[_Statement] = []

    def add(self, sql: str, *args: Any, then: Callable[[Rows], None] | None = None) -> None:
        """Gather a statement; ``then`` is given what its RETURNING clause answered (JSON
        types: numbers and text) once `run` has run it."""
        self._statements.append(_Statement(sql, args, then))

    async def execute(self, sql: str, *args: Any) -> None:
        """`add`, for helpers written against a connection whose answer they do not read."""
        self.add(sql, *args)

    async def run(self, conn: Connection) -> None:
        """Run what was gathered, in the caller's database transaction (then forget it)."""
        statements, self._statements = self._statements, []
        if not statements:
            return
        if conn.scheme == Scheme.SQLITE:
            for s in statements:
                if s.then is None:
                    await conn.execute(s.sql, *s.args)
                else:
                    s.then([dict(row) for row in await conn.fetch(s.sql, *s.args)])
            return
        if len(statements) == 1 and statements[0].then is None:
            await conn.execute(statements[0].sql, *statements[0].args)
            return
        parts: list[str] = []
        args: list[Any] = []
        for n, s in enumerate(statements):
            parts.append(f"w{n} AS ({_renumbered(s.sql, len(args))})")
            args += s.args
        answers = [
            f"(SELECT json_agg(w{n}) FROM w{n}) AS w{n}"  # noqa: S608 (names we made)
            for n, s in enumerate(statements)
            if s.then is not None
        ]
        row = await conn.fetchrow(
            f"WITH {', '.join(parts)} SELECT {', '.join(answers) or 'NULL'}",
            *args,
        )
        for n, s in enumerate(statements):
            if s.then is not None:
                s.then(json.loads(row[f"w{n}"] or "[]"))


def _renumbered(sql: str, offset: int) -> str:
    """The statement with its placeholders moved past the ``offset`` before it."""
    return _PLACEHOLDER.sub(lambda m: f"${int(m.group(1)) + offset}", sql)
