"""CPU of the PostgreSQL server processes serving one database (a meter's extra processes)."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg


class DatabaseBackends:
    """The PostgreSQL server processes serving one database, for a CPU meter.

    A backend keeps its slot once seen; a slot is None until a backend fills it. `refresh`
    before the meter's start and stop, so a pool connection opened mid-run is counted from
    its start.
    """

    def __init__(self, database_url: str, slots: int) -> None:
        self._url = database_url
        self._slots = slots
        self._pids: list[int] = []

    async def refresh(self) -> None:
        conn = await asyncpg.connect(self._url, timeout=10)
        try:
            rows = await conn.fetch(
                # Client backends only: autovacuum and parallel workers come and go.
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                " ORDER BY backend_start, pid"
            )
        finally:
            await conn.close()
        self._pids += [row["pid"] for row in rows if row["pid"] not in self._pids]

    def meters(self) -> dict[str, Callable[[], int | None]]:
        def slot(i: int) -> Callable[[], int | None]:
            return lambda: self._pids[i] if i < len(self._pids) else None

        return {f"postgres {i + 1}": slot(i) for i in range(self._slots)}


def merge_backends(cpu: dict[str, float]) -> dict[str, float]:
    """One "postgres" entry for all backend slots a `DatabaseBackends` meter had."""
    merged: dict[str, float] = {}
    for name, seconds in cpu.items():
        key = "postgres" if name.startswith("postgres ") else name
        if key == "postgres":
            seconds = max(seconds, 0.0)  # a backend gone by the end reads 0: its time is lost
        merged[key] = round(merged.get(key, 0.0) + seconds, 2)
    return merged
