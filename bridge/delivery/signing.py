"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

    signed content = "<webhook-id>.<webhook-timestamp>.<body>"
    webhook-signature = "v1,<base64 HMAC-SHA256>" for each secret, space-separated

A fresh timestamp on every attempt: receivers reject old ones to stop replays.
"""

from __future__ import annotations

import base64
import hmac


class Signer:
    def __init__(self, secrets: list[str]) -> None:
        self._keys = [base64.b64decode(secret.removeprefix("whsec_")) for secret in secrets]

    def headers(self, webhook_id: str, body: bytes, timestamp: int) -> dict[str, str]:
        content = f"{webhook_id}.{timestamp}.".encode() + body
        signatures = " ".join(
            "v1," + base64.b64encode(hmac.digest(key, content, "sha256")).decode()
            for key in self._keys
        )
        return {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures,
            "content-type": "application/json",
        }
