"""Figures, their targets, and the table and JSON a run ends with."""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Figure:
    name: str
    value: float
    unit: str
    target: str | None = None  # e.g. "<= 10", ">= 0.85"; None: reported, not judged
    met: bool | None = None


def at_most(name: str, value: float, unit: str, limit: float) -> Figure:
    return Figure(name, value, unit, f"<= {limit:g}", value <= limit)


def at_least(name: str, value: float, unit: str, limit: float) -> Figure:
    return Figure(name, value, unit, f">= {limit:g}", value >= limit)


@dataclass
class Result:
    benchmark: str
    figures: list[Figure] = field(default_factory=list)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # process -> CPU time used
    notes: str = ""
    # The work those CPU seconds did, e.g. (1000, "message"): the table prints each
    # process's CPU per unit of it.
    work: tuple[int, str] | None = None
    error: str = ""  # why the benchmark stopped before its end ("": it ran to the end)

    def cpu_per_unit_ms(self) -> dict[str, float]:
        if not self.work or not self.work[0]:
            return {}
        count = self.work[0]
        return {name: seconds * 1000 / count for name, seconds in self.cpu_seconds.items()}


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p95, p99 and max (nearest rank: a figure some sample really had)."""
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered) + 0.5) - 1))]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": ordered[-1]}


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": _cpu_model(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def table(results: list[Result]) -> str:
    lines = [f"{'benchmark':<14} {'figure':<34} {'value':>12} {'target':>10}  met"]
    for result in results:
        if result.error:
            lines.append(f"{result.benchmark:<14} FAILED: {result.error}")
        for figure in result.figures:
            met = "" if figure.met is None else ("yes" if figure.met else "NO")
            value = f"{figure.value:,.2f} {figure.unit}"
            lines.append(
                f"{result.benchmark:<14} {figure.name:<34} {value:>12} "
                f"{figure.target or '':>10}  {met}"
            )
        cpu = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.cpu_seconds.items())
        lines.append(f"{'':<14} CPU: {cpu}")
        if per := result.cpu_per_unit_ms():
            count, unit = result.work or (0, "")
            each = ", ".join(f"{name} {ms:.2f} ms" for name, ms in per.items())
            lines.append(f"{'':<14} CPU per {unit} ({count:,}): {each}")
    return "\n".join(lines)


def write_json(results: list[Result], path: Path, mode: str, started: float) -> None:
    document = {
        "mode": mode,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "all_targets_met": all(
            not r.error and all(f.met is not False for f in r.figures) for r in results
        ),
        "results": [
            {**asdict(result), "cpu_ms_per_unit": result.cpu_per_unit_ms()} for result in results
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def median(samples: list[float]) -> float:
    return statistics.median(samples)
