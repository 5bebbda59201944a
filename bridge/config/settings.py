"""The bridge's configuration: a YAML file, overridden key by key from the environment.

Every key can be set as ``BRIDGE_<SECTION>__<KEY>`` (for example
``BRIDGE_APPSERVICE__AS_TOKEN``), which is how real secrets should arrive: the committed
``config.example.yaml`` carries placeholders, and a placeholder secret is refused at start.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AnyHttpUrl, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .deals import DealsConfig, RemindersConfig
from .identity import IdentityConfig
from .retention import RetentionConfig
from .types import (
    DatabaseUrl,
    DecisionName,
    HostName,
    Localpart,
    MatrixUserId,
    MediaTypePattern,
    Secret,
    Section,
    ServerName,
    UploadType,
    WebhookSecret,
)
from .webchat import WebchatConfig

ENV_PREFIX = "BRIDGE_"


class ConfigError(Exception):
    """The configuration cannot be used; the message names every offending key."""


class HomeserverConfig(Section):
    """The homeserver the bridge is an appservice of."""

    url: AnyHttpUrl = Field(description="Client-server API base URL the bridge calls.")
    domain: ServerName = Field(description="The homeserver's server name (the part after ':').")
    watch_interval_seconds: float = Field(
        ge=0,
        le=60,
        description="How often the bridge checks the homeserver answers; after an outage it"
        " reads back the events a restarted Synapse never sent. 0: never.",
    )


class AppserviceConfig(Section):
    """The appservice registration and the homeserver's side of the bridge."""

    id: str = Field(
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="The appservice's id in the registration; the ping endpoint is keyed by it.",
    )
    url: AnyHttpUrl = Field(description="Where the homeserver reaches the bridge.")
    as_token: Secret = Field(description="Token the bridge presents to the homeserver.")
    hs_token: Secret = Field(description="Token the homeserver presents to the bridge.")
    bot_localpart: Localpart = Field(
        min_length=1, max_length=64, description="Localpart of the policy bot's user ID."
    )
    alias_prefix: Localpart = Field(
        min_length=1,
        max_length=64,
        description="Room aliases starting with it are reserved for the bridge's rooms.",
    )
    max_transaction_bytes: int = Field(
        ge=1024 * 1024,
        le=1024 * 1024 * 1024,
        description="Largest homeserver transaction accepted, in bytes.",
    )


class ApiConfig(Section):
    """The marketplace REST API (/api/v1)."""

    token: Secret = Field(description="Bearer token of the marketplace backend.")
    max_body_bytes: int = Field(
        ge=1024, le=16 * 1024 * 1024, description="Largest request body accepted, in bytes."
    )
    allowed_matrix_servers: list[ServerName] = Field(
        description="Servers whose users may be parties; empty means the homeserver's only."
    )


class RoomsConfig(Section):
    """The rooms the bridge creates."""

    version: Literal["10", "11", "12"] = Field(
        description="Room version of new rooms; power levels depend on it."
    )
    admins: list[MatrixUserId] = Field(description="Matrix IDs of the marketplace's admins.")
    command_prefix: str = Field(
        pattern=r"^[!-~]{1,32}$", description="What starts an admin command in Matrix."
    )
    management_room: str = Field(
        description="Room ID of the admins' room; empty: the bot creates one on first start."
    )


class WebhooksConfig(Section):
    """Marketplace notifications: signed POSTs (Standard Webhooks), at least once, in order."""

    url: AnyHttpUrl = Field(description="Where notifications are POSTed.")
    secrets: list[WebhookSecret] = Field(
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


class DisputesConfig(Section):
    """Dispute rooms."""

    freeze_transaction_room: bool = Field(
        description="Whether parties stop posting in the transaction room while a dispute is open."
    )
    decisions: list[DecisionName] = Field(
        min_length=1, description="The decisions a dispute can be resolved with."
    )


class RuleConfig(Section):
    """One content rule: what the bot does when a message breaks it, and where it applies."""

    actions: list[Literal["redact", "warn", "mute", "alert"]] = Field(
        min_length=1, description="What the bot does: redact, warn, mute, alert."
    )
    access: list[Literal["locked", "open", "frozen"]] = Field(
        description="Room access states the rule applies in; [] turns the rule off."
    )


class RulesConfig(Section):
    """Every content rule, each with its actions and the room access states it applies in."""

    msgtype: RuleConfig
    media_type: RuleConfig
    media_size: RuleConfig
    contact_details: RuleConfig
    flood: RuleConfig
    malformed_content: RuleConfig


class PolicyConfig(Section):
    """The policy bot: content rules for parties' messages (admins are exempt), mutes, and how
    often every managed room is compared with its plan and repaired."""

    allowed_msgtypes: list[str] = Field(
        min_length=1, description="Message types parties may send (rule msgtype)."
    )
    allowed_media_types: list[MediaTypePattern] = Field(
        description="Declared media types parties may send, 'image/*' style (rule media_type)."
    )
    max_media_bytes: int = Field(
        ge=0, description="Largest declared media size in bytes (rule media_size)."
    )
    allowed_link_hosts: list[HostName] = Field(
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
        description="How often open rooms are compared with their plans; 0: never on a"
        " schedule (rooms that changed are still compared, at start and as they change).",
    )
    full_reconcile_interval_seconds: int = Field(
        default=86400,
        ge=0,
        le=30 * 86400,
        description="How often every room is compared with its plan, by one bridge process"
        " (a lease); 0: only by `python -m bridge reconcile`.",
    )
    rules: RulesConfig = Field(description="Each rule's actions and access states.")


class LockdownConfig(Section):
    """The homeserver's side doors: the Synapse module's options (written into homeserver.yaml
    by `make run` and `generate-deployment`; see docs/homeserver.md)."""

    parties_may_create_rooms: bool = Field(
        description="Whether users other than the bot and the admins may create rooms or DMs."
    )
    parties_may_invite: bool = Field(
        description="Whether users other than the bot and the admins may invite anyone."
    )
    before_delivery: Literal["mask", "refuse", "off"] = Field(
        description="What the homeserver does with a party's message that breaks a content"
        " rule, before anyone sees it: mask its contact details and refuse it for any other"
        " rule; refuse it; or off (the bot redacts it after delivery)."
    )
    upload_types: list[UploadType] = Field(
        description="Types an upload's bytes may be, for everyone (checked by magic numbers)."
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        """``reject_before_delivery`` (a boolean) was renamed ``before_delivery``."""
        if isinstance(data, dict) and "reject_before_delivery" in data:
            warnings.warn(
                "lockdown.reject_before_delivery is deprecated: set lockdown.before_delivery"
                " to refuse (for true) or off (for false), or to mask",
                FutureWarning,
                stacklevel=2,
            )
            data = dict(data)
            rejected = data.pop("reject_before_delivery")
            data.setdefault("before_delivery", "refuse" if rejected in (True, "true") else "off")
        return data


class ServerConfig(Section):
    """The bridge's HTTP server: homeserver routes, marketplace API, health and metrics."""

    host: str = Field(min_length=1, description="Address to listen on.")
    port: int = Field(ge=1, le=65535, description="Port to listen on (the one in appservice.url).")


class GatewayConfig(Section):
    """The client gateway (`python -m bridge gateway`): what Matrix clients connect to in front
    of the homeserver; it closes the channels around a room's lock that Synapse offers no hook
    for (docs/homeserver.md). It forwards to homeserver.url."""

    host: str = Field(min_length=1, description="Address the gateway listens on.")
    port: int = Field(
        ge=1, le=65535, description="Port clients connect to (the homeserver address they use)."
    )
    public_url: AnyHttpUrl | None = Field(
        default=None,
        description="The gateway's address as clients reach it (sessions hand it out);"
        " default http://<host>:<port>.",
    )

    @property
    def client_url(self) -> str:
        return str(self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class DatabaseConfig(Section):
    """Where the bridge keeps its state."""

    url: DatabaseUrl = Field(
        description="sqlite:<path> (one process) or postgresql://user@host/db (production)."
    )
    max_connections: int = Field(
        ge=1,
        le=1000,
        description="Most PostgreSQL connections open at once, each opened when first needed"
        " and then kept (SQLite always uses one connection).",
    )


class LoggingConfig(Section):
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
    gateway: GatewayConfig
    identity: IdentityConfig = IdentityConfig()
    webchat: WebchatConfig = WebchatConfig()
    reminders: RemindersConfig = RemindersConfig()
    deals: DealsConfig = DealsConfig()
    retention: RetentionConfig = RetentionConfig()
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

    @model_validator(mode="after")
    def _managed_namespace_is_the_marketplace_users(self) -> Config:
        """The bot and the admins must not fall in the managed accounts' namespace: the
        bridge would take them for marketplace users (and could mint their sessions)."""
        prefix, domain = f"@{self.identity.user_prefix}", f":{self.homeserver.domain}"
        inside = [
            user
            for user in (self.bot_mxid, *self.rooms.admins)
            if user.startswith(prefix) and user.endswith(domain)
        ]
        if inside:
            raise ValueError(
                f"identity.user_prefix: {', '.join(inside)} would be a managed account;"
                " choose a prefix the bot and the admins do not start with"
            )
        return self

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
        # An item of a list is reported under the list's key, which is what one sets.
        loc = [str(part) for part in item["loc"] if not isinstance(part, int)]
        key = ".".join(loc)
        env_name = ENV_PREFIX + "__".join(loc).upper()
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "is missing"
        elif item["type"] == "extra_forbidden":
            message = "is not a known key"
        lines.append(f"  {key}: {message} (env {env_name})")
    return "\n".join(lines)
