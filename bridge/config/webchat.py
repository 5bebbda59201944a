"""The webchat section: the chat the marketplace embeds in its own pages (docs/webchat.md)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field

from .types import Section


def _origin(value: str) -> str:
    """scheme://host[:port], nothing more: what a browser sends as a message's origin."""
    parts = urlsplit(value)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ValueError(f"{value!r} is not an origin such as https://market.example.org")
    return f"{parts.scheme}://{parts.netloc.lower()}"


Origin = Annotated[str, AfterValidator(_origin)]
CssVariable = Annotated[str, Field(pattern=r"^--mc-[a-z0-9-]{1,40}$")]
# A colour, a length, a font list: nothing that could end the declaration or open a comment.
CssValue = Annotated[str, Field(pattern=r"^[A-Za-z0-9#%.,()' \"-]{1,200}$")]


class WebchatConfig(Section):
    """The web chat served under /chat/ (docs/webchat.md): which pages may embed it."""

    allowed_origins: list[Origin] = Field(
        default=[],
        description="Origins of the marketplace's pages that may frame the chat and hand it"
        " sessions (https://market.example.org); none: only pages of the bridge's own origin.",
    )
    theme: dict[CssVariable, CssValue] = Field(
        default={},
        description="CSS variables of the chat's look (docs/webchat.md lists them), e.g."
        " {--mc-accent: '#0b6bcb'}; served as /chat/theme.css after the defaults.",
    )
    default_language: str = Field(
        default="en",
        pattern=r"^(en|fr)$",
        description="The chat's language when the page asks for none it has (en or fr).",
    )
