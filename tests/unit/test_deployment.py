"""The compose stack: docker-compose.yml and the configs it generates agree with each other."""

from __future__ import annotations

import re
import stat
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import ValidationError

from bridge.config import build_config
from bridge.config.identity import OidcConfig
from bridge.ops.deployment import (
    COMPOSE,
    REQUIRED_ENV,
    SYNAPSE_SECRET_KEYS,
    DeploymentError,
    homeserver_config,
    oidc_provider,
    write_deployment,
)

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


# --- "Sign in with <marketplace>": the marketplace as Synapse's OpenID Connect provider -------

OIDC_ENV = {
    "OIDC_IDP_ID": "market",
    "OIDC_IDP_NAME": "Example Market",
    "OIDC_ISSUER": "https://market.example/",
    "OIDC_CLIENT_ID": "synapse",
    "OIDC_CLIENT_SECRET": "oc-" + "o" * 40,
    "OIDC_SCOPES": "openid, profile email",
    "WEB_CLIENT_URL": "https://chat.market.example/",
}


def sign_in(**changes: object) -> OidcConfig:
    settings = {
        "idp_id": "market",
        "idp_name": "Example Market",
        "issuer": "https://market.example/",
        "client_id": "synapse",
        "client_secret": "oc-" + "o" * 40,
    }
    return OidcConfig(**{**settings, **changes})


def synapse_config(oidc: OidcConfig | None, **changes: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "server_name": "market.example",
        "port": 8008,
        "bind_addresses": ["127.0.0.1"],
        "data_dir": "/data",
        "database": {"name": "sqlite3", "args": {"database": "/data/homeserver.db"}},
        "registration_files": ["/config/registration.yaml"],
        "synapse_secrets": dict.fromkeys(SYNAPSE_SECRET_KEYS, "s" * 40),
        "public_baseurl": "https://matrix.market.example/",
        "oidc": oidc,
        "sso_client_whitelist": ["https://chat.market.example/"],
    }
    return homeserver_config(**{**arguments, **changes})


def synapse_oidc() -> tuple[Any, Any, Any]:
    """Synapse's parser of oidc_providers, its default mapping provider and authlib's UserInfo,
    imported without their warnings about their own dependencies (authlib.jose, Twisted)."""
    with warnings.catch_warnings():
        import authlib.deprecate  # noqa: F401 (its "always" filter first, so ours wins)

        warnings.simplefilter("ignore")
        from authlib.oidc.core import UserInfo
        from synapse.config.oidc import _parse_oidc_provider_configs
        from synapse.handlers.oidc import JinjaOidcMappingProvider
    return _parse_oidc_provider_configs, JinjaOidcMappingProvider, UserInfo


def subject_seen_by_synapse(provider: dict[str, Any], claims: dict[str, Any]) -> str:
    """The remote user id Synapse's own parser and mapping provider take from ``claims``."""
    parse, mapping_provider, user_info = synapse_oidc()
    (parsed,) = parse({"oidc_providers": [provider]})
    assert parsed.user_mapping_provider_class is mapping_provider
    mapper = mapping_provider(parsed.user_mapping_provider_config, None)
    return mapper.get_remote_user_id(user_info(claims))


def test_the_marketplace_is_synapses_sign_in_provider() -> None:
    config = synapse_config(sign_in())
    (provider,) = config["oidc_providers"]
    assert provider == {
        "idp_id": "market",
        "idp_name": "Example Market",
        "issuer": "https://market.example/",
        "client_id": "synapse",
        "client_secret": "oc-" + "o" * 40,
        "scopes": ["openid", "profile"],
        "user_mapping_provider": {"config": {"subject_template": "{{ user.sub }}"}},
        # Only accounts the bridge linked sign in: none made, none taken over by name.
        "allow_existing_users": False,
        "enable_registration": False,
    }
    assert config["public_baseurl"] == "https://matrix.market.example/"
    assert config["sso"] == {
        "client_whitelist": ["https://chat.market.example/"],
        "update_profile_information": False,
    }
    assert config["enable_registration"] is False
    # Synapse reads it as the provider the bridge links accounts to, the subject being the
    # marketplace user id, with its checks of the provider on.
    parse, _, _ = synapse_oidc()
    (parsed,) = parse({"oidc_providers": [provider]})
    assert parsed.idp_id == "oidc-market"
    assert (parsed.enable_registration, parsed.allow_existing_users) == (False, False)
    assert parsed.skip_verification is False
    assert subject_seen_by_synapse(provider, {"sub": "buyer-1", "name": "Ann"}) == "buyer-1"


@pytest.mark.parametrize("claim", ["market_user_id", "urn:market:user-id"])
def test_the_subject_can_come_from_another_claim(claim: str) -> None:
    (provider,) = synapse_config(sign_in(subject_claim=claim))["oidc_providers"]
    claims = {"sub": "opaque-7f3a", claim: "seller-9"}
    assert subject_seen_by_synapse(provider, claims) == "seller-9"


def test_a_whitelisted_client_without_its_slash_admits_no_look_alike_host() -> None:
    config = synapse_config(sign_in(), sso_client_whitelist=["https://chat.market.example"])
    assert config["sso"]["client_whitelist"] == ["https://chat.market.example/"]


def test_sign_in_settings_synapse_would_misread_are_refused() -> None:
    with pytest.raises(ValueError, match="public_baseurl"):
        synapse_config(sign_in(), public_baseurl=None)
    # Synapse would record logins as "oidc", while the bridge links accounts to "oidc-oidc";
    # a claim name out of its grammar would be read as a template. Both fail with the config.
    with pytest.raises(ValidationError, match="reserved"):
        sign_in(idp_id="oidc")
    with pytest.raises(ValidationError, match="subject_claim"):
        sign_in(subject_claim='sub" }}{{ 7*7')
    with pytest.raises(ValueError, match="client_secret"):
        synapse_config(sign_in(client_secret=None))
    # Without it, nothing about single sign-on.
    plain = synapse_config(None)
    assert "oidc_providers" not in plain and "sso" not in plain


def test_compose_signs_in_with_the_marketplace_when_the_environment_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_deployment(tmp_path, ENV | OIDC_ENV, synapse_uid=None)
    homeserver = yaml.safe_load((tmp_path / "homeserver.yaml").read_text())
    (provider,) = homeserver["oidc_providers"]
    assert provider["issuer"] == OIDC_ENV["OIDC_ISSUER"]
    assert provider["client_secret"] == OIDC_ENV["OIDC_CLIENT_SECRET"]
    assert provider["scopes"] == ["openid", "profile", "email"]
    assert provider["enable_registration"] is False
    assert homeserver["public_baseurl"] == ENV["PUBLIC_BASEURL"]
    assert homeserver["sso"]["client_whitelist"] == [OIDC_ENV["WEB_CLIENT_URL"]]
    # The bridge knows the provider (it links accounts to oidc-<idp_id>) but not its secret,
    # which it reads from its environment like every other.
    bridge_text = (tmp_path / "bridge.yaml").read_text()
    assert OIDC_ENV["OIDC_CLIENT_SECRET"] not in bridge_text
    bridge = yaml.safe_load(bridge_text)
    assert bridge["identity"]["web_client_url"] == OIDC_ENV["WEB_CLIENT_URL"]
    assert "client_secret" not in bridge["identity"]["oidc"]
    for name, value in {
        "BRIDGE_APPSERVICE__AS_TOKEN": ENV["BRIDGE_APPSERVICE__AS_TOKEN"],
        "BRIDGE_APPSERVICE__HS_TOKEN": ENV["BRIDGE_APPSERVICE__HS_TOKEN"],
        "BRIDGE_API__TOKEN": "api-" + "t" * 40,
        "BRIDGE_WEBHOOKS__SECRETS": '["whsec_' + "A" * 44 + '"]',
        "BRIDGE_IDENTITY__OIDC__CLIENT_SECRET": OIDC_ENV["OIDC_CLIENT_SECRET"],
    }.items():
        monkeypatch.setenv(name, value)
    oidc = build_config(bridge).identity.oidc
    assert oidc is not None
    assert (oidc.idp_id, str(oidc.issuer)) == ("market", OIDC_ENV["OIDC_ISSUER"])
    assert oidc_provider(oidc) == provider


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OIDC_ISSUER": "https://market.example/"}, "needs OIDC_IDP_ID, OIDC_IDP_NAME"),
        (OIDC_ENV | {"OIDC_ISSUER": "market.example"}, "OIDC_ISSUER"),
        (OIDC_ENV | {"OIDC_CLIENT_SECRET": "short"}, "OIDC_CLIENT_SECRET"),
        (OIDC_ENV | {"OIDC_IDP_ID": "oidc"}, "reserved"),
        (OIDC_ENV | {"PUBLIC_BASEURL": ""}, "needs PUBLIC_BASEURL"),
    ],
)
def test_bad_sign_in_settings_are_named(tmp_path: Path, env: dict, message: str) -> None:
    with pytest.raises(DeploymentError, match=message):
        write_deployment(tmp_path, ENV | env, synapse_uid=None)
    assert not list(tmp_path.iterdir())


def test_without_sign_in_settings_compose_has_none(generated) -> None:
    assert "oidc_providers" not in generated["homeserver.yaml"]
    assert generated["bridge.yaml"]["identity"]["oidc"] is None


def test_final_transcripts_are_kept_on_a_volume_of_their_own(compose: dict, generated) -> None:
    bridge = compose["services"]["bridge"]
    directory = generated["bridge.yaml"]["retention"]["transcripts_directory"]
    assert directory == COMPOSE["transcripts_dir"]
    assert mounts(bridge)[directory] in compose["volumes"]
