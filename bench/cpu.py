"""CPU time of each process of a run (read from /proc), so shared cores show who spent them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmHWM for {pid}")


class CpuMeter:
    """CPU seconds each named process spends between ``start()`` and ``stop()``."""

    def __init__(self, processes: dict[str, Callable[[], int | None]]) -> None:
        self._processes = {"bench driver": os.getpid, **processes}
        self._started: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        found = {}
        for name, pid_of in self._processes.items():
            pid = pid_of()
            if pid is not None:
                found[name] = cpu_seconds(pid)
        return found

    def start(self) -> None:
        self._started = self._now()

    def stop(self) -> dict[str, float]:
        now = self._now()
        return {name: round(now[name] - self._started.get(name, 0.0), 2) for name in now}
