"""The bridge's configuration: a YAML file, overridden key by key from the environment.

Every key can be set as ``BRIDGE_<SECTION>__<KEY>`` (for example
``BRIDGE_APPSERVICE__AS_TOKEN``), which is how real secrets should arrive: the committed
``config.example.yaml`` carries placeholders, and a placeholder secret is refused at start.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from appservice.identifiers import LOCALPART, is_matrix_user_id, is_server_name
from policy.lockdown import KNOWN_UPLOAD_TYPES

ENV_PREFIX = "BRIDGE_"
PLACEHOLDER_PREFIX = "CHANGE_ME"
MIN_SECRET_LENGTH = 32


class ConfigError(Exception):
    """The configuration cannot be used; the message names every offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _refuse_placeholder(secret: str) -> None:
    if secret.startswith(PLACEHOLDER_PREFIX):
        raise ValueError(
            "is still the example's placeholder; supply a real secret through the environment "
            "or your own config file"
        )


def _require_real_secret(value: SecretStr) -> SecretStr:
    secret = value.get_secret_value()
    _refuse_placeholder(secret)
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters long")
    return value


class HomeserverConfig(_Section):
    """The homeserver the bridge is an appservice of."""

    url: AnyHttpUrl = Field(description="Client-server API base URL the bridge calls.")
    domain: str = Field(description="The homeserver's server name (the part after ':').")
    watch_interval_seconds: float = Field(
        ge=0,
        le=60,
        description="How often the bridge checks the homeserver answers; after an outage it"
        " reads back the events a restarted Synapse never sent. 0: never.",
    )

    @field_validator("domain")
    @classmethod
    def _valid_server_name(cls, value: str) -> str:
        if not is_server_name(value):
            raise ValueError("is not a valid Matrix server name")
        return value


class AppserviceConfig(_Section):
    """The appservice registration and the homeserver's side of the bridge."""

    id: str = Field(
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="The appservice's id in the registration; the ping endpoint is keyed by it.",
    )
    url: AnyHttpUrl = Field(description="Where the homeserver reaches the bridge.")
    as_token: SecretStr = Field(description="Token the bridge presents to the homeserver.")
    hs_token: SecretStr = Field(description="Token the homeserver presents to the bridge.")
    bot_localpart: str = Field(
        min_length=1, max_length=64, description="Localpart of the policy bot's user ID."
    )
    alias_prefix: str = Field(
        min_length=1,
        max_length=64,
        description="Room aliases starting with it are reserved for the bridge's rooms.",
    )
    max_transaction_bytes: int = Field(
        ge=1024 * 1024,
        le=1024 * 1024 * 1024,
        description="Largest homeserver transaction accepted, in bytes.",
    )

    _check_as_token = field_validator("as_token")(_require_real_secret)
    _check_hs_token = field_validator("hs_token")(_require_real_secret)

    @field_validator("bot_localpart", "alias_prefix")
    @classmethod
    def _valid_localpart(cls, value: str) -> str:
        if not LOCALPART.match(value):
            raise ValueError("may only contain a-z, 0-9 and . _ = / + -")
        return value


class ApiConfig(_Section):
    """The marketplace REST API (/api/v1)."""

    token: SecretStr = Field(description="Bearer token of the marketplace backend.")
    max_body_bytes: int = Field(
        ge=1024, le=16 * 1024 * 1024, description="Largest request body accepted, in bytes."
    )
    allowed_matrix_servers: list[str] = Field(
        description="Servers whose users may be parties; empty means the homeserver's only."
    )

    _check_token = field_validator("token")(_require_real_secret)

    @field_validator("allowed_matrix_servers")
    @classmethod
    def _valid_servers(cls, value: list[str]) -> list[str]:
        for server in value:
            if not is_server_name(server):
                raise ValueError(f"{server!r} is not a valid Matrix server name")
        return value


class RoomsConfig(_Section):
    """The rooms the bridge creates."""

    version: Literal["10", "11", "12"] = Field(
        description="Room version of new rooms; power levels depend on it."
    )
    admins: list[str] = Field(description="Matrix IDs of the marketplace's admins.")
    command_prefix: str = Field(
        pattern=r"^[!-~]{1,32}$", description="What starts an admin command in Matrix."
    )
    management_room: str = Field(
        description="Room ID of the admins' room; empty: the bot creates one on first start."
    )

    @field_validator("admins")
    @classmethod
    def _valid_admins(cls, value: list[str]) -> list[str]:
        for user_id in value:
            if not is_matrix_user_id(user_id):
                raise ValueError(f"{user_id!r} is not a Matrix user ID")
        return value


def _require_webhook_secret(value: SecretStr) -> SecretStr:
    secret = value.get_secret_value()
    _refuse_placeholder(secret)
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        key = b""
    if not secret.startswith("whsec_") or len(key) < 24:
        raise ValueError("must be whsec_ followed by at least 24 bytes in base64")
    return value


class WebhooksConfig(_Section):
    """Marketplace notifications: signed POSTs (Standard Webhooks), at least once, in order."""

    url: AnyHttpUrl = Field(description="Where notifications are POSTed.")
    secrets: list[SecretStr] = Field(
        min_length=1,
        max_length=2,
        description="Signing secrets (whsec_...); two while rotating, both signatures sent.",
    )
    timeout_seconds: float = Field(gt=0, le=120, description="Time allowed for one attempt.")
    retry_for_seconds: int = Field(
        ge=1, le=30 * 86400, description="How long a notification is retried before dead letter."
    )
    backoff_initial_seconds: float = Field(
        gt=0, le=3600, description="Delay before the first retry; it doubles, with jitter."
    )
    backoff_max_seconds: float = Field(gt=0, le=86400, description="Longest delay between tries.")

    @field_validator("secrets")
    @classmethod
    def _valid_secrets(cls, value: list[SecretStr]) -> list[SecretStr]:
        for secret in value:
            _require_webhook_secret(secret)
        return value


class DisputesConfig(_Section):
    """Dispute rooms."""

    freeze_transaction_room: bool = Field(
        description="Whether parties stop posting in the transaction room while a dispute is open."
    )
    decisions: list[str] = Field(
        min_length=1, description="The decisions a dispute can be resolved with."
    )

    @field_validator("decisions")
    @classmethod
    def _valid_decisions(cls, value: list[str]) -> list[str]:
        for decision in value:
            if not re.fullmatch(r"[a-z0-9_]{1,64}", decision):
                raise ValueError(f"{decision!r} must be 1 to 64 of a-z 0-9 _")
        return value


RuleName = Literal["msgtype", "media_type", "media_size", "contact_details", "flood"]


class RuleConfig(_Section):
    """One content rule: what the bot does when a message breaks it, and where it applies."""

    actions: list[Literal["redact", "warn", "mute", "alert"]] = Field(
        min_length=1, description="What the bot does: redact, warn, mute, alert."
    )
    access: list[Literal["locked", "open", "frozen"]] = Field(
        description="Room access states the rule applies in; [] turns the rule off."
    )


class RulesConfig(_Section):
    """Every content rule, each with its actions and the room access states it applies in."""

    msgtype: RuleConfig
    media_type: RuleConfig
    media_size: RuleConfig
    contact_details: RuleConfig
    flood: RuleConfig


class PolicyConfig(_Section):
    """The policy bot: content rules for parties' messages (admins are exempt), mutes, and how
    often every managed room is compared with its plan and repaired."""

    allowed_msgtypes: list[str] = Field(
        min_length=1, description="Message types parties may send (rule msgtype)."
    )
    allowed_media_types: list[str] = Field(
        description="Declared media types parties may send, 'image/*' style (rule media_type)."
    )
    max_media_bytes: int = Field(
        ge=0, description="Largest declared media size in bytes (rule media_size)."
    )
    allowed_link_hosts: list[str] = Field(
        description="Hosts (and their subdomains) links may point to (rule contact_details)."
    )
    off_platform_terms: list[str] = Field(
        description="Words that move deals off the platform (rule contact_details)."
    )
    flood_messages: int = Field(
        ge=1, le=10000, description="Messages a party may send per window (rule flood)."
    )
    flood_window_seconds: int = Field(ge=1, le=3600, description="The flood rule's window.")
    mute_seconds: int = Field(ge=1, le=30 * 86400, description="How long the mute action lasts.")
    repair_interval_seconds: int = Field(
        ge=0,
        le=7 * 86400,
        description="How often open rooms are compared with their plans; 0: only on start.",
    )
    rules: RulesConfig = Field(description="Each rule's actions and access states.")

    @field_validator("allowed_media_types")
    @classmethod
    def _valid_media_types(cls, value: list[str]) -> list[str]:
        for media_type in value:
            if not re.fullmatch(r"[a-z0-9.+-]+/(\*|[a-z0-9.+-]+)", media_type):
                raise ValueError(f"{media_type!r} is not a media type like image/png or image/*")
        return value

    @field_validator("allowed_link_hosts")
    @classmethod
    def _valid_hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", host):
                raise ValueError(f"{host!r} is not a lower-case host name like example.com")
        return value


class LockdownConfig(_Section):
    """The homeserver's side doors: the Synapse module's options (written into homeserver.yaml
    by `make run` and `generate-deployment`; see docs/homeserver.md)."""

    parties_may_create_rooms: bool = Field(
        description="Whether users other than the bot and the admins may create rooms or DMs."
    )
    parties_may_invite: bool = Field(
        description="Whether users other than the bot and the admins may invite anyone."
    )
    reject_before_delivery: bool = Field(
        description="Refuse messages that break a content rule before delivery (not redact)."
    )
    upload_types: list[str] = Field(
        description="Types an upload's bytes may be, for everyone (checked by magic numbers)."
    )

    @field_validator("upload_types")
    @classmethod
    def _known_upload_types(cls, value: list[str]) -> list[str]:
        for media_type in value:
            if media_type not in KNOWN_UPLOAD_TYPES:
                known = ", ".join(sorted(KNOWN_UPLOAD_TYPES))
                raise ValueError(f"{media_type!r} is not recognisable by content; one of {known}")
        return value


class ServerConfig(_Section):
    """The bridge's HTTP server: homeserver routes, marketplace API, health and metrics."""

    host: str = Field(min_length=1, description="Address to listen on.")
    port: int = Field(ge=1, le=65535, description="Port to listen on (the one in appservice.url).")


class DatabaseConfig(_Section):
    """Where the bridge keeps its state."""

    url: str = Field(
        description="sqlite:<path> (one process) or postgresql://user@host/db (production)."
    )
    max_connections: int = Field(
        ge=1, le=1000, description="PostgreSQL pool size (SQLite always uses one connection)."
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme, _, rest = value.partition(":")
        if scheme not in ("sqlite", "postgres", "postgresql") or not rest.strip("/"):
            raise ValueError("must be sqlite:<path> or postgresql://user@host/database")
        return value


class LoggingConfig(_Section):
    """What the bridge logs; tokens never appear at any level."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(description="Log level.")


class Config(BaseSettings):
    """The whole configuration; see ``config.example.yaml`` for what each key means."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    homeserver: HomeserverConfig
    appservice: AppserviceConfig
    api: ApiConfig
    rooms: RoomsConfig
    webhooks: WebhooksConfig
    disputes: DisputesConfig
    policy: PolicyConfig
    lockdown: LockdownConfig
    server: ServerConfig
    database: DatabaseConfig
    logging: LoggingConfig

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init arguments; the environment wins over it.
        return (env_settings, init_settings)

    @property
    def bot_mxid(self) -> str:
        return f"@{self.appservice.bot_localpart}:{self.homeserver.domain}"

    @property
    def party_servers(self) -> frozenset[str]:
        """Servers whose users may be buyers and sellers."""
        return frozenset(self.api.allowed_matrix_servers or [self.homeserver.domain])


def load_config(path: str | Path) -> Config:
    """Read ``path`` and the environment into a `Config`, or raise `ConfigError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of sections")
    return build_config(data)


def build_config(data: dict[str, Any]) -> Config:
    """Validate ``data`` (overridden by the environment) into a `Config`, or raise."""
    try:
        return Config(**data)
    except ValidationError as e:
        raise ConfigError(describe_errors(e)) from None


def describe_errors(error: ValidationError) -> str:
    """One line per problem, each naming the dotted key and its environment variable."""
    lines = ["invalid configuration:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        env_name = ENV_PREFIX + "__".join(str(part) for part in item["loc"]).upper()
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "is missing"
        elif item["type"] == "extra_forbidden":
            message = "is not a known key"
        lines.append(f"  {key}: {message} (env {env_name})")
    return "\n".join(lines)


def config_reference(example: dict[str, Any]) -> str:
    """docs/configuration.md: every key of the model, its environment variable and limits."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the settings model (`bridge/config.py`) by `make docs`; a test keeps it",
        "in step. Every key is required; `config.example.yaml` has a value for each. Any key can",
        "be set from the environment, which wins over the file. Secrets (marked) holding the",
        f"example's `{PLACEHOLDER_PREFIX}...` placeholders, or shorter than {MIN_SECRET_LENGTH}"
        " characters, are refused at start.",
    ]
    for section, field in Config.model_fields.items():
        model = field.annotation
        lines += ["", f"## `{section}`", "", model.__doc__.strip(), ""]
        lines += ["| key | environment | example | limits | meaning |", "|---|---|---|---|---|"]
        schema = model.model_json_schema()["properties"]
        for key, info in model.model_fields.items():
            prop = schema[key]
            limits = ", ".join(
                f"{name} {prop[name]}"
                for name in ("minimum", "maximum", "minLength", "maxLength", "pattern", "enum")
                if name in prop
            )
            value = example[section][key]
            secret = info.annotation in (SecretStr, list[SecretStr])
            shown = "(secret)" if secret else f"`{json.dumps(value)}`"
            env = f"`{ENV_PREFIX}{section.upper()}__{key.upper()}`"
            limits = limits.replace("|", "\\|")  # a pattern's alternatives, inside a table
            lines.append(
                f"| `{section}.{key}` | {env} | {shown} | {limits} | {info.description} |"
            )
    return "\n".join(lines) + "\n"
