"""8. The web chat: its weight, and its first render with history, in Debian's Chromium.

    `make run`'s stack (python -m bridge dev, its own Synapse) -> a paid transaction between
    the demo buyer and seller -> N messages of history, posted by the appservice as each party
    in turn -> the buyer's page (the demo page, one-party mode) opened afresh R times ->
    navigation to the newest message shown, the median

Baseline in the same run: the same page for a room with no history (session minting, the
first sync, the bundle's load and parse), so the figure of interest is what history adds.
The bundle's weight is what the chat's page downloads (chat.js, its chunk, the stylesheet),
gzip-compressed as a web server would send it; the end-to-end encryption chunk is never loaded.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from playwright.async_api import async_playwright

from bridge.webchat.assets import STATIC
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.browser.matrix import http_json
from tests.harness import free_port

from .env import Env
from .plan import Scale
from .report import Figure, Result, at_most

READY_WITHIN = 120.0
FIRST_RENDER_TARGET_MS = 1500.0  # the newest of 200 messages on screen, page load included
ADDED_TARGET_MS = 500.0  # what 200 messages of history add to an empty room's first render
BUNDLE_TARGET_KB = 400.0  # gzip: what the page downloads before its first sync


def bundle_kb() -> tuple[float, float]:
    """What the page loads (gzip), and the same uncompressed, in KiB."""
    manifest = json.loads((STATIC / "manifest.json").read_text())
    loaded = [name for name in manifest["outputs"] if name.endswith((".js", ".css", ".html"))]
    loaded = [n for n in loaded if not n.startswith(("rust-crypto", "embed"))]
    raw = sum((STATIC / name).stat().st_size for name in loaded)
    packed = sum(len(gzip.compress((STATIC / name).read_bytes(), 6)) for name in loaded)
    return packed / 1024, raw / 1024


class DevStack:
    """`python -m bridge dev` in a directory of its own; the flood rule raised so one party can
    post the history in a burst (as the appservice, which Synapse does not rate-limit)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "DEV_"))},
            "DEV_DATA_DIR": str(workdir),
            "DEV_HOMESERVER_PORT": str(free_port()),
            "DEV_BRIDGE_PORT": str(free_port()),
            "DEV_WEBHOOK_PORT": str(free_port()),
            "DEV_DEMO_PORT": str(free_port()),
            "BRIDGE_POLICY__FLOOD_MESSAGES": "10000",
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> dict[str, Any]:
        stack_file = self.workdir / "stack.json"
        log = (self.workdir / "dev.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "dev"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: Synapse, its child, stops with it
        )
        deadline = time.monotonic() + READY_WITHIN
        while not stack_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.workdir / "dev.log").read_text()[-3000:])
            time.sleep(0.1)
        return json.loads(stack_file.read_text())

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        group = os.getpgid(self.process.pid)
        os.killpg(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(group, signal.SIGKILL)
            self.process.wait()

    def post_history(self, stack: dict[str, Any], room_id: str, count: int) -> None:
        config = yaml.safe_load((self.workdir / "config.yaml").read_text())
        synapse, as_token = config["homeserver"]["url"], config["appservice"]["as_token"]
        people = [stack["users"]["buyer"]["user_id"], stack["users"]["seller"]["user_id"]]
        for number in range(count):
            sender = people[number % 2]
            path = (
                f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/"
                f"{uuid.uuid4().hex}?user_id={quote(sender)}"
            )
            text = f"History {number}: is it still available? I can pick it up on Friday."
            http_json(synapse + path, as_token, "PUT", {"msgtype": "m.text", "body": text})


async def _first_render_ms(demo_url: str, deal: str, newest: str, runs: int) -> list[float]:
    timings = []
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for _ in range(runs):
                context = await browser.new_context(viewport={"width": 1280, "height": 900})
                page = await context.new_page()
                started = time.perf_counter()
                await page.goto(f"{demo_url}?as=buyer&view=transaction&transaction_id={deal}")
                chat = page.frame_locator("iframe[name=chat]")
                await chat.get_by_text(newest, exact=True).wait_for(timeout=30_000)
                timings.append((time.perf_counter() - started) * 1000)
                await context.close()
        finally:
            await browser.close()
    return timings


async def run(env: Env, scale: Scale) -> Result:
    result = Result("webchat")
    packed, raw = bundle_kb()
    result.figures.append(at_most("bundle, gzip", round(packed, 1), "KiB", BUNDLE_TARGET_KB))
    result.figures.append(Figure("bundle, uncompressed", round(raw, 1), "KiB"))
    with tempfile.TemporaryDirectory(prefix="bench-webchat-") as workdir:
        stack = DevStack(Path(workdir))
        details = stack.start()
        meter = env.meter(**{"make run stack": lambda: stack.process.pid})
        try:
            api, token = details["api_url"], details["api_token"]
            deals = {}
            for history in (0, scale.webchat_history):
                deal = f"bench-{uuid.uuid4().hex[:8]}"
                parties = {"buyer": {"user_id": "buyer-1"}, "seller": {"user_id": "seller-1"}}
                body = {"transaction_id": deal, "title": "Bench", **parties}
                http_json(f"{api}/transactions", token, "POST", body)
                http_json(f"{api}/transactions/{deal}/payment", token, "POST", None)
                room = http_json(f"{api}/transactions/{deal}", token, "GET", None)["room_id"]
                stack.post_history(details, room, history)
                newest = (
                    f"History {history - 1}: is it still available? I can pick it up on Friday."
                    if history
                    else "Payment for “Bench” is confirmed: the chat is open."
                )
                deals[history] = (deal, newest)
            meter.start()
            empty = await _first_render_ms(details["chat_demo_url"], *deals[0], scale.webchat_runs)
            full = await _first_render_ms(
                details["chat_demo_url"], *deals[scale.webchat_history], scale.webchat_runs
            )
            result.cpu_seconds = meter.stop()
        finally:
            stack.stop()
    base, with_history = statistics.median(empty), statistics.median(full)
    label = f"first render, {scale.webchat_history} messages"
    result.figures.append(at_most(label, round(with_history), "ms", FIRST_RENDER_TARGET_MS))
    result.figures.append(Figure("first render, empty room (baseline)", round(base), "ms"))
    result.figures.append(
        at_most("added by the history", round(with_history - base), "ms", ADDED_TARGET_MS)
    )
    result.notes = (
        f"median of {scale.webchat_runs} fresh page loads each (session, first sync, render);"
        " the chat shows the newest 30 events and loads older ones on scroll"
    )
    return result
