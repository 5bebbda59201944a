"""The full comparison as a command, on a real Synapse: `python -m bridge reconcile` puts back
drift the running bridge never heard of (its events lost), beside the bridge's own runs."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import yaml
from aiohttp import ClientSession

from tests.e2e.stack import Stack, appservice_bot, join, state
from tests.harness import config_data


async def test_the_reconcile_command_compares_every_room(stack: Stack, tmp_path: Path) -> None:
    async with stack.running():
        room_id = await stack.create()
        await join(stack.buyer, room_id)
        await stack.transition(room_id, "/payment")
    async with ClientSession() as session:
        tamper = appservice_bot(stack.config, session)
        levels = await tamper.get_state(room_id, "m.room.power_levels")
        await tamper.send_state(room_id, "m.room.power_levels", {**levels, "events_default": 50})
    config_path = tmp_path / "bridge.yaml"
    config_path.write_text(yaml.safe_dump(config_data(stack.config)))
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bridge", "reconcile", "-c", str(config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Compared "), done.stdout
    assert int(done.stdout.split()[1]) >= 1
    levels = await state(stack.buyer, room_id, "m.room.power_levels")
    assert levels["events_default"] == 0
