"""Configs for a whole stack (Synapse, its registration, the bridge), from one place.

`make run` (``python -m bridge dev``) and the compose file (``python -m bridge
generate-deployment``) build their files with these functions: the two cannot drift apart.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from appservice.registration import build_registration
from bridge.config import Config
from bridge.config.identity import OidcConfig

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config.example.yaml"
SYNAPSE_SECRET_KEYS = ("registration_shared_secret", "macaroon_secret_key", "form_secret")
BRIDGE_SECRET_KEYS = (
    ("appservice", "as_token"),
    ("appservice", "hs_token"),
    ("api", "token"),
    ("webhooks", "secrets"),
)

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


# What the project recommends for a marketplace's homeserver, beside the module (see
# docs/homeserver.md for why each is there). Rate limits stay moderate for people; the bot is
# exempt through `rate_limited: false` in its registration.
HARDENED_SETTINGS: dict[str, Any] = {
    # Find only people you share a room with; nobody browses the whole user base.
    "user_directory": {"enabled": True, "search_all_users": False, "prefer_local_users": True},
    # Nobody poses as "Support": no per-room names, no changing one's own name or avatar
    # (the marketplace sets them through the admin API).
    "allow_per_room_profiles": False,
    "enable_set_displayname": False,
    "enable_set_avatar_url": False,
    "enable_3pid_changes": False,
    # Profiles only of people who share a room (Synapse requires auth for that).
    "require_auth_for_profile_requests": True,
    "limit_profile_requests_to_users_who_share_rooms": True,
    "include_profile_data_on_invite": False,
    # No federation: an empty allow-list lets no server in (docs say how to list partners).
    "federation_domain_whitelist": [],
    "allow_public_rooms_over_federation": False,
    "allow_public_rooms_without_auth": False,
    "rc_message": {"per_second": 1, "burst_count": 20},
    "rc_room_creation": {"per_second": 0.05, "burst_count": 2},
    "rc_invites": {"per_room": {"per_second": 0.2, "burst_count": 5}},
    "rc_media_create": {"per_second": 1, "burst_count": 10},
    # Presence carries a free-text status message to anyone who shares a room: off.
    "presence": {"enabled": False},
}


def lockdown_module(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The Synapse module's entry in homeserver.yaml, from the bridge's settings as plain data
    (a config file's mapping, or ``Config.model_dump(mode="json")``)."""
    lockdown, policy = settings["lockdown"], settings["policy"]
    bot = f"@{settings['appservice']['bot_localpart']}:{settings['homeserver']['domain']}"
    return {
        "module": "synapse_module.MarketplaceModule",
        "config": {
            "bot": bot,
            "admins": list(settings["rooms"]["admins"]),
            "parties_may_create_rooms": lockdown["parties_may_create_rooms"],
            "parties_may_invite": lockdown["parties_may_invite"],
            "before_delivery": lockdown["before_delivery"],
            "upload_types": list(lockdown["upload_types"]),
            "party_max_upload_bytes": policy["max_media_bytes"],
            "managed_prefix": (settings.get("identity") or {}).get("user_prefix", "market_"),
            "policy": dict(policy),
        },
    }


def oidc_provider(oidc: OidcConfig) -> dict[str, Any]:
    """Synapse's ``oidc_providers`` entry for the marketplace ("Sign in with <idp_name>"). The
    bridge links each managed account to ``(oidc-<idp_id>, <marketplace user id>)`` when it
    creates it, and Synapse looks the subject up there first; a subject with no link is
    refused: Synapse may neither create an account for it (``enable_registration``) nor take
    over one whose name matches (``allow_existing_users``)."""
    if oidc.client_secret is None:
        raise ValueError("identity.oidc.client_secret: the homeserver needs it")
    claim = oidc.subject_claim  # its grammar is checked with the config
    subject = f"{{{{ user.{claim} }}}}" if claim.isidentifier() else f'{{{{ user["{claim}"] }}}}'
    return {
        "idp_id": oidc.idp_id,
        "idp_name": oidc.idp_name,
        "issuer": str(oidc.issuer),
        "client_id": oidc.client_id,
        "client_secret": oidc.client_secret.get_secret_value(),
        "scopes": list(oidc.scopes),
        "user_mapping_provider": {"config": {"subject_template": subject}},
        "allow_existing_users": False,
        "enable_registration": False,
    }


def homeserver_config(
    *,
    server_name: str,
    port: int,
    bind_addresses: list[str],
    data_dir: str,
    database: dict[str, Any],
    registration_files: list[str],
    synapse_secrets: Mapping[str, str],
    public_baseurl: str | None = None,
    fast_password_hashing: bool = False,
    relaxed_rate_limits: bool = False,
    module: dict[str, Any] | None = None,
    oidc: OidcConfig | None = None,
    sso_client_whitelist: Sequence[str] = (),
) -> dict[str, Any]:
    """Synapse's homeserver.yaml for a marketplace: registration closed, our appservice loaded.

    With ``module`` (see `lockdown_module`): the module loaded and the hardened settings.
    With ``oidc`` (the bridge's ``identity.oidc``): the marketplace as sign-in provider
    (`oidc_provider`), and ``public_baseurl`` required (people come back to
    ``<public_baseurl>_synapse/client/oidc/callback``); clients whose URL starts with one in
    ``sso_client_whitelist`` get their login token without Synapse's "Continue" page.
    """
    config: dict[str, Any] = {
        "server_name": server_name,
        "pid_file": f"{data_dir}/homeserver.pid",
        "listeners": [
            {
                "port": port,
                "bind_addresses": bind_addresses,
                "type": "http",
                "tls": False,
                # Behind the client gateway (or a proxy): the client's address is forwarded.
                "x_forwarded": True,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ],
        "database": database,
        "media_store_path": f"{data_dir}/media",
        "signing_key_path": f"{data_dir}/signing.key",
        "report_stats": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        # People get accounts from the marketplace (or the admin API), never by signing up.
        "enable_registration": False,
        "app_service_config_files": registration_files,
        **{key: synapse_secrets[key] for key in SYNAPSE_SECRET_KEYS},
    }
    if public_baseurl:
        config["public_baseurl"] = public_baseurl
    if fast_password_hashing:
        config["bcrypt_rounds"] = 4  # 15 ms instead of 210 ms per registration or login
    if module is not None:
        config.update(HARDENED_SETTINGS)
        config["modules"] = [module]
    if relaxed_rate_limits:
        config.update(RELAXED_RATE_LIMITS)
    if oidc is not None:
        if not public_baseurl:
            raise ValueError("signing in with OpenID Connect needs public_baseurl")
        config["oidc_providers"] = [oidc_provider(oidc)]
        # Synapse matches by prefix: "https://chat.example" would also admit
        # "https://chat.example.evil.com/", so each entry ends with its path's "/".
        config["sso"] = {
            "client_whitelist": [u if u.endswith("/") else u + "/" for u in sso_client_whitelist],
            "update_profile_information": False,  # profiles are the bridge's
        }
    return config


def bridge_settings(
    *,
    homeserver_url: str,
    domain: str,
    appservice_url: str,
    host: str,
    port: int,
    database_url: str,
    admins: list[str],
    webhook_url: str,
    gateway_host: str,
    gateway_port: int,
) -> dict[str, Any]:
    """The bridge's config: the example's values with the stack's addresses, no secrets."""
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["homeserver"].update(url=homeserver_url, domain=domain)
    data["appservice"]["url"] = appservice_url
    data["server"].update(host=host, port=port)
    data["gateway"].update(host=gateway_host, port=gateway_port)
    data["database"]["url"] = database_url
    data["rooms"]["admins"] = admins
    data["webhooks"]["url"] = webhook_url
    for section, key in BRIDGE_SECRET_KEYS:
        del data[section][key]
    return data


def registration_for(config: Config) -> dict[str, Any]:
    appservice = config.appservice
    return build_registration(
        appservice_id=appservice.id,
        url=str(appservice.url).rstrip("/"),
        as_token=appservice.as_token.get_secret_value(),
        hs_token=appservice.hs_token.get_secret_value(),
        domain=config.homeserver.domain,
        bot_localpart=appservice.bot_localpart,
        alias_prefix=appservice.alias_prefix,
        user_prefix=config.identity.user_prefix,
    )


def write_registration(config: Config, path: Path) -> None:
    """The registration holds both tokens: readable by its owner only."""
    write_file(path, registration_for(config), 0o600)


def write_file(path: Path, data: dict[str, Any], mode: int, header: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=mode, exist_ok=True)
    path.chmod(mode)
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))


# --- the production compose stack --------------------------------------------------------------

# Names shared with docker-compose.yml; tests/unit/test_deployment.py checks that they agree.
COMPOSE = {
    "config_dir": "/config",
    "synapse_data_dir": "/data",
    "synapse_url": "http://synapse:8008",
    "synapse_port": 8008,
    "bridge_url": "http://bridge:29330",
    "bridge_port": 29330,
    "gateway_port": 8008,  # what clients connect to; Synapse's own port stays private
    "postgres_host": "postgres",
    "postgres_user": "bridge",
    "bridge_database": "bridge",
    "synapse_database": "synapse",
    "modules_dir": "/modules",  # the Synapse container's PYTHONPATH, holding the module
    "transcripts_dir": "/transcripts",  # the bridge's volume of rooms' final transcripts
}
REQUIRED_ENV = (
    "SERVER_NAME",
    "WEBHOOK_URL",
    "POSTGRES_PASSWORD",
    "BRIDGE_APPSERVICE__AS_TOKEN",
    "BRIDGE_APPSERVICE__HS_TOKEN",
    "SYNAPSE_REGISTRATION_SHARED_SECRET",
    "SYNAPSE_MACAROON_SECRET_KEY",
    "SYNAPSE_FORM_SECRET",
)


# "Sign in with <marketplace>" (optional; docs/operations.md, Identity): OIDC_<KEY> for each
# key of the bridge's identity.oidc; OIDC_SCOPES space- or comma-separated. All or none.
OIDC_KEYS = ("idp_id", "idp_name", "issuer", "client_id", "client_secret")


class DeploymentError(Exception):
    pass


def oidc_from_env(env: Mapping[str, str]) -> OidcConfig | None:
    names = {key: f"OIDC_{key.upper()}" for key in (*OIDC_KEYS, "scopes", "subject_claim")}
    values = {key: env[name].strip() for key, name in names.items() if env.get(name, "").strip()}
    if not values:
        return None
    missing = [names[key] for key in OIDC_KEYS if key not in values]
    if missing:
        raise DeploymentError("sign-in with OpenID Connect needs " + ", ".join(missing))
    if "scopes" in values:
        values["scopes"] = values["scopes"].replace(",", " ").split()
    try:
        oidc = OidcConfig(**values)
        oidc_provider(oidc)
    except ValidationError as e:
        problems = [f"OIDC_{str(i['loc'][0]).upper()}: {i['msg']}" for i in e.errors()]
        raise DeploymentError("; ".join(problems)) from None
    except ValueError as e:
        raise DeploymentError(str(e)) from None
    return oidc


def write_deployment(out: Path, env: Mapping[str, str], synapse_uid: int | None) -> list[Path]:
    """homeserver.yaml, registration.yaml and bridge.yaml for docker-compose.yml.

    Secrets come from ``env``. Synapse's two files hold secrets: they are readable by Synapse's
    user only. bridge.yaml holds none (the bridge reads its secrets from the environment).
    """
    missing = [name for name in REQUIRED_ENV if not env.get(name)]
    if missing:
        raise DeploymentError("missing environment variables: " + ", ".join(missing))
    oidc = oidc_from_env(env)
    public_baseurl = env.get("PUBLIC_BASEURL") or None
    if oidc is not None and public_baseurl is None:
        raise DeploymentError("sign-in with OpenID Connect needs PUBLIC_BASEURL")
    # Element Web: deep links in the API's answers, and SSO without the "Continue" page.
    web_client_url = env.get("WEB_CLIENT_URL", "").strip() or None
    c = COMPOSE
    bridge = bridge_settings(
        homeserver_url=c["synapse_url"],
        domain=env["SERVER_NAME"],
        appservice_url=c["bridge_url"],
        host="0.0.0.0",  # noqa: S104 (inside its container; compose publishes it on loopback)
        port=c["bridge_port"],
        database_url=(
            f"postgresql://{c['postgres_user']}@{c['postgres_host']}/{c['bridge_database']}"
        ),
        admins=[a.strip() for a in env.get("BRIDGE_ADMINS", "").split(",") if a.strip()],
        webhook_url=env["WEBHOOK_URL"],
        gateway_host="0.0.0.0",  # noqa: S104 (inside its container; the one published port)
        gateway_port=c["gateway_port"],
    )
    # Where clients reach the gateway (sessions hand it out): behind the proxy, or published.
    bridge["gateway"]["public_url"] = public_baseurl or f"http://127.0.0.1:{c['gateway_port']}"
    bridge["retention"]["transcripts_directory"] = c["transcripts_dir"]
    if web_client_url:
        bridge["identity"]["web_client_url"] = web_client_url
    if oidc is not None:
        # The bridge links accounts to oidc-<idp_id>; the client secret is Synapse's alone.
        bridge["identity"]["oidc"] = oidc.model_dump(mode="json", exclude={"client_secret"})
    registration = build_registration(
        appservice_id=bridge["appservice"]["id"],
        url=c["bridge_url"],
        as_token=env["BRIDGE_APPSERVICE__AS_TOKEN"],
        hs_token=env["BRIDGE_APPSERVICE__HS_TOKEN"],
        domain=env["SERVER_NAME"],
        bot_localpart=bridge["appservice"]["bot_localpart"],
        alias_prefix=bridge["appservice"]["alias_prefix"],
        user_prefix=bridge.get("identity", {}).get("user_prefix", "market_"),
    )
    registration_path = out / "registration.yaml"
    homeserver = homeserver_config(
        server_name=env["SERVER_NAME"],
        port=c["synapse_port"],
        bind_addresses=["0.0.0.0"],  # noqa: S104 (inside its container)
        data_dir=c["synapse_data_dir"],
        database={
            "name": "psycopg2",
            "args": {
                "user": c["postgres_user"],
                "password": env["POSTGRES_PASSWORD"],
                "dbname": c["synapse_database"],
                "host": c["postgres_host"],
                "cp_min": 5,
                "cp_max": 10,
            },
        },
        registration_files=[f"{c['config_dir']}/{registration_path.name}"],
        synapse_secrets={key: env[f"SYNAPSE_{key.upper()}"] for key in SYNAPSE_SECRET_KEYS},
        public_baseurl=public_baseurl,
        module=lockdown_module(bridge),
        oidc=oidc,
        sso_client_whitelist=[web_client_url] if web_client_url else [],
    )
    header = "# Generated by python -m bridge generate-deployment; edit the inputs, not this.\n"
    written = [out / "homeserver.yaml", registration_path, out / "bridge.yaml"]
    write_file(written[0], homeserver, 0o600, header)
    write_file(written[1], registration, 0o600, header)
    write_file(written[2], bridge, 0o644, header)
    if synapse_uid is not None and os.geteuid() == 0:
        # Synapse's image runs it as this user: it must read its config and write its data
        # folder (the signing key is created there on first start).
        data_dir = Path(c["synapse_data_dir"])
        for path in [*written[:2], *([data_dir] if data_dir.is_dir() else [])]:
            os.chown(path, synapse_uid, synapse_uid)
    return written


def new_secret() -> str:
    return secrets.token_urlsafe(48)


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()
