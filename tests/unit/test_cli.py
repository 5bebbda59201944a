"""The CLI and the registration it writes: exclusive namespaces, receipts, no throttle."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
import yaml

from bridge.__main__ import main
from bridge.ops.deployment import registration_for
from tests.harness import free_port, make_config, webhook_secret


@pytest.fixture
def config():
    return make_config(database_url="sqlite:data/x.db")


def test_namespaces_hold_the_bot_managed_accounts_and_our_aliases_exclusively(config) -> None:
    registration = registration_for(config)
    users, managed = registration["namespaces"]["users"]
    (aliases,) = registration["namespaces"]["aliases"]
    assert users["exclusive"] and aliases["exclusive"]
    assert re.match(users["regex"], "@marketbot:localhost")
    assert not re.match(users["regex"], "@marketbot2:localhost")
    assert not re.match(users["regex"], "@marketbot:localhost.evil")
    assert managed["exclusive"]
    assert re.match(managed["regex"], "@market__bob=3a1:localhost")
    assert not re.match(managed["regex"], "@marketbot:localhost")
    assert not re.match(managed["regex"], "@market_bob:elsewhere")
    assert re.match(aliases["regex"], "#market_txn-1:localhost")
    assert not re.match(aliases["regex"], "#other:localhost")
    assert not re.match(aliases["regex"], "#market_x:elsewhere")
    assert registration["namespaces"]["rooms"] == []


def test_receipts_are_delivered_and_the_bot_is_not_throttled(config) -> None:
    registration = registration_for(config)
    assert registration["receive_ephemeral"] is True
    assert registration["rate_limited"] is False
    assert registration["sender_localpart"] == "marketbot"
    assert registration["url"] == "http://127.0.0.1:29330"
    assert registration["as_token"] == config.appservice.as_token.get_secret_value()
    assert registration["hs_token"] == config.appservice.hs_token.get_secret_value()


def test_the_cli_writes_a_private_registration(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("BRIDGE_APPSERVICE__AS_TOKEN", "a" * 40)
    monkeypatch.setenv("BRIDGE_APPSERVICE__HS_TOKEN", "h" * 40)
    monkeypatch.setenv("BRIDGE_API__TOKEN", "t" * 40)
    monkeypatch.setenv("BRIDGE_WEBHOOKS__SECRETS", f'["{webhook_secret()}"]')
    output = tmp_path / "out" / "registration.yaml"
    example = Path(__file__).resolve().parents[2] / "config.example.yaml"
    assert main(["generate-registration", "-c", str(example), "-o", str(output)]) == 0
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    written = yaml.safe_load(output.read_text())
    assert written["hs_token"] == "h" * 40
    assert written["id"] == "marketplace"


def test_the_cli_refuses_placeholder_secrets(tmp_path: Path, capsys) -> None:
    example = Path(__file__).resolve().parents[2] / "config.example.yaml"
    output = tmp_path / "registration.yaml"
    assert main(["generate-registration", "-c", str(example), "-o", str(output)]) == 2
    assert "appservice.as_token" in capsys.readouterr().err
    assert not output.exists()


def test_help_explains_both_commands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "run" in text and "generate-registration" in text
    for command in ("run", "generate-registration"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--config" in capsys.readouterr().out


def test_run_names_an_unreachable_database_without_a_traceback(monkeypatch, capsys) -> None:
    monkeypatch.setenv("BRIDGE_APPSERVICE__AS_TOKEN", "a" * 40)
    monkeypatch.setenv("BRIDGE_APPSERVICE__HS_TOKEN", "h" * 40)
    monkeypatch.setenv("BRIDGE_API__TOKEN", "t" * 40)
    monkeypatch.setenv("BRIDGE_WEBHOOKS__SECRETS", f'["{webhook_secret()}"]')
    monkeypatch.setenv("BRIDGE_DATABASE__URL", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    example = Path(__file__).resolve().parents[2] / "config.example.yaml"
    assert main(["run", "-c", str(example)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot start the bridge:")
    assert "Traceback" not in err


def test_the_dev_stack_generates_secrets_once(tmp_path: Path) -> None:
    from bridge.ops.devstack import dev_config

    first = dev_config(tmp_path, 8008, 29330)
    second = dev_config(tmp_path, 8118, 29440)  # other ports, same secrets
    assert first.database.url == second.database.url == f"sqlite://{tmp_path / 'bridge.db'}"
    assert str(second.homeserver.url) == "http://127.0.0.1:8118/"
    assert str(second.appservice.url) == "http://127.0.0.1:29440/"
    assert second.server.port == 29440
    assert second.rooms.admins == ["@admin:localhost"]
    assert first.appservice.as_token == second.appservice.as_token
    assert first.api.token == second.api.token
    assert first.appservice.as_token != first.appservice.hs_token
    assert stat.S_IMODE((tmp_path / "config.yaml").stat().st_mode) == 0o600


def test_the_dev_stack_keeps_the_operators_reminder_and_deal_settings(tmp_path: Path) -> None:
    import yaml

    from bridge.ops.devstack import dev_config

    dev_config(tmp_path, 8008, 29330)
    path = tmp_path / "config.yaml"
    edited = yaml.safe_load(path.read_text())
    edited["reminders"]["unread_after"] = "5s"
    edited["deals"] |= {"nudge_after": "10s", "escalate_after": "20s", "auto_dispute": True}
    edited["server"]["port"] = 1  # the stack's own: rewritten
    path.write_text(yaml.safe_dump(edited))
    again = dev_config(tmp_path, 8008, 29330)
    assert again.reminders.unread_after == 5
    assert (again.deals.nudge_after, again.deals.escalate_after) == (10, 20)
    assert again.deals.auto_dispute is True
    assert again.server.port == 29330


def transcript_file(tmp_path: Path, **changes: object) -> tuple[Path, dict]:
    from policy.transcript import build_transcript

    events = [
        {
            "event_id": f"$m{i}",
            "type": "m.room.message",
            "sender": "@buyer:localhost",
            "origin_server_ts": 1_795_000_000_000 + i,
            "content": {"msgtype": "m.text", "body": f"message {i}"},
        }
        for i in range(3)
    ]
    header = {"room_id": "!r:localhost", "room_kind": "transaction", "transaction_id": "t-1"}
    document = {**build_transcript(header, events, 1_795_600_800_000), **changes}
    path = tmp_path / "transcript.json"
    path.write_text(json.dumps(document, indent=2))
    return path, document


def test_verify_accepts_an_intact_transcript(tmp_path: Path, capsys) -> None:
    path, document = transcript_file(tmp_path)
    assert main(["verify", str(path)]) == 0
    assert capsys.readouterr().out == f"OK: 3 entries, final hash {document['final_hash']}\n"
    assert main(["verify", str(path), "--final-hash", document["final_hash"].upper()]) == 0
    assert capsys.readouterr().out.startswith("OK: 3 entries")


def test_verify_names_each_problem_of_a_tampered_transcript(tmp_path: Path, capsys) -> None:
    path, document = transcript_file(tmp_path)
    document["entries"][1]["body"] = "message one, forged"
    document["transaction_id"] = "t-2"
    path.write_text(json.dumps(document))
    assert main(["verify", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{path}: entry 0 ($m0) does not follow the header" in captured.err
    assert f"{path}: entry 1 ($m1) was edited" in captured.err
    assert "FAILED: 2 problem(s)" in captured.err
    assert "Traceback" not in captured.err


def test_verify_compares_the_final_hash_recorded_elsewhere(tmp_path: Path, capsys) -> None:
    # A wholly recomputed chain is consistent; only the recorded final hash tells.
    path, document = transcript_file(tmp_path)
    assert main(["verify", str(path), "--final-hash", "0" * 64]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"the final hash is {document['final_hash']}, not the expected {'0' * 64}" in (
        captured.err
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        (b"{not json", "is not valid JSON"),
        (b"", "is not valid JSON"),
        (b"\xff\xfe\x00garbage", "is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "is not valid JSON"),
    ],
)
def test_verify_refuses_what_it_cannot_read(tmp_path: Path, capsys, content, message) -> None:
    path = tmp_path / "transcript.json"
    if content is not None:
        path.write_bytes(content)
    assert main(["verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}" if content is not None else "error: cannot read")
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["null", "[]", '"x"', "42", '{"format": 1}'])
def test_verify_reports_json_that_is_no_transcript(tmp_path: Path, capsys, value) -> None:
    path = tmp_path / "transcript.json"
    path.write_text(value)
    assert main(["verify", str(path), "--final-hash", "ab"]) == 1
    assert "problem(s)" in capsys.readouterr().err


def test_help_explains_verify(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "verify" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--final-hash" in text and "audit log" in text


def test_the_dev_stack_keeps_the_operators_retention_settings(tmp_path: Path) -> None:
    from bridge.ops.devstack import dev_config

    first = dev_config(tmp_path, 8008, 29330)
    assert first.retention.transcripts_directory == tmp_path / "transcripts"
    path = tmp_path / "config.yaml"
    edited = yaml.safe_load(path.read_text())
    edited["retention"]["closed_transaction_days"]["completed"] = "2m"
    path.write_text(yaml.safe_dump(edited))
    again = dev_config(tmp_path, 8008, 29330)
    assert again.retention.closed_transaction_days.completed == 120 / 86400


def test_a_retention_dry_run_lists_and_changes_nothing(tmp_path: Path, capsys) -> None:
    config = make_config(database_url=f"sqlite://{tmp_path / 'bridge.db'}")
    path = tmp_path / "config.yaml"
    data = config.model_dump(mode="json")
    for section, key in (("appservice", "as_token"), ("appservice", "hs_token"), ("api", "token")):
        data[section][key] = getattr(getattr(config, section), key).get_secret_value()
    data["webhooks"]["secrets"] = [s.get_secret_value() for s in config.webhooks.secrets]
    path.write_text(yaml.safe_dump(data))
    at = "2026-12-04T10:00:00+00:00"
    assert main(["retention", "-c", str(path), "--dry-run", "--at", at]) == 0
    assert "0 rooms would be removed, 0 kept by holds; 0 webhooks" in capsys.readouterr().out
    assert main(["retention", "-c", str(path), "--at", at]) == 2
    assert "--at is for --dry-run" in capsys.readouterr().err
    assert main(["retention", "-c", str(path), "--dry-run", "--at", "soon"]) == 2
    assert "not an ISO 8601 time" in capsys.readouterr().err
