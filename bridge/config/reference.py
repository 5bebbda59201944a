"""docs/configuration.md, generated from the settings model (`make docs`; a test keeps it true)."""

from __future__ import annotations

import json
from typing import Any

from .settings import ENV_PREFIX, Config
from .types import MIN_SECRET_LENGTH, PLACEHOLDER_PREFIX


def _is_secret(prop: dict[str, Any]) -> bool:
    """Secrets (SecretStr, or lists of them) are write-only in the JSON schema."""
    return bool(prop.get("writeOnly") or prop.get("items", {}).get("writeOnly"))


def config_reference(example: dict[str, Any]) -> str:
    """Every key of the model, its environment variable, example value, limits and meaning."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the settings model (`bridge/config/settings.py`) by `make docs`; a test",
        "keeps it in step. Every key is required; `config.example.yaml` has a value for each. Any",
        "key can be set from the environment, which wins over the file. Secrets (marked) holding",
        f"the example's `{PLACEHOLDER_PREFIX}...` placeholders, or shorter than"
        f" {MIN_SECRET_LENGTH} characters, are refused at start.",
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
            shown = "(secret)" if _is_secret(prop) else f"`{json.dumps(value)}`"
            env = f"`{ENV_PREFIX}{section.upper()}__{key.upper()}`"
            limits = limits.replace("|", "\\|")  # a pattern's alternatives, inside a table
            lines.append(
                f"| `{section}.{key}` | {env} | {shown} | {limits} | {info.description} |"
            )
    return "\n".join(lines) + "\n"
