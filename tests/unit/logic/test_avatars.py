"""Fetching avatars: https only, public addresses only, bounded, images only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.identity.avatars import AvatarFetcher, AvatarRefused, is_public
from tests.e2e.test_lockdown import png
from tests.https_server import AvatarServer


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[AvatarServer]:
    server = AvatarServer(tmp_path)
    await server.start()
    server.files["a.png"] = (png(), "image/png")
    yield server
    await server.stop()


def fetcher(server: AvatarServer, *, private_hosts: bool = True, max_bytes: int = 4096):
    return AvatarFetcher(max_bytes, 5, private_hosts, str(server.ca_file), lambda text: False)


async def test_an_image_is_fetched_with_its_type(server: AvatarServer) -> None:
    content, media_type = await fetcher(server).fetch(server.url("a.png"))
    assert content == png() and media_type == "image/png"


async def test_loopback_and_private_addresses_are_refused_unless_allowed(
    server: AvatarServer,
) -> None:
    public_only = fetcher(server, private_hosts=False)
    with pytest.raises(AvatarRefused, match="could not be fetched"):
        await public_only.fetch(server.url("a.png"))
    # A name is checked on every address it resolves to, when connecting.
    with pytest.raises(AvatarRefused, match="could not be fetched"):
        await public_only.fetch(f"https://localhost:{server.port}/a.png")
    with pytest.raises(AvatarRefused, match="could not be fetched"):
        await public_only.fetch("https://[::1]/a.png")
    assert server.fetched == []  # refused before connecting


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1/a.png", "https"),
        ("https://user:pw@127.0.0.1/a.png", "https"),
        ("ftp://127.0.0.1/a.png", "https"),
    ],
)
async def test_only_plain_https_urls(server: AvatarServer, url: str, problem: str) -> None:
    with pytest.raises(AvatarRefused, match=problem):
        await fetcher(server).fetch(url)


async def test_redirects_stay_on_https(server: AvatarServer) -> None:
    server.redirects["moved.png"] = server.url("a.png")
    content, _ = await fetcher(server).fetch(server.url("moved.png"))
    assert content == png()
    server.redirects["down.png"] = "http://127.0.0.1/a.png"
    with pytest.raises(AvatarRefused, match="not https"):
        await fetcher(server).fetch(server.url("down.png"))
    server.redirects["loop.png"] = server.url("loop.png")
    with pytest.raises(AvatarRefused, match="redirects more than"):
        await fetcher(server).fetch(server.url("loop.png"))


async def test_too_large_or_not_an_image_is_refused(server: AvatarServer) -> None:
    server.files["big.png"] = (png() + b"\0" * 5000, "image/png")
    with pytest.raises(AvatarRefused, match="larger than 4096 bytes"):
        await fetcher(server).fetch(server.url("big.png"))
    server.files["page.png"] = (b"<html><script>x</script></html>", "image/png")
    with pytest.raises(AvatarRefused, match="not an avatar"):
        await fetcher(server).fetch(server.url("page.png"))
    with pytest.raises(AvatarRefused, match="HTTP 404"):
        await fetcher(server).fetch(server.url("missing.png"))


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1::1", True),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("10.0.0.1", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 to 169.254.169.254
        ("2002:a9fe:a9fe::", False),  # 6to4
        ("::a9fe:a9fe", False),  # IPv4-compatible
        ("fd00::1", False),
    ],
)
def test_addresses_that_carry_a_private_one_are_not_public(address: str, public: bool) -> None:
    assert is_public(address) is public


@pytest.mark.parametrize(
    "url", ["https://.", "https://a..b/x.png", "https://" + "a" * 64 + ".com"]
)
async def test_a_host_name_no_resolver_can_encode_is_refused_not_a_crash(
    server: AvatarServer, url: str
) -> None:
    with pytest.raises(AvatarRefused, match="could not be fetched"):
        await fetcher(server, private_hosts=False).fetch(url)
