"""`python -m bench` runs every benchmark it was asked for, even after one of them fails, and
says which failed: a full run takes tens of minutes, and one missing tool must not cost the
figures of all the others."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import run_each
from bench.report import Figure, Result, table, write_json


async def test_a_failing_benchmark_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    recorded: list[list[str]] = []

    async def benchmark(name: str) -> Result:
        if name == "webchat":
            raise RuntimeError("no browser at /usr/bin/chromium")
        return Result(name, figures=[Figure("rate", 1.0, "/s")])

    results = await run_each(
        ["latency", "webchat", "scale"],
        benchmark,
        lambda so_far: recorded.append([r.benchmark for r in so_far]),
    )

    assert [(r.benchmark, r.error) for r in results] == [
        ("latency", ""),
        ("webchat", "RuntimeError: no browser at /usr/bin/chromium"),
        ("scale", ""),
    ]
    # Recorded after each one: a run stopped part-way keeps what it measured.
    assert recorded == [["latency"], ["latency", "webchat"], ["latency", "webchat", "scale"]]
    assert "webchat        FAILED: RuntimeError: no browser" in table(results)
    output = tmp_path / "latest.json"
    write_json(results, output, "full", 0.0)
    document = json.loads(output.read_text())
    assert document["all_targets_met"] is False  # a failed benchmark judged nothing
    assert document["results"][1]["error"].startswith("RuntimeError")
    write_json([results[0], results[2]], output, "full", 0.0)
    assert json.loads(output.read_text())["all_targets_met"] is True
