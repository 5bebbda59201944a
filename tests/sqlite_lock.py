"""What holds a SQLite file's write lock after the bridge on it closed.

A closed sqlite3 connection whose statements are still referenced (by a live cursor) stays
open as a "zombie", with its transaction and locks, until they are freed; a bridge started
next on the same file then meets "database is locked". Seen in CI; this report found the
cause (a cursor kept by a cancelled task's traceback, `bridge/storage/sqlite.py`), and stays
to name any other: threads, aiosqlite connections and their queues, cursors and what refers
to them. A warning, not a failure: only a later bridge on the file is hurt by it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
import sys
import threading
import traceback
import warnings

import aiosqlite


def report_sqlite_lock(path: str) -> None:
    """Warn, saying what may hold it, when ``path`` does not take a write lock."""
    if takes_write_lock(path):
        return
    fds = [fd for fd in os.listdir("/proc/self/fd") if _points_at(fd, path)]
    tasks = [repr(task) for task in asyncio.all_tasks() if not task.done()][:20]
    gc.collect()
    freed = takes_write_lock(path)
    warnings.warn(
        f"{path} still write-locked after the bridge closed; {len(fds)} descriptors of this"
        f" process on it; after gc.collect() it is {'free' if freed else 'still locked'};"
        f" tasks still running: {tasks}; {_connections()}; {_cursors()}; {_threads()}",
        stacklevel=2,
    )


def _connections() -> str:
    """Each aiosqlite connection alive: running, open, its queue's length, its thread."""
    found = [obj for obj in gc.get_objects() if isinstance(obj, aiosqlite.Connection)]
    states = [
        f"(running={c._running}, open={c._connection is not None}, queued={c._tx.qsize()},"
        f" thread alive={c._thread.is_alive()})"
        for c in found
    ]
    return f"{len(found)} aiosqlite connections alive: {states}"


def _cursors() -> str:
    """Each sqlite3 cursor alive: whether its connection is closed, what holds it, and what
    holds those."""
    cursors = [obj for obj in gc.get_objects() if isinstance(obj, sqlite3.Cursor)]
    described = []
    for cursor in cursors[:10]:
        try:
            state = "in a transaction" if cursor.connection.in_transaction else "idle"
        except sqlite3.ProgrammingError:
            state = "closed"
        holders = [
            f"{_name(holder)} <- {sorted({_name(h) for h in gc.get_referrers(holder)})[:6]}"
            for holder in gc.get_referrers(cursor)
            if holder is not cursors
        ]
        described.append(f"(connection {state}; held by {holders})")
    return f"{len(cursors)} sqlite3 cursors alive: {described}"


def _threads() -> str:
    """Every thread but this one, with the innermost frames of its stack."""
    frames = sys._current_frames()
    stacks = []
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.ident not in frames:
            continue
        where = traceback.format_stack(frames[thread.ident], limit=3)
        stacks.append(f"{thread.name}: {' | '.join(line.strip() for line in where)}")
    return f"threads: {stacks}"


def _name(obj: object) -> str:
    if isinstance(obj, type(sys._getframe())):
        return f"frame {obj.f_code.co_name} ({obj.f_code.co_filename}:{obj.f_lineno})"
    if callable(obj) and hasattr(obj, "__qualname__"):
        return f"{type(obj).__name__} {obj.__qualname__}"
    return type(obj).__name__


def takes_write_lock(path: str) -> bool:
    """Whether another connection can start writing to ``path`` at once."""
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()


def _points_at(fd: str, path: str) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith(path)
    except OSError:  # closed meanwhile
        return False
