"""The Synapse that `make run`, the tests and the benchmarks start: one process from the venv,
with its own data directory, SQLite database and loopback port; and free loopback ports.

    LocalSynapse.start()               write homeserver.yaml, launch, wait for /health
    LocalSynapse.start_on_free_ports() the same, on another port when another process bound
                                       the chosen one first (PortTaken)

Synapse runs as a child process (``python -m synapse.app.homeserver``), so the bridge itself
never imports it. Stopping uses SIGTERM: Synapse ignores SIGINT when it is a background job of
a non-interactive shell.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any

import yaml

from bridge.config.identity import OidcConfig
from bridge.ops.deployment import SYNAPSE_SECRET_KEYS, homeserver_config, new_secret, write_file

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
BIND_ATTEMPTS = 3  # ports tried by on_free_ports


class SynapseError(RuntimeError):
    pass


class PortTaken(SynapseError):
    """A Synapse process could not listen on ``port``: another process had bound it first."""

    def __init__(self, port: int, message: str) -> None:
        super().__init__(message)
        self.port = port


def on_free_ports(start: Callable[[], None], move_port: Callable[[int], None]) -> None:
    """``start``, and again after ``move_port`` whenever it fails with PortTaken, up to
    BIND_ATTEMPTS times in all."""
    for _ in range(BIND_ATTEMPTS - 1):
        try:
            start()
            return
        except PortTaken as e:
            move_port(e.port)
    start()


def exit_error(ports: Collection[int], log_tail: str, message: str) -> SynapseError:
    """What a Synapse process that exited at start failed of: PortTaken when its log says it
    could not listen on one of ``ports`` (Twisted's "Couldn't listen on host:port: ...")."""
    for port in ports:
        if f"listen on 127.0.0.1:{port}:" in log_tail:
            return PortTaken(port, message)
    return SynapseError(message)


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
        oidc: OidcConfig | None = None,
        public_baseurl: str | None = None,
        sso_client_whitelist: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.server_name = server_name
        self.port = port
        self.registration_files = [p.resolve() for p in registration_files]
        self.relaxed_rate_limits = relaxed_rate_limits
        self.module = module  # the marketplace module and the hardened settings, if given
        self.oidc = oidc  # "Sign in with the marketplace", if configured
        self.public_baseurl = public_baseurl
        self.sso_client_whitelist = list(sso_client_whitelist)
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
        write_file(self.config_path, self.homeserver_yaml(), 0o600)

    def homeserver_yaml(self) -> dict[str, Any]:
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
            public_baseurl=self.public_baseurl,
            oidc=self.oidc,
            sso_client_whitelist=self.sso_client_whitelist,
            module=self.module,
        )
        # A fresh Synapse has ~55 schema background updates and runs one a second by default;
        # until its user-directory one is done, the directory ignores new rooms (measured:
        # 56 s to finish). Back to back they take a moment, and the database is tiny.
        config["background_updates"] = {"sleep_enabled": False}
        return config

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
                message = f"Synapse exited with {self._process.returncode}:\n{self.log_tail()}"
                raise exit_error(self.ports(), self.log_tail(200), message)
            if self._answers("/health"):
                self.ready_seconds = time.monotonic() - started
                return
            time.sleep(0.05)
        self.stop()
        raise SynapseError(f"Synapse did not answer within {READY_TIMEOUT}s:\n{self.log_tail()}")

    def start_on_free_ports(self) -> None:
        """start(); when another process bound one of its ports first (tests and benchmarks
        pick every server's port from the same range, and a CI-style run saw it happen), again
        on another free port, up to BIND_ATTEMPTS times. Only for a Synapse whose ports
        nobody was told yet: callers read ``url`` after this returns."""
        on_free_ports(self.start, self.move_port)

    def ports(self) -> list[int]:
        """The ports this Synapse's process listens on."""
        return [self.port]

    def move_port(self, port: int) -> None:
        """Listen on another free port instead of ``port`` (one of ``ports()``)."""
        self.port = free_loopback_port(set(self.ports()))

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


def free_loopback_port(taken: Collection[int] = ()) -> int:
    """A free loopback port, none of ``taken`` (ports meant for others, not bound yet), below
    Linux's ephemeral range (32768 and up): a port the kernel hands out from that range can
    become an outgoing connection's source port before the server meant to listen on it
    starts, which then fails to bind."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20000, 32768)
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise SynapseError("no free loopback port for Synapse between 20000 and 32767")
