"""Our Standard Webhooks signatures, checked with someone else's code."""

from __future__ import annotations

import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from bridge.delivery.signing import Signer
from tests.harness import webhook_secret

BODY = (
    b'{"type":"message.created","id":"msg_1","occurred_at":"2026-01-01T00:00:00.000Z","data":{}}'
)


def test_a_signature_verifies_with_the_standard_library() -> None:
    secret = webhook_secret()
    headers = Signer([secret]).headers("msg_1", BODY, int(time.time()))
    assert headers["webhook-id"] == "msg_1"
    assert Webhook(secret).verify(BODY, headers)["id"] == "msg_1"


def test_while_rotating_both_secrets_verify() -> None:
    old, new = webhook_secret(), webhook_secret()
    headers = Signer([old, new]).headers("msg_1", BODY, int(time.time()))
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers)


def test_a_wrong_secret_a_changed_body_or_an_old_timestamp_fail() -> None:
    secret = webhook_secret()
    headers = Signer([secret]).headers("msg_1", BODY, int(time.time()))
    with pytest.raises(WebhookVerificationError):
        Webhook(webhook_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"created", b"deleted"), headers)
    stale = Signer([secret]).headers("msg_1", BODY, int(time.time()) - 3600)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, stale)
