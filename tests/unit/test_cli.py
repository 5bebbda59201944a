"""The CLI and the registration it writes: exclusive namespaces, receipts, no throttle."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import yaml

from bridge.__main__ import main
from bridge.deployment import registration_for
from tests.harness import free_port, make_config, webhook_secret


@pytest.fixture
def config():
    return make_config(database_url="sqlite:data/x.db")


def test_namespaces_hold_the_bot_and_our_aliases_exclusively(config) -> None:
    registration = registration_for(config)
    (users,) = registration["namespaces"]["users"]
    (aliases,) = registration["namespaces"]["aliases"]
    assert users["exclusive"] and aliases["exclusive"]
    assert re.match(users["regex"], "@marketbot:localhost")
    assert not re.match(users["regex"], "@marketbot2:localhost")
    assert not re.match(users["regex"], "@marketbot:localhost.evil")
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
    from bridge.devstack import dev_config

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
