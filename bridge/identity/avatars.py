"""Fetching a user's avatar from the marketplace's https URL, once per change.

An avatar URL comes from the marketplace, but a person may have chosen it: the fetch takes
https only (redirects too, at most 3), never reaches a loopback, private, link-local or other
non-public address unless `avatar_private_hosts` is on (checked on every address the name
resolves to, at connection time, so a name that changes its answer cannot slip past; IPv4
addresses carried in IPv6 ones too), stops at the size limit while reading and at one
deadline for the whole fetch, runs at most 4 at once, says only "could not be fetched"
whatever the network did (no oracle of what lies behind a URL), and the bytes must be an
image of a type the homeserver stores, as the uploads rule judges it
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
MAX_CONCURRENT = 4  # fetches at once: a burst of upserts cannot hold many connections open
FIELD = "avatar_url"


class AvatarRefused(InvalidRequest):
    """The avatar URL cannot give an avatar; the message says why."""

    def __init__(self, message: str, field: str = FIELD) -> None:
        super().__init__(f"{field}: {message}", [field])


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def is_public(address: str) -> bool:
    """A global address, and so is any IPv4 address an IPv6 one carries (mapped, 6to4,
    Teredo, NAT64, the old IPv4-compatible form): Python calls 64:ff9b::a9fe:a9fe global,
    yet it reaches 169.254.169.254 through a NAT64 gateway."""
    ip = ipaddress.ip_address(address)
    if not ip.is_global:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        carried = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        if ip in _NAT64 or ip in _IPV4_COMPATIBLE:
            carried.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        return all(v4.is_global for v4 in carried if v4 is not None)
    return True


class _PublicOnly(ThreadedResolver):
    """Resolves names to public addresses only: a name with any other address is refused."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> Any:
        found = await super().resolve(host, port, family)
        if not all(is_public(entry["host"]) for entry in found):
            raise OSError(f"{host} resolves to a non-public address")
        return found


def is_https_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.hostname) and not parts.username


def _private_literal(url: str) -> bool:
    """An address written into the URL: the connector resolves no name for it, so it is
    checked here."""
    try:
        return not is_public(urlsplit(url).hostname or "")
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
        image_types: frozenset[str] = IMAGE_TYPES,
    ) -> None:
        self._max_bytes = max_bytes
        self._timeout = timeout_seconds  # the whole fetch, redirects included
        self._private_hosts = private_hosts
        self._ca_file = ca_file
        self._breaks_rules = breaks_rules
        self._image_types = image_types & IMAGE_TYPES  # and what the homeserver stores
        self._running = asyncio.Semaphore(MAX_CONCURRENT)

    def _session(self) -> ClientSession:
        context = ssl.create_default_context()
        if self._ca_file:
            context.load_verify_locations(self._ca_file)
        resolver = None if self._private_hosts else _PublicOnly()
        connector = TCPConnector(ssl=context, resolver=resolver, use_dns_cache=False)
        return ClientSession(connector=connector, timeout=ClientTimeout(total=self._timeout))

    async def fetch(self, url: str, field: str = FIELD) -> tuple[bytes, str]:
        """The image's bytes and media type, or `AvatarRefused`."""
        if not is_https_url(url):
            raise AvatarRefused("must be an https URL", field)
        async with self._running:
            try:
                async with asyncio.timeout(self._timeout):
                    content = await self._download(url, field)
            except (TimeoutError, ClientError, OSError, ValueError) as e:
                # One answer for every way of failing: no oracle of what lies behind a URL
                # (ValueError: a host name IDNA cannot encode, such as "." or "a..b").
                raise AvatarRefused("could not be fetched", field) from e
        refusal = await asyncio.to_thread(
            judge_upload, content, self._image_types, self._breaks_rules
        )
        if refusal is not None:
            raise AvatarRefused(f"is not an avatar we can use: {refusal}", field)
        return content, sniff_media_type(content) or "application/octet-stream"

    async def _download(self, url: str, field: str) -> bytes:
        async with self._session() as session:
            for _ in range(MAX_REDIRECTS + 1):
                if not self._private_hosts and _private_literal(url):
                    raise AvatarRefused("could not be fetched", field)
                async with session.get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308):
                        url = str(response.url.join(URL(response.headers.get("Location", ""))))
                        if not is_https_url(url):
                            raise AvatarRefused("redirects to a URL that is not https", field)
                        continue
                    if response.status != 200:
                        raise AvatarRefused(f"answered HTTP {response.status}", field)
                    return await self._read(response, field)
        raise AvatarRefused(f"redirects more than {MAX_REDIRECTS} times", field)

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
