"""Config: the example loads once secrets come from the environment; bad values name their key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bridge.config import Config, ConfigError, build_config, config_reference, load_config
from policy.contact import DEFAULT_TERMS
from tests.harness import make_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.yaml"
SECRET_KEYS = {
    "appservice.as_token": "BRIDGE_APPSERVICE__AS_TOKEN",
    "appservice.hs_token": "BRIDGE_APPSERVICE__HS_TOKEN",
    "api.token": "BRIDGE_API__TOKEN",
    "webhooks.secrets": "BRIDGE_WEBHOOKS__SECRETS",
}


@pytest.fixture
def secrets_in_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {env: f"{key}-" + "s" * 40 for key, env in SECRET_KEYS.items()}
    values["BRIDGE_WEBHOOKS__SECRETS"] = '["whsec_' + "c2VjcmV0" * 5 + '"]'

    for env, value in values.items():
        monkeypatch.setenv(env, value)
    return values


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def error_for(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        build_config(data)
    return str(info.value)


def test_the_example_loads_with_secrets_from_the_environment(secrets_in_env: dict) -> None:
    config = load_config(EXAMPLE)
    env = {key: secrets_in_env[name] for key, name in SECRET_KEYS.items()}
    assert config.appservice.as_token.get_secret_value() == env["appservice.as_token"]
    assert config.appservice.hs_token.get_secret_value() == env["appservice.hs_token"]
    assert config.api.token.get_secret_value() == env["api.token"]
    assert config.bot_mxid == "@marketbot:localhost"
    assert config.database.url == "sqlite:data/bridge.db"
    # Secrets stay out of reprs, so out of logs and tracebacks.
    assert env["appservice.as_token"] not in repr(config)


def test_the_example_placeholders_are_refused_naming_each_secret() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE)
    message = str(info.value)
    for key, env in SECRET_KEYS.items():
        assert f"{key}: is still the example's placeholder" in message
        assert env in message


def test_every_key_of_the_example_is_commented() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^ +[a-z_]+:", line):
            assert lines[number - 1].lstrip().startswith("#"), f"key without comment: {line}"


def test_the_example_ships_the_default_off_platform_terms() -> None:
    assert example()["policy"]["off_platform_terms"] == list(DEFAULT_TERMS)


def test_the_environment_overrides_the_file(
    secrets_in_env: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_SERVER__PORT", "8123")
    monkeypatch.setenv("BRIDGE_DATABASE__URL", "postgresql://bridge@db/bridge")
    config = load_config(EXAMPLE)
    assert config.server.port == 8123
    assert config.database.url == "postgresql://bridge@db/bridge"
    assert config.server.host == "127.0.0.1"  # the rest of the section still from the file


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("homeserver", "url", "not a url", "homeserver.url: "),
        ("homeserver", "domain", "bad domain!", "homeserver.domain: is not a valid Matrix server"),
        ("appservice", "id", "", "appservice.id: "),
        ("appservice", "url", "ftp://x", "appservice.url: "),
        ("appservice", "bot_localpart", "Bot", "appservice.bot_localpart: may only contain"),
        ("appservice", "alias_prefix", "a b", "appservice.alias_prefix: may only contain"),
        ("appservice", "max_transaction_bytes", 10, "appservice.max_transaction_bytes: "),
        ("server", "port", 70000, "server.port: "),
        ("server", "port", "eighty", "server.port: "),
        ("database", "url", "mysql://x/y", "database.url: must be sqlite:"),
        ("database", "max_connections", 0, "database.max_connections: "),
        ("logging", "level", "LOUD", "logging.level: "),
        ("logging", "colour", "blue", "logging.colour: is not a known key"),
        ("api", "max_body_bytes", 10, "api.max_body_bytes: "),
        ("api", "allowed_matrix_servers", ["bad server"], "api.allowed_matrix_servers: "),
        ("rooms", "version", "9", "rooms.version: "),
        ("rooms", "admins", ["admin"], "rooms.admins: 'admin' is not a Matrix user ID"),
    ],
)
def test_each_bad_value_names_its_key(
    secrets_in_env: dict, section: str, key: str, value: object, expected: str
) -> None:
    data = example()
    data[section][key] = value
    assert expected in error_for(data)


def test_a_short_secret_is_refused(secrets_in_env: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_APPSERVICE__HS_TOKEN", "short")
    assert "appservice.hs_token: must be at least 32 characters" in error_for(example())


def test_a_missing_key_is_named(secrets_in_env: dict) -> None:
    data = example()
    del data["server"]["port"]
    del data["logging"]
    message = error_for(data)
    assert "server.port: is missing (env BRIDGE_SERVER__PORT)" in message
    assert "logging: is missing" in message


def test_an_unreadable_or_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("homeserver: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(listing)


def test_the_configuration_reference_matches_the_model() -> None:
    documented = (ROOT / "docs" / "configuration.md").read_text()
    assert documented == config_reference(example()), "run `make docs`"
    for section, field in Config.model_fields.items():
        for key, info in field.annotation.model_fields.items():
            assert info.description, f"{section}.{key} has no description"
            assert f"`{section}.{key}`" in documented


@pytest.mark.parametrize(("old", "new"), [(True, "refuse"), (False, "off")])
def test_the_renamed_before_delivery_key_keeps_working_with_a_warning(
    secrets_in_env: dict, old: bool, new: str
) -> None:
    data = example()
    del data["lockdown"]["before_delivery"]
    data["lockdown"]["reject_before_delivery"] = old
    with pytest.warns(FutureWarning, match="reject_before_delivery is deprecated"):
        config = build_config(data)
    assert config.lockdown.before_delivery == new


def test_the_bot_and_admins_cannot_fall_in_the_managed_namespace() -> None:
    with pytest.raises(ConfigError, match=r"identity\.user_prefix"):
        make_config(database_url="sqlite:x.db", identity={"user_prefix": "marketb"})
    with pytest.raises(ConfigError, match="@market_mod:localhost would be"):
        make_config(database_url="sqlite:x.db", rooms={"admins": ["@market_mod:localhost"]})


def test_webchat_origins_are_bare_origins() -> None:
    config = make_config(
        database_url="sqlite:x.db",
        webchat={"allowed_origins": ["https://Market.Example.org", "http://127.0.0.1:8080/"]},
    )
    assert config.webchat.allowed_origins == [
        "https://market.example.org",
        "http://127.0.0.1:8080",
    ]
    for bad in (
        "https://market.example.org/chat",
        "market.example.org",
        "ftp://x.org",
        "https://",
    ):
        with pytest.raises(ConfigError, match=r"webchat\.allowed_origins"):
            make_config(database_url="sqlite:x.db", webchat={"allowed_origins": [bad]})


def test_webchat_theme_values_cannot_leave_their_declaration() -> None:
    theme = {"--mc-accent": "#0b6bcb", "--mc-font": '"Inter", system-ui, sans-serif'}
    config = make_config(database_url="sqlite:x.db", webchat={"theme": theme})
    assert config.webchat.theme == theme
    for name, value in (
        ("--mc-accent", "red; } body { display: none"),
        ("--mc-accent", "red /* comment"),
        ("--mc-accent", "url(javascript:x)</style>"),
        ("color", "red"),
    ):
        with pytest.raises(ConfigError, match=r"webchat\.theme"):
            make_config(database_url="sqlite:x.db", webchat={"theme": {name: value}})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30, 30.0),
        ("90s", 90.0),
        ("10m", 600.0),
        ("12h", 43200.0),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        ("off", None),
        (None, None),
        (False, None),
    ],
)
def test_reminder_delays_read_seconds_units_and_off(value: object, seconds: float | None) -> None:
    config = make_config(database_url="sqlite:x.db", reminders={"unread_after": value})
    assert config.reminders.unread_after == seconds


@pytest.mark.parametrize(
    ("section", "key", "value", "problem"),
    [
        ("reminders", "unread_after", 0, "must be between 1 second and 30 days"),
        ("reminders", "repeat_after", "31d", "must be between 1 second and 30 days"),
        ("deals", "nudge_after", "-5m", "is not a duration"),
        ("deals", "escalate_after", "soon", "is not a duration"),
        ("deals", "nudge_after", True, "must be a duration"),
    ],
)
def test_delays_out_of_range_fail_naming_the_key(
    section: str, key: str, value: object, problem: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        make_config(database_url="sqlite:x.db", **{section: {key: value}})
    env = f"BRIDGE_{section.upper()}__{key.upper()}"
    assert f"{section}.{key}: " in str(raised.value) and env in str(raised.value)
    assert problem in str(raised.value)


@pytest.mark.parametrize(
    ("deals", "problem"),
    [
        ({"nudge_after": "12h", "escalate_after": "6h"}, "escalate_after must be later than"),
        ({"nudge_after": "12h", "escalate_after": "12h"}, "escalate_after must be later than"),
        ({"auto_dispute": True}, "auto_dispute needs escalate_after"),
    ],
)
def test_escalation_settings_that_contradict_each_other_fail(deals: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make_config(database_url="sqlite:x.db", deals=deals)
    assert problem in str(raised.value)


def test_delays_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_REMINDERS__UNREAD_AFTER", "20s")
    monkeypatch.setenv("BRIDGE_DEALS__NUDGE_AFTER", "1m")
    monkeypatch.setenv("BRIDGE_DEALS__ESCALATE_AFTER", "2m")
    monkeypatch.setenv("BRIDGE_DEALS__AUTO_DISPUTE", "true")
    config = make_config(database_url="sqlite:x.db")
    assert (config.reminders.unread_after, config.deals.nudge_after) == (20.0, 60.0)
    assert (config.deals.escalate_after, config.deals.auto_dispute) == (120.0, True)


@pytest.mark.parametrize(
    ("value", "days"),
    [
        (30, 30.0),
        (0.5, 0.5),
        ("90s", 90 / 86400),
        ("12h", 0.5),
        ("2d", 2.0),
        ("off", None),
        (False, None),
        (None, None),
        (0, 0.0),
    ],
)
def test_retention_periods_read_days_units_and_off(value: object, days: float | None) -> None:
    config = make_config(database_url="sqlite:x.db", retention={"resolved_dispute_days": value})
    assert config.retention.resolved_dispute_days == days


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("resolved_dispute_days", -1),
        ("resolved_dispute_days", "-5d"),
        ("resolved_dispute_days", 36501),
        ("resolved_dispute_days", "nan"),
        ("resolved_dispute_days", "forever"),
        ("resolved_dispute_days", True),
        ("hold_after_resolution_days", "off"),
        ("hold_after_resolution_days", -0.5),
        ("webhooks_days", "1e9"),
    ],
)
def test_negative_or_absurd_retention_fails_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as raised:
        make_config(database_url="sqlite:x.db", retention={key: value})
    assert f"retention.{key}: " in str(raised.value)
    assert f"BRIDGE_RETENTION__{key.upper()}" in str(raised.value)


def test_a_bad_period_per_outcome_names_the_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_RETENTION__CLOSED_TRANSACTION_DAYS__REFUNDED", "-3")
    with pytest.raises(ConfigError) as raised:
        make_config(database_url="sqlite:x.db")
    assert "retention.closed_transaction_days.refunded: " in str(raised.value)
