"""Writes gathered while one event is processed, sent to the database together.

PostgreSQL: the statements become the parts of one ``WITH`` query, one round trip for all
of them (a round trip costs the bridge more CPU than any of these statements costs the
server: docs/performance.md), atomic alone: it needs no BEGIN and COMMIT around it. A
statement added as ``required`` makes the whole query fail when it changes no row, so that
nothing gathered with it is kept (`bridge_require`, a function of migration 14). SQLite runs
them one by one, in the order they were added, in the caller's transaction: it is in
process, so there is no round trip to save.

The parts of a ``WITH`` query all see the database as it was before the query, and none sees
another's changes; PostgreSQL does not say in which order they run, and a row changed by two
of them is changed by one only. So the statements gathered must change different rows, and a
statement that reads what another changes must be added first (SQLite, running them in
order, then sees what PostgreSQL sees).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from mautrix.util.async_db import Connection, Scheme

from .database import UNSYNCED_COMMIT

Rows = list[dict[str, Any]]

_PLACEHOLDER = re.compile(r"\$(\d+)")


@dataclass(frozen=True, slots=True)
class _Statement:
    sql: str
    args: tuple[Any, ...]
    then: Callable[[Rows], None] | None  # given the rows of its RETURNING clause
    required: bool


class Writes:
    """Data-changing statements (INSERT, UPDATE, DELETE), run together by `run`."""

    def __init__(self) -> None:
        self._statements: list[_Statement] = []

    def add(
        self,
        sql: str,
        *args: Any,
        then: Callable[[Rows], None] | None = None,
        required: bool = False,
    ) -> None:
        """Gather a statement; ``then`` is given what its RETURNING clause answered (JSON
        types: numbers and text) once `run` has run it. ``required``: if its RETURNING
        answers no row, ``then`` is given none and nothing gathered may be kept: PostgreSQL
        keeps nothing of the query; on SQLite ``then`` must raise, for the caller's
        transaction to be rolled back."""
        self._statements.append(_Statement(sql, args, then, required))

    async def execute(self, sql: str, *args: Any) -> None:
        """`add`, for helpers written against a connection whose answer they do not read."""
        self.add(sql, *args)

    async def run(self, conn: Connection, wait_for_disk: bool = True) -> None:
        """Run what was gathered (then forget it). ``wait_for_disk=False``: PostgreSQL
        commits without waiting for the WAL record to reach the disk (a setting of the
        query's own transaction, or of the caller's if it runs in one), for writes a crash
        of the database server may forget at no cost."""
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
        alone = statements[0]
        if len(statements) == 1 and alone.then is None and not alone.required and wait_for_disk:
            await conn.execute(alone.sql, *alone.args)
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
        answers += [
            f"bridge_require(EXISTS (SELECT FROM w{n}))"
            for n, s in enumerate(statements)
            if s.required
        ]
        if not wait_for_disk:
            answers.append(UNSYNCED_COMMIT)
        try:
            row = await conn.fetchrow(
                f"WITH {', '.join(parts)} SELECT {', '.join(answers) or 'NULL'}",
                *args,
            )
        except asyncpg.SerializationError:  # bridge_require: a required part changed no row
            for s in statements:
                if s.required and s.then is not None:
                    s.then([])
            raise
        for n, s in enumerate(statements):
            if s.then is not None:
                s.then(json.loads(row[f"w{n}"] or "[]"))


@functools.lru_cache(maxsize=1024)
def _renumbered(sql: str, offset: int) -> str:
    """The statement with its placeholders moved past the ``offset`` before it (kept: an
    event's few kinds of statements come back at the same offsets, and the regular
    expression's pass cost about 1.5 % of the bridge's CPU in the latency benchmark)."""
    return _PLACEHOLDER.sub(lambda m: f"${int(m.group(1)) + offset}", sql)
