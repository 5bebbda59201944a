"""A party's or an admin's plain Matrix calls through the stack's homeserver address (the
client gateway), as any Matrix client makes them: what the other side of a browser test does."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any
from urllib.parse import quote

RATE_LIMITED_TRIES = 50


class MatrixUser:
    def __init__(self, homeserver_url: str, access_token: str) -> None:
        self.url = homeserver_url.rstrip("/") + "/_matrix/client/v3"
        self.token = access_token

    @classmethod
    def login(cls, homeserver_url: str, user: str, password: str) -> MatrixUser:
        answer = http_json(
            f"{homeserver_url.rstrip('/')}/_matrix/client/v3/login",
            None,
            "POST",
            {
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user},
                "password": password,
            },
        )
        return cls(homeserver_url, answer["access_token"])

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return http_json(self.url + path, self.token, method, body)

    def join(self, room_id: str) -> None:
        self.call("POST", f"/rooms/{quote(room_id)}/join", {})

    def send(self, room_id: str, content: dict[str, Any]) -> str:
        path = f"/rooms/{quote(room_id)}/send/m.room.message/{uuid.uuid4().hex}"
        return self.call("PUT", path, content)["event_id"]

    def say(self, room_id: str, text: str) -> str:
        return self.send(room_id, {"msgtype": "m.text", "body": text})

    def redact(self, room_id: str, event_id: str) -> None:
        self.call(
            "PUT", f"/rooms/{quote(room_id)}/redact/{quote(event_id)}/{uuid.uuid4().hex}", {}
        )


def http_json(
    url: str, token: str | None, method: str, body: dict[str, Any] | None
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 (the stack's loopback address)
        url,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers=headers,
    )
    for _ in range(RATE_LIMITED_TRIES):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            answer = e.read()
            if e.code != 429:
                raise AssertionError(f"{method} {url} -> {e.code} {answer!r}") from None
            # Synapse's rate limit on a regular account: wait as long as it says.
            time.sleep(json.loads(answer).get("retry_after_ms", 1000) / 1000)
    raise AssertionError(f"{method} {url}: still rate-limited after {RATE_LIMITED_TRIES} tries")
