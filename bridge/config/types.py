"""The value types of the configuration, each with its check, reusable across sections.

A failed check raises ValueError with a message that reads after the key's name
("appservice.hs_token: must be at least 32 characters long").
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr

from appservice.identifiers import LOCALPART, is_matrix_user_id, is_server_name
from policy.uploads import KNOWN_UPLOAD_TYPES

PLACEHOLDER_PREFIX = "CHANGE_ME"


class Section(BaseModel):
    """A section of the configuration: unknown keys refused, frozen once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


MIN_SECRET_LENGTH = 32


def _check(test: Callable[[Any], bool], problem: str) -> AfterValidator:
    """A validator that passes a value ``test`` accepts; ``problem`` may name it as {value!r}."""

    def validate(value: Any) -> Any:
        if not test(value):
            raise ValueError(problem.format(value=value))
        return value

    return AfterValidator(validate)


def _refuse_placeholder(secret: str) -> None:
    if secret.startswith(PLACEHOLDER_PREFIX):
        raise ValueError(
            "is still the example's placeholder; supply a real secret through the environment "
            "or your own config file"
        )


def _real_secret(value: SecretStr) -> SecretStr:
    secret = value.get_secret_value()
    _refuse_placeholder(secret)
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters long")
    return value


def _webhook_secret(value: SecretStr) -> SecretStr:
    secret = value.get_secret_value()
    _refuse_placeholder(secret)
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        key = b""
    if not secret.startswith("whsec_") or len(key) < 24:
        raise ValueError("must be whsec_ followed by at least 24 bytes in base64")
    return value


# A token shared with another party: no placeholder, at least 32 characters.
Secret = Annotated[SecretStr, AfterValidator(_real_secret)]
# A Standard Webhooks signing secret: whsec_ and at least 24 bytes in base64.
WebhookSecret = Annotated[SecretStr, AfterValidator(_webhook_secret)]
ServerName = Annotated[
    str, _check(is_server_name, "is not a valid Matrix server name ({value!r})")
]
MatrixUserId = Annotated[str, _check(is_matrix_user_id, "{value!r} is not a Matrix user ID")]
Localpart = Annotated[
    str, _check(lambda v: bool(LOCALPART.match(v)), "may only contain a-z, 0-9 and . _ = / + -")
]
DecisionName = Annotated[
    str,
    _check(
        lambda v: bool(re.fullmatch(r"[a-z0-9_]{1,64}", v)),
        "{value!r} must be 1 to 64 of a-z 0-9 _",
    ),
]
MediaTypePattern = Annotated[
    str,
    _check(
        lambda v: bool(re.fullmatch(r"[a-z0-9.+-]+/(\*|[a-z0-9.+-]+)", v)),
        "{value!r} is not a media type like image/png or image/*",
    ),
]
HostName = Annotated[
    str,
    _check(
        lambda v: bool(re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", v)),
        "{value!r} is not a lower-case host name like example.com",
    ),
]
UploadType = Annotated[
    str,
    _check(
        lambda v: v in KNOWN_UPLOAD_TYPES,
        "{value!r} is not recognisable by content; one of "
        + ", ".join(sorted(KNOWN_UPLOAD_TYPES)),
    ),
]


def _database_url(value: str) -> bool:
    scheme, _, rest = value.partition(":")
    return scheme in ("sqlite", "postgres", "postgresql") and bool(rest.strip("/"))


DatabaseUrl = Annotated[
    str, _check(_database_url, "must be sqlite:<path> or postgresql://user@host/database")
]
