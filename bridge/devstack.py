"""A Synapse from the venv on loopback: for ``make run`` and for the test harness.

Synapse runs as a child process (``python -m synapse.app.homeserver``), so the bridge itself
never imports it. Stopping uses SIGTERM: Synapse ignores SIGINT when it is a background job of
a non-interactive shell.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

# Generous limits for the people in tests (they log in, join and post in bursts). Room
# creation and invites keep Synapse's defaults on purpose: the bot must be exempt from those
# through ``rate_limited: false`` in its registration, and raising them here would hide it.
_RELAXED = {"per_second": 1000, "burst_count": 1000}
RELAXED_RATE_LIMITS: dict[str, Any] = {
    "rc_message": _RELAXED,
    "rc_registration": _RELAXED,
    "rc_login": {"address": _RELAXED, "account": _RELAXED, "failed_attempts": _RELAXED},
    "rc_joins": {"local": _RELAXED, "remote": _RELAXED},
    "rc_joins_per_room": _RELAXED,
    "rc_admin_redaction": _RELAXED,
    "rc_presence": {"per_user": _RELAXED},
    "rc_media_create": _RELAXED,
    "rc_profile": _RELAXED,
    "rc_reports": _RELAXED,
    "rc_user_directory": _RELAXED,
    "rc_delayed_event_mgmt": _RELAXED,
}


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
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.server_name = server_name
        self.port = port
        self.registration_files = [p.resolve() for p in registration_files]
        self.relaxed_rate_limits = relaxed_rate_limits
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
        secret_keys = ("registration_shared_secret", "macaroon_secret_key", "form_secret")
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "pid_file": str(self.data_dir / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {
                "name": "sqlite3",
                "args": {"database": str(self.data_dir / "homeserver.db")},
            },
            "media_store_path": str(self.data_dir / "media"),
            "signing_key_path": str(self.data_dir / "signing.key"),
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "enable_registration": False,
            "bcrypt_rounds": 4,
            "app_service_config_files": [str(p) for p in self.registration_files],
            **{key: old.get(key) or secrets.token_urlsafe(32) for key in secret_keys},
            **(RELAXED_RATE_LIMITS if self.relaxed_rate_limits else {}),
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.config_path.chmod(0o600)

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
        config = yaml.safe_load(self.config_path.read_text())
        shared_secret = config["registration_shared_secret"].encode()
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
