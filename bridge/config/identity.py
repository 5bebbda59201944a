"""The identity section: managed accounts, sessions, avatars, deep links, sign-in."""

from __future__ import annotations

from pydantic import AnyHttpUrl, Field, field_validator, model_validator

from .types import Localpart, Secret, Section


class OidcConfig(Section):
    """The marketplace as an OpenID Connect provider of the homeserver ("Sign in with ..."):
    written into the generated homeserver config; each managed account is linked to the
    provider's subject for its marketplace user id (docs/operations.md, Identity)."""

    idp_id: str = Field(
        pattern=r"^[a-z0-9._-]{1,32}$",
        description="The provider's id in Synapse (its logins are recorded as oidc-<idp_id>).",
    )
    idp_name: str = Field(
        min_length=1, max_length=64, description="The button's label: 'Sign in with <name>'."
    )
    issuer: AnyHttpUrl = Field(description="The provider's issuer URL (discovery is read there).")
    client_id: str = Field(min_length=1, max_length=255, description="Synapse's client id there.")
    client_secret: Secret | None = Field(
        default=None,
        description="Synapse's client secret there: needed where the homeserver's config is"
        " generated from this file (make run); the bridge itself never uses it.",
    )
    scopes: list[str] = Field(
        default=["openid", "profile"], min_length=1, description="Scopes Synapse asks for."
    )
    subject_claim: str = Field(
        default="sub",
        pattern=r"^[A-Za-z0-9_.:/-]{1,64}$",
        description="The claim holding the marketplace user id (the accounts are linked by it).",
    )

    @field_validator("idp_id")
    @classmethod
    def _not_legacy(cls, value: str) -> str:
        if value == "oidc":  # Synapse records that one as "oidc", not "oidc-oidc"
            raise ValueError('"oidc" is reserved by Synapse; choose another id')
        return value


class IdentityConfig(Section):
    """Managed accounts (marketplace users with no Matrix ID of their own), their sessions,
    profiles and links (docs/api.md, Users)."""

    user_prefix: Localpart = Field(
        default="market_",
        min_length=1,
        description="Managed accounts are @<user_prefix><escaped user id>:<domain>, in the"
        " appservice's exclusive namespace.",
    )
    session_seconds: int = Field(
        default=3600, ge=60, le=30 * 86400, description="A session's lifetime when none is asked."
    )
    max_session_seconds: int = Field(
        default=7 * 86400, ge=60, le=90 * 86400, description="The longest session one may ask."
    )
    avatar_max_bytes: int = Field(
        default=1024 * 1024, ge=1024, le=16 * 1024 * 1024, description="Largest avatar fetched."
    )
    avatar_timeout_seconds: float = Field(
        default=10, gt=0, le=60, description="Time allowed to fetch an avatar."
    )
    avatar_private_hosts: bool = Field(
        default=False,
        description="Fetch avatars from loopback and private addresses too (tests, demos);"
        " off, an avatar URL may not reach into the bridge's own network.",
    )
    avatar_ca_file: str | None = Field(
        default=None, description="Extra CA certificates (PEM) trusted for avatar URLs."
    )
    web_client_url: AnyHttpUrl | None = Field(
        default=None,
        description="A Matrix web client (Element Web) for deep links: <url>/#/room/<alias>.",
    )
    oidc: OidcConfig | None = Field(default=None, description="Sign-in with the marketplace.")

    @model_validator(mode="after")
    def _lifetimes(self) -> IdentityConfig:
        if self.session_seconds > self.max_session_seconds:
            raise ValueError("session_seconds must not exceed max_session_seconds")
        return self
