"""Fetching a user's avatar from the marketplace's https URL, once per change.

An avatar URL comes from the marketplace, but a person may have chosen it: the fetch takes
https only (redirects too, at most 3), never reaches a loopback, private, link-local or other
non-public address unless `avatar_private_hosts` is on (checked on every address the name
resolves to, at connection time, so a name that changes its answer cannot slip past), stops
at the size limit while reading, and the bytes must be an image as the uploads rule judges it
(policy.uploads: JPEG, PNG, GIF or WebP by their structure, nothing hidden behind them, no
contact details in their metadata).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, ThreadedResolver
from yarl import URL

from bridge.market.errors import InvalidRequest
from policy.uploads import judge_upload, sniff_media_type

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
MAX_REDIRECTS = 3
FIELD = "avatar_url"


class AvatarRefused(InvalidRequest):
    """The avatar URL cannot give an avatar; the message says why."""

    def __init__(self, message: str, field: str = FIELD) -> None:
        super().__init__(f"{field}: {message}", [field])


class _PublicOnly(ThreadedResolver):
    """Resolves names to public addresses only: a name with any other address is refused."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> Any:
        found = await super().resolve(host, port, family)
        for entry in found:
            if not ipaddress.ip_address(entry["host"]).is_global:
                raise OSError(f"{host} resolves to a non-public address")
        return found


def is_https_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.hostname) and not parts.username


def _private_literal(url: str) -> bool:
    """An address written into the URL: the connector resolves no name for it, so it is
    checked here."""
    try:
        return not ipaddress.ip_address(urlsplit(url).hostname or "").is_global
    except ValueError:
        return False  # a name: the resolver checks what it resolves to


class AvatarFetcher:
    def __init__(
        self,
        max_bytes: int,
        timeout_seconds: float,
        private_hosts: bool,
        ca_file: str | None,
        breaks_rules: Callable[[str], bool],
    ) -> None:
        self._max_bytes = max_bytes
        self._timeout = ClientTimeout(total=timeout_seconds)
        self._private_hosts = private_hosts
        self._ca_file = ca_file
        self._breaks_rules = breaks_rules

    def _session(self) -> ClientSession:
        context = ssl.create_default_context()
        if self._ca_file:
            context.load_verify_locations(self._ca_file)
        resolver = None if self._private_hosts else _PublicOnly()
        connector = TCPConnector(ssl=context, resolver=resolver, use_dns_cache=False)
        return ClientSession(connector=connector, timeout=self._timeout)

    async def fetch(self, url: str, field: str = FIELD) -> tuple[bytes, str]:
        """The image's bytes and media type, or `AvatarRefused`."""
        if not is_https_url(url):
            raise AvatarRefused("must be an https URL", field)
        async with self._session() as session:
            for _ in range(MAX_REDIRECTS + 1):
                if not self._private_hosts and _private_literal(url):
                    raise AvatarRefused("could not be fetched (not a public address)", field)
                try:
                    async with session.get(url, allow_redirects=False) as response:
                        if response.status in (301, 302, 303, 307, 308):
                            url = str(response.url.join(URL(response.headers.get("Location", ""))))
                            if not is_https_url(url):
                                raise AvatarRefused("redirects to a URL that is not https", field)
                            continue
                        if response.status != 200:
                            raise AvatarRefused(f"answered HTTP {response.status}", field)
                        content = await self._read(response, field)
                except (TimeoutError, ClientError, OSError) as e:
                    raise AvatarRefused(f"could not be fetched ({type(e).__name__})", field) from e
                break
            else:
                raise AvatarRefused(f"redirects more than {MAX_REDIRECTS} times", field)
        refusal = await asyncio.to_thread(judge_upload, content, IMAGE_TYPES, self._breaks_rules)
        if refusal is not None:
            raise AvatarRefused(f"is not an avatar we can use: {refusal}", field)
        return content, sniff_media_type(content) or "application/octet-stream"

    async def _read(self, response: Any, field: str) -> bytes:
        if (response.content_length or 0) > self._max_bytes:
            raise AvatarRefused(f"is larger than {self._max_bytes} bytes", field)
        chunks, size = [], 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self._max_bytes:
                raise AvatarRefused(f"is larger than {self._max_bytes} bytes", field)
            chunks.append(chunk)
        return b"".join(chunks)
