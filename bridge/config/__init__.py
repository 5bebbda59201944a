"""The bridge's configuration: one YAML file, overridden key by key from the environment.

types.py      the value types and their checks (secrets, server names, Matrix IDs, ...)
settings.py   the sections, `Config`, loading and error messages that name each key
reference.py  docs/configuration.md, generated from the model
"""

from .reference import config_reference
from .settings import (
    ENV_PREFIX,
    ApiConfig,
    AppserviceConfig,
    Config,
    ConfigError,
    DatabaseConfig,
    DisputesConfig,
    GatewayConfig,
    HomeserverConfig,
    LockdownConfig,
    LoggingConfig,
    PolicyConfig,
    RoomsConfig,
    ServerConfig,
    WebhooksConfig,
    build_config,
    describe_errors,
    load_config,
)

__all__ = [
    "ENV_PREFIX",
    "ApiConfig",
    "AppserviceConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "DisputesConfig",
    "GatewayConfig",
    "HomeserverConfig",
    "LockdownConfig",
    "LoggingConfig",
    "PolicyConfig",
    "RoomsConfig",
    "ServerConfig",
    "WebhooksConfig",
    "build_config",
    "config_reference",
    "describe_errors",
    "load_config",
]
