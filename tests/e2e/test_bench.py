"""The benchmark suite's smoke run: every benchmark runs end to end with tiny counts.

No timing is asserted here (timings belong to `make bench`, compared within one run); this
only keeps the benchmarks working as the code changes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = {
    "latency",
    "provisioning",
    "payment",
    "ingest",
    "delivery",
    "scale",
    "retention",
    "judge",
    "webchat",
    "follow_ups",
    "scale_out",
    "actions",
}


@pytest.mark.timeout(330)  # the web chat's smoke run starts `make run`'s stack and a browser
def test_every_benchmark_runs_and_reports_its_figures(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    document = json.loads(output.read_text())
    assert document["mode"] == "smoke"
    assert {r["benchmark"] for r in document["results"]} == BENCHMARKS
    for result in document["results"]:
        assert result["figures"], result
        assert {"synapse", "bench driver"} <= set(result["cpu_seconds"]), result
        for figure in result["figures"]:
            assert figure["met"] in (True, False, None)
            assert (figure["target"] is None) == (figure["met"] is None), figure
    targets = [f for r in document["results"] for f in r["figures"] if f["target"]]
    assert len(targets) >= 6  # every target of the issue is judged
    assert "added latency p99" in finished.stdout  # the table was printed
