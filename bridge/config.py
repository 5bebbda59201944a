"""The bridge's configuration: a YAML file, overridden key by key from the environment.

Every key can be set as ``BRIDGE_<SECTION>__<KEY>`` (for example
``BRIDGE_APPSERVICE__AS_TOKEN``), which is how real secrets should arrive: the committed
``config.example.yaml`` carries placeholders, and a placeholder secret is refused at start.
"""

from __future__ import annotations

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

ENV_PREFIX = "BRIDGE_"
PLACEHOLDER_PREFIX = "CHANGE_ME"
MIN_SECRET_LENGTH = 32

# Matrix grammar (spec, "Identifier grammar"): localparts may use these characters only.
_LOCALPART = re.compile(r"^[a-z0-9._=/+-]+$")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


class ConfigError(Exception):
    """The configuration cannot be used; the message names every offending key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _require_real_secret(value: SecretStr) -> SecretStr:
    secret = value.get_secret_value()
    if secret.startswith(PLACEHOLDER_PREFIX):
        raise ValueError(
            "is still the example's placeholder; supply a real secret through the environment "
            "or your own config file"
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters long")
    return value


class HomeserverConfig(_Section):
    url: AnyHttpUrl = Field(description="Client-server API base URL the bridge calls.")
    domain: str = Field(description="The homeserver's server name (the part after ':').")

    @field_validator("domain")
    @classmethod
    def _valid_server_name(cls, value: str) -> str:
        if not _SERVER_NAME.match(value):
            raise ValueError("is not a valid Matrix server name")
        return value


class AppserviceConfig(_Section):
    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    url: AnyHttpUrl = Field(description="Where the homeserver reaches the bridge.")
    as_token: SecretStr
    hs_token: SecretStr
    bot_localpart: str = Field(min_length=1, max_length=64)
    alias_prefix: str = Field(min_length=1, max_length=64)
    max_transaction_bytes: int = Field(ge=1024 * 1024, le=1024 * 1024 * 1024)

    _check_as_token = field_validator("as_token")(_require_real_secret)
    _check_hs_token = field_validator("hs_token")(_require_real_secret)

    @field_validator("bot_localpart", "alias_prefix")
    @classmethod
    def _valid_localpart(cls, value: str) -> str:
        if not _LOCALPART.match(value):
            raise ValueError("may only contain a-z, 0-9 and . _ = / + -")
        return value


class ServerConfig(_Section):
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)


class DatabaseConfig(_Section):
    url: str
    max_connections: int = Field(ge=1, le=1000)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme, _, rest = value.partition(":")
        if scheme not in ("sqlite", "postgres", "postgresql") or not rest.strip("/"):
            raise ValueError("must be sqlite:<path> or postgresql://user@host/database")
        return value


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]


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
