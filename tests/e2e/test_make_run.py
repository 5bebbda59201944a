"""`make run` from a copy of the project, as a newcomer would: up, usable, stopped cleanly."""

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
from aiohttp import ClientSession
from nio import AsyncClient, LoginResponse, RoomCreateError, SyncResponse

from tests.harness import MAKE_RUN_READY, eventually, free_port

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("VENV", ROOT / ".venv")).resolve()
STOP_WITHIN = 30.0
READY_WITHIN = 120.0
SKIP = shutil.ignore_patterns(".venv", ".git", ".dev", "data", "__pycache__", ".*_cache")


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

    def log(self) -> str:
        return (self.project / "make-run.log").read_text(errors="replace")[-4000:]

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


async def login(homeserver_url: str, user: dict) -> AsyncClient:
    client = AsyncClient(homeserver_url, user["user_id"])
    response = await client.login(user["password"])
    assert isinstance(response, LoginResponse), response
    return client


async def invited_to(client: AsyncClient, room_id: str) -> bool:
    response = await client.sync(timeout=0)
    assert isinstance(response, SyncResponse), response
    return room_id in response.rooms.invite or room_id in response.rooms.join


async def test_make_run_gives_a_working_stack_and_stops_cleanly(
    make_run: MakeRun, pytestconfig: pytest.Config
) -> None:
    first_ready = make_run.start()
    stack = make_run.stack()
    assert set(stack) == {
        "homeserver_url",
        "server_name",
        "registration_shared_secret",
        "api_url",
        "api_token",
        "users",
    }
    assert set(stack["users"]) == {"buyer", "seller", "admin"}
    headers = {"Authorization": f"Bearer {stack['api_token']}"}
    async with ClientSession() as session:
        async with session.get(stack["homeserver_url"] + "/_matrix/client/versions") as r:
            assert r.status == 200
        transaction = {
            "transaction_id": "demo-1",
            "title": "Vintage bike",
            "buyer": {"user_id": "buyer-1", "matrix_id": stack["users"]["buyer"]["user_id"]},
            "seller": {"user_id": "seller-1", "matrix_id": stack["users"]["seller"]["user_id"]},
        }
        async with session.post(
            stack["api_url"] + "/transactions", json=transaction, headers=headers
        ) as r:
            assert r.status == 201, await r.text()
            room_id = (await r.json())["room_id"]
        for role in ("buyer", "seller"):
            client = await login(stack["homeserver_url"], stack["users"][role])
            await eventually(lambda c=client: invited_to(c, room_id))
            await client.close()
        admin = await login(stack["homeserver_url"], stack["users"]["admin"])
        await admin.close()
        # make run's Synapse is the hardened one: the buyer opens no room of their own.
        buyer = await login(stack["homeserver_url"], stack["users"]["buyer"])
        refused = await buyer.room_create(invite=[stack["users"]["seller"]["user_id"]])
        await buyer.close()
        assert isinstance(refused, RoomCreateError) and refused.status_code == "M_FORBIDDEN"
        # Its webhook receiver verifies each notification and prints it.
        async with session.post(
            stack["api_url"] + "/transactions/demo-1/payment", headers=headers
        ) as r:
            assert r.status == 200, await r.text()

        async def printed() -> bool:
            return "webhook room.state_changed" in make_run.log() and room_id in make_run.log()

        await eventually(printed)
        assert "REFUSED" not in make_run.log()

    first_stop = make_run.terminate()

    # A second run keeps the users, their passwords and the rooms.
    second_ready = make_run.start()
    assert make_run.stack()["users"] == stack["users"]
    assert make_run.stack()["api_token"] == stack["api_token"]
    async with ClientSession() as session:
        async with session.get(stack["api_url"] + "/transactions/demo-1", headers=headers) as r:
            assert r.status == 200
            assert (await r.json())["room_id"] == room_id
    second_stop = make_run.terminate()
    pytestconfig.stash.setdefault(MAKE_RUN_READY, []).extend(
        [("first run", first_ready, first_stop), ("second run", second_ready, second_stop)]
    )
