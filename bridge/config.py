"""The bridge's configuration: a YAML file, overridden key by key from the environment.

Every key can be set as ``BRIDGE_<SECTION>__<KEY>`` (for example
``BRIDGE_APPSERVICE__AS_TOKEN``), which is how real secrets should arrive: the committed
``config.example.yaml`` carries placeholders, and a placeholder secret is refused at start.
"""

from __future__ import annotations

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

ENV_PREFIX = "BRIDGE_"
PLACEHOLDER_PREFIX = "CHANGE_ME"
MIN_SECRET_LENGTH = 32


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
        if not is_server_name(value):
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
        if not LOCALPART.match(value):
            raise ValueError("may only contain a-z, 0-9 and . _ = / + -")
        return value


class ApiConfig(_Section):
    token: SecretStr = Field(description="Bearer token of the marketplace backend.")
    max_body_bytes: int = Field(ge=1024, le=16 * 1024 * 1024)
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
    version: Literal["10", "11", "12"] = Field(
        description="Room version of new rooms; power levels depend on it."
    )
    admins: list[str] = Field(description="Matrix IDs of the marketplace's admins.")

    @field_validator("admins")
    @classmethod
    def _valid_admins(cls, value: list[str]) -> list[str]:
        for user_id in value:
            if not is_matrix_user_id(user_id):
                raise ValueError(f"{user_id!r} is not a Matrix user ID")
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
    api: ApiConfig
    rooms: RoomsConfig
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
