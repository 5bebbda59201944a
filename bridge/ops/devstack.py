"""The local stack (``make run``) and the Synapse it shares with the test harness.

    run_dev_stack: config (secrets generated once) -> registration -> bridge listens
                   -> Synapse from the venv starts -> demo users -> stack.json -> bridge
                   connects ... SIGINT/SIGTERM -> bridge stops -> Synapse stops

Synapse runs as a child process (``python -m synapse.app.homeserver``), so the bridge itself
never imports it. Stopping uses SIGTERM: Synapse ignores SIGINT when it is a background job of
a non-interactive shell.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from bridge.app import run_bridge
from bridge.config import Config, build_config
from bridge.gateway.server import start_gateway
from bridge.ops.deployment import (
    BRIDGE_SECRET_KEYS,
    SYNAPSE_SECRET_KEYS,
    bridge_settings,
    homeserver_config,
    lockdown_module,
    new_secret,
    new_webhook_secret,
    write_file,
    write_registration,
)
from bridge.runtime.clock import SystemClock

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


class SynapseError(RuntimeError):
    pass


class LocalSynapse:
    """One Synapse with its own data directory, SQLite database and loopback port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        server_name: str,
        port: int,
        registration_files: list[Path],
        relaxed_rate_limits: bool = False,
        module: dict[str, Any] | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.server_name = server_name
        self.port = port
        self.registration_files = [p.resolve() for p in registration_files]
        self.relaxed_rate_limits = relaxed_rate_limits
        self.module = module  # the marketplace module and the hardened settings, if given
        self.config_path = self.data_dir / "homeserver.yaml"
        self.log_path = self.data_dir / "homeserver.log"
        self._process: subprocess.Popen | None = None
        self.ready_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        """Write homeserver.yaml; secrets already there are kept across runs."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        old = yaml.safe_load(self.config_path.read_text()) if self.config_path.exists() else {}
        config = homeserver_config(
            server_name=self.server_name,
            port=self.port,
            bind_addresses=["127.0.0.1"],
            data_dir=str(self.data_dir),
            database={
                "name": "sqlite3",
                "args": {"database": str(self.data_dir / "homeserver.db")},
            },
            registration_files=[str(p) for p in self.registration_files],
            synapse_secrets={key: old.get(key) or new_secret() for key in SYNAPSE_SECRET_KEYS},
            fast_password_hashing=True,
            relaxed_rate_limits=self.relaxed_rate_limits,
            module=self.module,
        )
        write_file(self.config_path, config, 0o600)

    @property
    def shared_secret(self) -> str:
        return yaml.safe_load(self.config_path.read_text())["registration_shared_secret"]

    def start(self) -> None:
        """Start Synapse and wait until it answers, or raise with the end of its log."""
        self.write_config()
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                cwd=self.data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = started + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise SynapseError(
                    f"Synapse exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            if self._answers("/health"):
                self.ready_seconds = time.monotonic() - started
                return
            time.sleep(0.05)
        self.stop()
        raise SynapseError(f"Synapse did not answer within {READY_TIMEOUT}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def register_user(self, username: str, password: str, *, admin: bool = False) -> dict:
        """Register through the shared-secret admin API; returns user_id and access_token."""
        shared_secret = self.shared_secret.encode()
        url = self.url + "/_synapse/admin/v1/register"
        nonce = self._request("GET", url)["nonce"]
        role = "admin" if admin else "notadmin"
        message = b"\x00".join(p.encode() for p in (nonce, username, password, role))
        digest = hmac.new(shared_secret, message, hashlib.sha1).hexdigest()
        body = {
            "nonce": nonce,
            "username": username,
            "password": password,
            "admin": admin,
            "mac": digest,
        }
        return self._request("POST", url, body)

    def _answers(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=1) as response:  # noqa: S310
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    @staticmethod
    def _request(method: str, url: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 (loopback URL we built)
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            raise SynapseError(f"{method} {url} -> {e.code}: {e.read().decode()}") from None


DEMO_USERS = {"buyer": "alice", "seller": "bob", "admin": "admin"}
SERVER_NAME = "localhost"


def run_dev_stack(data_dir: Path, homeserver_port: int, bridge_port: int, sink_port: int) -> int:
    """``homeserver_port`` is the address clients use: the client gateway's. Synapse itself
    listens on another loopback port, chosen afresh at each start and advertised nowhere."""
    data_dir = data_dir.resolve()
    config = dev_config(
        data_dir, internal_port(), bridge_port, sink_port, gateway_port=homeserver_port
    )
    logging.basicConfig(
        level=config.logging.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    registration = data_dir / "registration.yaml"
    write_registration(config, registration)
    synapse = LocalSynapse(
        data_dir / "synapse",
        server_name=SERVER_NAME,
        port=config.homeserver.url.port or 80,
        registration_files=[registration],
        module=lockdown_module(config.model_dump(mode="json")),
    )

    async def start_synapse() -> None:
        # The bridge listens before Synapse starts, so Synapse's first sends succeed.
        await asyncio.to_thread(synapse.start)
        users = await asyncio.to_thread(ensure_demo_users, synapse, data_dir)
        stack = write_stack_file(data_dir, config, synapse, users)
        print(welcome(stack, synapse.ready_seconds or 0.0, data_dir / "stack.json"), flush=True)

    async def stack() -> None:
        sink = await start_webhook_sink(
            sink_port, [secret.get_secret_value() for secret in config.webhooks.secrets]
        )
        gateway, gateway_session = await start_gateway(config, SystemClock())
        try:
            await run_bridge(config, before_connect=start_synapse)
        finally:
            await gateway.cleanup()
            await gateway_session.close()
            await sink.cleanup()

    try:
        asyncio.run(stack())
    finally:
        synapse.stop()
    return 0


async def start_webhook_sink(port: int, secrets: list[str]) -> web.AppRunner:
    """The dev stack's marketplace: verifies each webhook's signature, prints it on one line."""
    from standardwebhooks import Webhook

    verifiers = [Webhook(secret) for secret in secrets]

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        verified = False
        for verifier in verifiers:
            try:
                verifier.verify(body, headers)
                verified = True
            except Exception:  # noqa: S112 (the next secret may match)
                continue
        if not verified:
            print("webhook REFUSED: bad signature", flush=True)
            return web.Response(status=401)
        event = json.loads(body)
        data = event["data"]
        detail = data.get("preview") or data.get("access") or data.get("event_id") or ""
        print(
            f"webhook {event['type']:<18} {event['id']} {data.get('room_id', '')} {detail!r}",
            flush=True,
        )
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/webhooks", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def internal_port() -> int:
    """A free loopback port for Synapse, which only the bridge and the gateway call."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dev_config(
    data_dir: Path,
    homeserver_port: int,
    bridge_port: int,
    sink_port: int = 29331,
    gateway_port: int = 8008,
) -> Config:
    """The stack's bridge config; its secrets are generated on the first run and kept."""
    path = data_dir / "config.yaml"
    old = yaml.safe_load(path.read_text()) if path.exists() else {}
    data = bridge_settings(
        homeserver_url=f"http://127.0.0.1:{homeserver_port}",
        domain=SERVER_NAME,
        appservice_url=f"http://127.0.0.1:{bridge_port}",
        host="127.0.0.1",
        port=bridge_port,
        database_url=f"sqlite://{data_dir / 'bridge.db'}",
        admins=[f"@{DEMO_USERS['admin']}:{SERVER_NAME}"],
        webhook_url=f"http://127.0.0.1:{sink_port}/webhooks",
        gateway_host="127.0.0.1",
        gateway_port=gateway_port,
    )
    for section, key in BRIDGE_SECRET_KEYS:
        fresh = [new_webhook_secret()] if key == "secrets" else new_secret()
        data[section][key] = old.get(section, {}).get(key) or fresh
    write_file(path, data, 0o600)
    return build_config(data)


def ensure_demo_users(synapse: LocalSynapse, data_dir: Path) -> dict[str, dict[str, str]]:
    """Register the demo users once; their passwords are kept in data_dir/demo-users.yaml."""
    path = data_dir / "demo-users.yaml"
    if path.exists():
        return yaml.safe_load(path.read_text())
    users = {}
    for role, localpart in DEMO_USERS.items():
        password = secrets.token_urlsafe(12)
        account = synapse.register_user(localpart, password, admin=role == "admin")
        users[role] = {"user_id": account["user_id"], "password": password}
    write_file(path, users, 0o600)
    return users


def write_stack_file(
    data_dir: Path, config: Config, synapse: LocalSynapse, users: dict
) -> dict[str, object]:
    """stack.json: everything a person or a script needs to use the running stack."""
    stack = {
        "homeserver_url": f"http://{config.gateway.host}:{config.gateway.port}",
        "server_name": synapse.server_name,
        "registration_shared_secret": synapse.shared_secret,
        "api_url": f"{str(config.appservice.url).rstrip('/')}/api/v1",
        "api_token": config.api.token.get_secret_value(),
        "users": users,
    }
    path = data_dir / "stack.json"
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(json.dumps(stack, indent=2) + "\n")
    return stack


def welcome(stack: dict, ready_seconds: float, stack_path: Path) -> str:
    users = stack["users"]
    logins = "\n".join(
        f"    {user['user_id']:<20} password {user['password']:<18} ({role})"
        for role, user in users.items()
    )
    transaction = {
        "transaction_id": "demo-1",
        "title": "Vintage bike",
        "buyer": {"user_id": "buyer-1", "matrix_id": users["buyer"]["user_id"]},
        "seller": {"user_id": "seller-1", "matrix_id": users["seller"]["user_id"]},
    }
    return f"""
The local stack is up (Synapse answered {ready_seconds:.1f}s after launch).

  Homeserver: {stack["homeserver_url"]}  (server name {stack["server_name"]})
  Sign in with Element Desktop or any Matrix client: choose "Edit" under the homeserver,
  enter {stack["homeserver_url"]}, then one of
{logins}

  Create a transaction room (it stays read-only until payment):
    curl -X POST {stack["api_url"]}/transactions \\
      -H 'Authorization: Bearer {stack["api_token"]}' \\
      -H 'Content-Type: application/json' -d '{json.dumps(transaction)}'
  Then open it:
    curl -X POST {stack["api_url"]}/transactions/demo-1/payment \\
      -H 'Authorization: Bearer {stack["api_token"]}'

  Webhooks go to a receiver in this process that checks each signature and prints a line.
  All of this is in {stack_path}. Ctrl-C stops everything.
"""
