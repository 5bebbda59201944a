"""`make run` from a copy of the project, as a newcomer would start it: the stack the tests of
`make run` itself and the web chat's browser tests drive from outside."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import free_port

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("VENV", ROOT / ".venv")).resolve()
STOP_WITHIN = 30.0
READY_WITHIN = 120.0
SHELL_WITHIN = 60.0
SKIP = shutil.ignore_patterns(
    ".venv", ".git", ".dev", "data", "__pycache__", ".*_cache", "node_modules", "test-artifacts"
)
# A shell as the reader's, except that an HTTP error or a failed command stops it.
PROLOGUE = 'set -euo pipefail\ncurl() { command curl --fail-with-body --show-error "$@"; }\n'


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=SKIP)  # copy2 keeps mtimes: the venv stays up to date
    return copy


class MakeRun:
    def __init__(self, project: Path) -> None:
        self.project = project
        self.stack_file = project / ".dev" / "stack.json"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "DEV_"))},
            "DEV_HOMESERVER_PORT": str(free_port()),
            "DEV_BRIDGE_PORT": str(free_port()),
            "DEV_WEBHOOK_PORT": str(free_port()),
            "DEV_DEMO_PORT": str(free_port()),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> float:
        """Start `make run`; returns seconds until stack.json appeared."""
        self.stack_file.unlink(missing_ok=True)
        started = time.monotonic()
        # The project's own venv: `-o` keeps make from reinstalling it into this copy.
        stamp = VENV / ".run-installed"
        self.process = subprocess.Popen(
            ["make", "run", f"VENV={VENV}", "-o", str(stamp)],
            cwd=self.project,
            env=self.env,
            stdout=(self.project / "make-run.log").open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, as in a terminal
        )
        while not self.stack_file.exists():
            assert self.process.poll() is None, self.log()
            assert time.monotonic() - started < READY_WITHIN, self.log()
            time.sleep(0.1)
        return time.monotonic() - started

    def stack(self) -> dict:
        return json.loads(self.stack_file.read_text())

    def log(self, tail: int = 4000) -> str:
        return (self.project / "make-run.log").read_text(errors="replace")[-tail:]

    def shell(self, script: str) -> str:
        """Run commands as a reader pastes them, in the project's directory; their output."""
        path = os.pathsep.join([str(VENV / "bin"), self.env.get("PATH", "")])  # has python3
        done = subprocess.run(
            ["bash", "-c", PROLOGUE + script],
            cwd=self.project,
            env={**self.env, "PATH": path},
            capture_output=True,
            text=True,
            timeout=SHELL_WITHIN,
            check=False,
        )
        assert done.returncode == 0, f"{script}\n--- stdout:\n{done.stdout}\n--- {done.stderr}"
        return done.stdout

    def terminate(self) -> float:
        """SIGTERM to the whole group; returns seconds until no process of it was left."""
        assert self.process is not None
        group = os.getpgid(self.process.pid)
        started = time.monotonic()
        os.killpg(group, signal.SIGTERM)
        while time.monotonic() - started < STOP_WITHIN:
            self.process.poll()
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return time.monotonic() - started
            time.sleep(0.1)
        os.killpg(group, signal.SIGKILL)
        raise AssertionError(f"processes left after {STOP_WITHIN}s:\n{self.log()}")


@pytest.fixture
def make_run(project: Path) -> Iterator[MakeRun]:
    run = MakeRun(project)
    yield run
    if run.process is not None and run.process.poll() is None:
        os.killpg(os.getpgid(run.process.pid), signal.SIGKILL)
