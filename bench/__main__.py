"""``python -m bench``: every benchmark against loopback servers; a table and a JSON file.

start Synapse (+ the recording appservice) -> each benchmark in turn, each starting and
stopping what else it needs (a bridge process, databases, receivers) -> table on stdout,
figures with their targets in bench/results/latest.json
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from . import (
    actions,
    delivery,
    follow_ups,
    ingest,
    judge,
    latency,
    payment,
    provisioning,
    retention,
    scale,
    scale_out,
    webchat,
)
from .env import bench_env
from .plan import FULL, SMOKE
from .report import Result, table, write_json

BENCHMARKS = {
    "latency": latency.run,
    "provisioning": provisioning.run,
    "payment": payment.run,
    "ingest": ingest.run,
    "delivery": delivery.run,
    "scale": scale.run,
    "retention": retention.run,
    "judge": judge.run,
    "webchat": webchat.run,
    "follow_ups": follow_ups.run,
    "scale_out": scale_out.run,
    "actions": actions.run,
}
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny counts (what make test runs)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--output", type=Path, help=f"JSON file (default {RESULTS})")
    return parser.parse_args(argv)


async def run(names: list[str], smoke: bool, output: Path) -> list[Result]:
    started = time.time()
    mode, scale = ("smoke", SMOKE) if smoke else ("full", FULL)
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        async with bench_env(Path(workdir)) as env:
            return await run_each(
                names,
                lambda name: BENCHMARKS[name](env, scale),
                lambda results: write_json(results, output, mode, started),
            )


async def run_each(
    names: list[str],
    benchmark: Callable[[str], Awaitable[Result]],
    record: Callable[[list[Result]], None],
) -> list[Result]:
    """Each benchmark in turn. One that fails is reported as failed and the others still run
    (a full run takes tens of minutes); what ran is recorded after each, so a run stopped
    part-way keeps what it measured."""
    results = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            results.append(await benchmark(name))
        except Exception as error:
            traceback.print_exc()
            results.append(Result(name, error=f"{type(error).__name__}: {error}"))
        record(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    output = args.output or RESULTS
    results = asyncio.run(run(args.only or list(BENCHMARKS), args.smoke, output))
    print(table(results))
    missed = [f"{r.benchmark}: {f.name}" for r in results for f in r.figures if f.met is False]
    failed = [r.benchmark for r in results if r.error]
    print(f"\nwritten to {output}; " + (f"targets missed: {missed}" if missed else "all met"))
    if failed:
        print(f"benchmarks that failed (their error above): {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
