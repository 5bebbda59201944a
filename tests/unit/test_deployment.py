"""The compose stack: docker-compose.yml and the configs it generates agree with each other."""

from __future__ import annotations

import re
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from bridge.config import build_config
from bridge.ops.deployment import COMPOSE, REQUIRED_ENV, DeploymentError, write_deployment

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "SERVER_NAME": "market.example",
    "WEBHOOK_URL": "https://market.example/hooks",
    "PUBLIC_BASEURL": "https://matrix.market.example/",
    "BRIDGE_ADMINS": "@mod:market.example, @boss:market.example",
    "POSTGRES_PASSWORD": "pg-" + "p" * 40,
    "BRIDGE_APPSERVICE__AS_TOKEN": "as-" + "a" * 40,
    "BRIDGE_APPSERVICE__HS_TOKEN": "hs-" + "h" * 40,
    "SYNAPSE_REGISTRATION_SHARED_SECRET": "rs-" + "r" * 40,
    "SYNAPSE_MACAROON_SECRET_KEY": "mk-" + "m" * 40,
    "SYNAPSE_FORM_SECRET": "fs-" + "f" * 40,
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture
def generated(tmp_path: Path) -> dict[str, dict]:
    paths = write_deployment(tmp_path, ENV, synapse_uid=None)
    return {path.name: yaml.safe_load(path.read_text()) for path in paths} | {"_dir": tmp_path}


def mounts(service: dict) -> dict[str, str]:
    """Container path -> volume or host path."""
    return {m.split(":")[1]: m.split(":")[0] for m in service.get("volumes", [])}


def container_port(service: dict) -> int:
    (mapping,) = service["ports"]
    return int(mapping.rsplit(":", 1)[1])


def test_the_stack_has_its_services_with_health_checks(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "config", "synapse", "bridge", "gateway"}
    for name in ("postgres", "synapse", "bridge", "gateway"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("synapse", "bridge", "gateway"):
        assert services[name]["depends_on"]["config"] == {
            "condition": "service_completed_successfully"
        }
    for name in ("bridge", "gateway"):
        # Published on loopback only: a reverse proxy or the backend's network reaches them.
        assert services[name]["ports"][0].startswith("127.0.0.1:")
    # Synapse is reached through the gateway only: publishing it would walk around it.
    assert "ports" not in services["synapse"]


def test_clients_reach_synapse_through_the_gateway(compose: dict, generated) -> None:
    gateway = compose["services"]["gateway"]
    bridge = generated["bridge.yaml"]
    assert gateway["image"] == compose["services"]["bridge"]["image"]
    assert gateway["command"][-3:] == ["gateway", "-c", f"{COMPOSE['config_dir']}/bridge.yaml"]
    assert bridge["gateway"]["port"] == container_port(gateway) == COMPOSE["gateway_port"]
    # It forwards to the homeserver the bridge calls, and reads as the bot.
    assert urlsplit(bridge["homeserver"]["url"]).hostname == "synapse"
    assert "BRIDGE_APPSERVICE__AS_TOKEN" in gateway["environment"]
    # Synapse trusts the client address the gateway forwards.
    assert generated["homeserver.yaml"]["listeners"][0]["x_forwarded"] is True


def test_the_config_service_gets_every_input_the_generator_needs(compose: dict) -> None:
    config = compose["services"]["config"]
    assert set(REQUIRED_ENV) <= set(config["environment"])
    assert config["command"][-2:] == ["--output", COMPOSE["config_dir"]]
    assert COMPOSE["config_dir"] in mounts(config)
    # It hands Synapse's data volume to Synapse's user.
    assert (
        mounts(config)[COMPOSE["synapse_data_dir"]]
        == mounts(compose["services"]["synapse"])[COMPOSE["synapse_data_dir"]]
    )


def test_synapse_loads_the_generated_config_and_registration(compose: dict, generated) -> None:
    synapse = compose["services"]["synapse"]
    config_path = synapse["environment"]["SYNAPSE_CONFIG_PATH"]
    assert Path(config_path).parent.as_posix() == COMPOSE["config_dir"]
    assert (
        mounts(synapse)[COMPOSE["config_dir"]]
        == mounts(compose["services"]["config"])[COMPOSE["config_dir"]]
    )
    homeserver = generated[Path(config_path).name]
    (registration_path,) = homeserver["app_service_config_files"]
    assert (generated["_dir"] / Path(registration_path).name).exists()
    assert Path(registration_path).parent.as_posix() == COMPOSE["config_dir"]
    assert homeserver["listeners"][0]["port"] == COMPOSE["synapse_port"]
    assert homeserver["server_name"] == ENV["SERVER_NAME"]
    assert homeserver["enable_registration"] is False
    assert COMPOSE["synapse_data_dir"] in mounts(synapse)
    assert homeserver["media_store_path"].startswith(COMPOSE["synapse_data_dir"])


def test_synapse_loads_the_marketplace_module_and_the_hardened_settings(
    compose: dict, generated
) -> None:
    synapse = compose["services"]["synapse"]
    modules_dir = COMPOSE["modules_dir"]
    assert synapse["environment"]["PYTHONPATH"] == modules_dir
    # The module and the pure policy it imports, mounted read-only from this checkout.
    for package in ("synapse_module", "policy"):
        mount = next(
            v for v in synapse["volumes"] if v.split(":")[1] == f"{modules_dir}/{package}"
        )
        source, _, mode = mount.split(":")
        assert (ROOT / source).resolve() == ROOT / package and (
            ROOT / package / "__init__.py"
        ).exists()
        assert mode == "ro"
    homeserver = generated["homeserver.yaml"]
    (module,) = homeserver["modules"]
    package, _, name = module["module"].rpartition(".")
    source = (ROOT / package / "__init__.py").read_text()  # importing it would load Synapse
    assert package == "synapse_module" and re.search(rf"^class {name}\b", source, re.M)
    config = module["config"]
    assert config["bot"] == f"@marketbot:{ENV['SERVER_NAME']}"
    assert config["admins"] == ["@mod:market.example", "@boss:market.example"]
    assert config["policy"]["rules"]["contact_details"]["actions"]
    assert homeserver["federation_domain_whitelist"] == []
    assert homeserver["limit_profile_requests_to_users_who_share_rooms"] is True
    assert homeserver["require_auth_for_profile_requests"] is True
    assert homeserver["allow_per_room_profiles"] is False
    assert homeserver["user_directory"]["search_all_users"] is False
    assert homeserver["presence"] == {"enabled": False}


def test_the_databases_agree_with_postgres(compose: dict, generated) -> None:
    postgres = compose["services"]["postgres"]
    user, database = (
        postgres["environment"]["POSTGRES_USER"],
        postgres["environment"]["POSTGRES_DB"],
    )
    args = generated["homeserver.yaml"]["database"]["args"]
    assert (args["host"], args["user"]) == ("postgres", user)
    init_sql = (ROOT / "deploy/postgres-init.sql").read_text()
    assert f"CREATE DATABASE {args['dbname']}" in init_sql and "LC_COLLATE 'C'" in init_sql
    assert any(m.startswith("./deploy/postgres-init.sql:") for m in postgres["volumes"])
    url = urlsplit(generated["bridge.yaml"]["database"]["url"])
    assert (url.hostname, url.username, url.path) == ("postgres", user, f"/{database}")
    assert url.password is None  # the password arrives as PGPASSWORD
    assert "PGPASSWORD" in compose["services"]["bridge"]["environment"]


def test_synapse_and_the_bridge_find_each_other(compose: dict, generated) -> None:
    bridge_service = compose["services"]["bridge"]
    bridge = generated["bridge.yaml"]
    registration = generated["registration.yaml"]
    appservice_url = urlsplit(registration["url"])
    assert appservice_url.hostname in compose["services"]
    assert appservice_url.hostname == "bridge"
    assert appservice_url.port == bridge["server"]["port"] == container_port(bridge_service)
    homeserver_url = urlsplit(bridge["homeserver"]["url"])
    assert homeserver_url.hostname == "synapse"
    assert homeserver_url.port == generated["homeserver.yaml"]["listeners"][0]["port"]
    assert bridge_service["command"][-2:] == ["-c", f"{COMPOSE['config_dir']}/bridge.yaml"]
    assert registration["hs_token"] == ENV["BRIDGE_APPSERVICE__HS_TOKEN"]
    assert bridge["rooms"]["admins"] == ["@mod:market.example", "@boss:market.example"]


def test_the_bridge_config_is_valid_once_compose_supplies_the_secrets(
    compose: dict, generated, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = compose["services"]["bridge"]["environment"]
    for name in (
        "BRIDGE_APPSERVICE__AS_TOKEN",
        "BRIDGE_APPSERVICE__HS_TOKEN",
        "BRIDGE_API__TOKEN",
    ):
        assert name in environment
        monkeypatch.setenv(name, ENV.get(name, "api-" + "t" * 40))
    monkeypatch.setenv("BRIDGE_WEBHOOKS__SECRETS", '["whsec_' + "A" * 44 + '"]')
    assert "BRIDGE_WEBHOOKS__SECRETS" in environment
    config = build_config(generated["bridge.yaml"])
    assert str(config.webhooks.url) == ENV["WEBHOOK_URL"]
    assert config.server.host == "0.0.0.0"
    assert config.homeserver.domain == ENV["SERVER_NAME"]


def test_secrets_stay_out_of_the_bridge_file_and_synapse_files_are_private(generated) -> None:
    directory = generated["_dir"]
    bridge_text = (directory / "bridge.yaml").read_text()
    for secret in ENV.values():
        if secret.startswith(("pg-", "as-", "hs-", "rs-", "mk-", "fs-")):
            assert secret not in bridge_text
    for name in ("homeserver.yaml", "registration.yaml"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600


def test_missing_inputs_are_named(tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if k not in ("POSTGRES_PASSWORD", "SYNAPSE_FORM_SECRET")}
    with pytest.raises(DeploymentError, match="POSTGRES_PASSWORD, SYNAPSE_FORM_SECRET"):
        write_deployment(tmp_path, env, synapse_uid=None)
    assert not list(tmp_path.iterdir())


def test_env_example_lists_every_variable_compose_needs(compose: dict) -> None:
    documented = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    assert used == documented
