"""'Sign in with <marketplace>' for people who use Element: the marketplace as Synapse's OpenID
Connect provider, its subjects pre-linked to the managed accounts the bridge creates.

A real Synapse with the marketplace module and the `oidc_providers` entry that
`homeserver_config(oidc=...)` writes, a small provider (tests/oidc_provider.py), the bridge;
then what a browser does, in raw HTTP with its cookies: the login flows, Synapse's SSO
redirect, the provider's /authorize, Synapse's callback, the client's redirect URL with a
login token, and `m.login.token`.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import pytest
from aiohttp import ClientSession, CookieJar

from bridge.config import Config
from bridge.ops.deployment import (
    lockdown_module,
    write_registration,
)
from bridge.ops.local_synapse import LocalSynapse
from tests.harness import (
    SYNAPSE_READY,
    GatewayProcess,
    MarketClient,
    free_port,
    make_config,
    random_secret,
    running_bridge,
    unique_id,
)
from tests.oidc_provider import OidcProvider

IDP_ID = "market"
IDP_NAME = "Example Market"
# The web client Synapse hands the login token to without its "Continue to your account" page
# (sso.client_whitelist). Never fetched: the test reads the token from the redirect.
ELEMENT = "http://127.0.0.1:9/element/"


class SignInSynapse(LocalSynapse):
    """A Synapse whose config has the marketplace as its OpenID Connect provider, as
    `homeserver_config(oidc=...)` writes it (public_baseurl: Synapse's own loopback address,
    unless given).

    Tests only: the provider serves plain http, which Synapse's checks of the discovery
    document refuse (an https issuer is required), so ``skip_verification`` is on here and
    nowhere else.
    """

    def __init__(self, *args: Any, public_baseurl: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, sso_client_whitelist=[ELEMENT], **kwargs)
        self.public_baseurl = public_baseurl or self.url + "/"

    def homeserver_yaml(self) -> dict[str, Any]:
        config = super().homeserver_yaml()
        (provider,) = config["oidc_providers"]
        provider["skip_verification"] = True  # plain http on loopback: tests only
        return config


def oidc_settings(provider: OidcProvider) -> dict[str, Any]:
    """The bridge's identity.oidc for ``provider``."""
    return {
        "idp_id": IDP_ID,
        "idp_name": IDP_NAME,
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "client_secret": provider.client_secret,
    }


@dataclass
class SignInServer:
    synapse: SignInSynapse
    provider: OidcProvider
    settings: dict[str, Any]  # make_config's arguments but the database, for every bridge
    admin_token: str

    def bridge_config(self, database_url: str) -> Config:
        return make_config(database_url=database_url, **self.settings)


@pytest.fixture(scope="module")
def sign_in_server(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[SignInServer]:
    """One Synapse for this module: the provider must be in its config before it starts."""
    root = tmp_path_factory.mktemp("oidc")
    provider = OidcProvider(client_id="synapse", client_secret=random_secret())
    provider.start()
    synapse: SignInSynapse | None = None
    try:
        synapse_port = free_port()
        settings: dict[str, Any] = {
            "homeserver_url": f"http://127.0.0.1:{synapse_port}",
            "bridge_port": free_port(),
            "as_token": random_secret(),
            "hs_token": random_secret(),
            "identity": {"oidc": oidc_settings(provider)},
        }
        config = make_config(database_url="sqlite:unused.db", **settings)
        registration = root / "registration.yaml"
        write_registration(config, registration)
        synapse = SignInSynapse(
            root / "synapse",
            server_name="localhost",
            port=synapse_port,
            registration_files=[registration],
            relaxed_rate_limits=True,
            module=lockdown_module(config.model_dump(mode="json")),
            oidc=config.identity.oidc,
        )
        provider.redirect_uris = [synapse.url + "/_synapse/client/oidc/callback"]
        synapse.start()
        pytestconfig.stash.setdefault(SYNAPSE_READY, []).append(synapse.ready_seconds)
        admin = synapse.register_user("operator", random_secret(), admin=True)
        yield SignInServer(synapse, provider, settings, admin["access_token"])
    finally:
        if synapse is not None:
            synapse.stop()
        provider.stop()


@pytest.fixture
async def market(
    sign_in_server: SignInServer, tmp_path: Path
) -> AsyncIterator[tuple[MarketClient, ClientSession]]:
    """The bridge running on this module's Synapse, and the marketplace's client of it."""
    config = sign_in_server.bridge_config(f"sqlite://{tmp_path / 'bridge.db'}")
    async with ClientSession() as session, running_bridge(config):
        api = MarketClient(
            session,
            f"http://127.0.0.1:{config.server.port}",
            config.api.token.get_secret_value(),
        )
        yield api, session


def new_browser(homeserver: str) -> ClientSession:
    """A browser's HTTP: cookies kept (on loopback addresses, which browsers hold secure, as
    Synapse's session cookies must be), redirects left to the test."""
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[homeserver])
    return ClientSession(cookie_jar=jar)


@pytest.fixture
async def browser(sign_in_server: SignInServer) -> AsyncIterator[ClientSession]:
    async with new_browser(sign_in_server.synapse.url) as session:
        yield session


@dataclass
class Hop:
    status: int
    url: str
    location: str | None


@dataclass
class SsoResult:
    hops: list[Hop] = field(default_factory=list)
    login_token: str | None = None
    confirmation_page: bool = False
    status: int = 0  # of the last answer, when no token came back
    text: str = ""


async def single_sign_on(
    browser: ClientSession, homeserver: str, idp: str, redirect_url: str
) -> SsoResult:
    """From Synapse's SSO redirect to ``redirect_url?loginToken=...``, one hop at a time,
    through Synapse's confirmation page when it shows one."""
    result = SsoResult()
    url = (
        f"{homeserver}/_matrix/client/v3/login/sso/redirect/{quote(idp)}"
        f"?redirectUrl={quote(redirect_url, safe='')}"
    )
    for _ in range(10):
        if url.startswith(redirect_url):
            (result.login_token,) = parse_qs(urlsplit(url).query)["loginToken"]
            return result
        async with browser.get(url, allow_redirects=False) as answer:
            text = await answer.text()
            location = answer.headers.get("Location")
            result.hops.append(Hop(answer.status, url.split("?")[0], location))
        if answer.status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
            continue
        link = re.search(r'href="([^"]*loginToken=[^"]*)"', text)
        if answer.status == 200 and link:  # "Continue to your account"
            result.confirmation_page = True
            url = html.unescape(link.group(1))
            continue
        result.status, result.text = answer.status, text
        return result
    raise AssertionError(f"too many redirects: {result.hops}")


async def client_call(
    session: ClientSession,
    homeserver: str,
    method: str,
    path: str,
    token: str | None = None,
    body: Any = None,
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with session.request(method, homeserver + path, json=body, headers=headers) as answer:
        return answer.status, await answer.json(content_type=None)


def uid(role: str) -> str:
    return unique_id(role)


async def test_a_managed_user_signs_in_with_the_marketplace(
    sign_in_server: SignInServer, market: tuple[MarketClient, ClientSession], browser
) -> None:
    api, session = market
    homeserver, provider = sign_in_server.synapse.url, sign_in_server.provider
    buyer, seller = uid("buyer"), uid("seller")
    status, made = await api.call("PUT", f"/users/{buyer}", {"display_name": "Ann B."})
    assert status == 201 and made["managed"], made
    account = made["matrix_id"]
    assert account == f"@market_{buyer}:localhost"
    status, _ = await api.call("PUT", f"/users/{seller}", {"display_name": "Sam"})
    assert status == 201
    order = {
        "transaction_id": uid("order"),
        "title": "Road bike",
        "buyer": {"user_id": buyer},
        "seller": {"user_id": seller},
    }
    status, txn = await api.call("POST", "/transactions", order)
    assert status == 201, txn
    room_id = txn["room_id"]
    # The bridge linked the account to the provider's subject (Synapse's admin API reads it).
    status, linked = await client_call(
        session,
        homeserver,
        "GET",
        f"/_synapse/admin/v1/auth_providers/oidc-{IDP_ID}/users/{quote(buyer)}",
        sign_in_server.admin_token,
    )
    assert (status, linked) == (200, {"user_id": account})

    # Element asks how to log in: the marketplace is offered.
    status, flows = await client_call(browser, homeserver, "GET", "/_matrix/client/v3/login")
    assert status == 200
    (sso,) = [flow for flow in flows["flows"] if flow["type"] == "m.login.sso"]
    assert {"id": f"oidc-{IDP_ID}", "name": IDP_NAME} in [
        {"id": idp["id"], "name": idp["name"]} for idp in sso["identity_providers"]
    ]

    # The person signs in at the marketplace, as the buyer, under another name there.
    provider.subject, provider.claims = buyer, {"name": "Ann at the market"}
    result = await single_sign_on(browser, homeserver, f"oidc-{IDP_ID}", ELEMENT)
    assert result.login_token, result
    synapse_redirect, authorize, callback = result.hops
    assert synapse_redirect.location and synapse_redirect.location.startswith(
        provider.issuer + "authorize?"
    )
    assert authorize.location and authorize.location.startswith(
        homeserver + "/_synapse/client/oidc/callback?"
    )
    # A whitelisted web client gets the token straight back: no "Continue to" page.
    assert callback.location and callback.location.startswith(ELEMENT)
    assert not result.confirmation_page
    assert provider.issued[-1] == buyer

    status, login = await client_call(
        browser,
        homeserver,
        "POST",
        "/_matrix/client/v3/login",
        body={"type": "m.login.token", "token": result.login_token},
    )
    assert status == 200, login
    assert login["user_id"] == account
    token = login["access_token"]
    status, me = await client_call(
        browser, homeserver, "GET", "/_matrix/client/v3/account/whoami", token
    )
    assert (status, me["user_id"]) == (200, account)
    # The room the bridge joined the account to, readable with the new session.
    status, joined = await client_call(
        browser, homeserver, "GET", "/_matrix/client/v3/joined_rooms", token
    )
    assert status == 200 and room_id in joined["joined_rooms"], joined
    status, messages = await client_call(
        browser,
        homeserver,
        "GET",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=50",
        token,
    )
    assert status == 200, messages
    names = [e["content"].get("name") for e in messages["chunk"] if e["type"] == "m.room.name"]
    assert names and "Road bike" in names[0], messages["chunk"]
    # The marketplace's profile stays: Synapse took nothing from the provider's claims.
    status, profile = await client_call(
        browser, homeserver, "GET", f"/_matrix/client/v3/profile/{quote(account)}", token
    )
    assert (status, profile.get("displayname")) == (200, "Ann B."), profile
    # A token is good once.
    status, again = await client_call(
        browser,
        homeserver,
        "POST",
        "/_matrix/client/v3/login",
        body={"type": "m.login.token", "token": result.login_token},
    )
    assert status == 403, again


async def test_another_client_passes_synapses_confirmation_page(
    sign_in_server: SignInServer, market: tuple[MarketClient, ClientSession], browser
) -> None:
    api, _ = market
    homeserver, provider = sign_in_server.synapse.url, sign_in_server.provider
    user = uid("buyer")
    status, made = await api.call("PUT", f"/users/{user}", {"display_name": "Ann"})
    assert status == 201
    provider.subject, provider.claims = user, {}
    result = await single_sign_on(
        browser, homeserver, f"oidc-{IDP_ID}", "http://127.0.0.1:9/other-client/"
    )
    assert result.confirmation_page and result.login_token, result
    status, login = await client_call(
        browser,
        homeserver,
        "POST",
        "/_matrix/client/v3/login",
        body={"type": "m.login.token", "token": result.login_token},
    )
    assert (status, login.get("user_id")) == (200, made["matrix_id"]), login


async def test_a_subject_with_no_managed_account_is_refused(
    sign_in_server: SignInServer, market: tuple[MarketClient, ClientSession], browser
) -> None:
    api, session = market
    homeserver, provider = sign_in_server.synapse.url, sign_in_server.provider
    admin = sign_in_server.admin_token

    async def accounts() -> list[str]:
        status, listed = await client_call(
            session, homeserver, "GET", "/_synapse/admin/v2/users?limit=1000&guests=false", admin
        )
        assert status == 200, listed
        return sorted(user["name"] for user in listed["users"])

    before = await accounts()
    stranger = uid("stranger")  # known to the provider, never created through the bridge
    provider.subject, provider.claims = stranger, {"name": "Stranger"}
    result = await single_sign_on(browser, homeserver, f"oidc-{IDP_ID}", ELEMENT)
    assert result.login_token is None, result
    assert provider.issued[-1] == stranger  # the provider vouched for them; Synapse refused
    assert result.status == 400 and "registrations are disabled" in result.text, result
    assert result.hops[-1].url == homeserver + "/_synapse/client/oidc/callback"
    assert await accounts() == before
    status, linked = await client_call(
        session,
        homeserver,
        "GET",
        f"/_synapse/admin/v1/auth_providers/oidc-{IDP_ID}/users/{quote(stranger)}",
        admin,
    )
    assert status == 404, linked
    # A name matching an existing account's is no way in either (allow_existing_users off):
    # the stranger claims the managed localpart of someone else.
    owner = uid("seller")
    status, made = await api.call("PUT", f"/users/{owner}", {"display_name": "Sam"})
    assert status == 201
    provider.subject = made["matrix_id"][1:].split(":")[0]  # "market_seller-..."
    result = await single_sign_on(browser, homeserver, f"oidc-{IDP_ID}", ELEMENT)
    assert result.login_token is None and result.status == 400, result


async def test_sign_in_goes_through_the_client_gateway(
    sign_in_server: SignInServer, tmp_path: Path
) -> None:
    """Production's shape: public_baseurl is the client gateway's address, and every step on
    the homeserver's side (the SSO redirect, the callback) goes through it. A stranger's
    subject is enough to see the flow reach Synapse's callback and its mapping."""
    provider, gateway_port, synapse_port = sign_in_server.provider, free_port(), free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    config = make_config(
        database_url="sqlite:unused.db",
        homeserver_url=f"http://127.0.0.1:{synapse_port}",
        gateway={"host": "127.0.0.1", "port": gateway_port},
        identity={"oidc": oidc_settings(provider)},
    )
    write_registration(config, tmp_path / "registration.yaml")
    synapse = SignInSynapse(
        tmp_path / "synapse",
        server_name="localhost",
        port=synapse_port,
        registration_files=[tmp_path / "registration.yaml"],
        relaxed_rate_limits=True,
        module=lockdown_module(config.model_dump(mode="json")),
        oidc=config.identity.oidc,
        public_baseurl=gateway_url + "/",
    )
    provider.redirect_uris.append(gateway_url + "/_synapse/client/oidc/callback")
    gateway: GatewayProcess | None = None
    try:
        synapse.start()
        gateway = GatewayProcess(config, tmp_path)
        gateway.start()
        provider.subject, provider.claims = uid("stranger"), {}
        async with new_browser(gateway_url) as browser:
            result = await single_sign_on(browser, gateway_url, f"oidc-{IDP_ID}", ELEMENT)
        assert result.hops[-1].url == gateway_url + "/_synapse/client/oidc/callback", result
        assert result.status == 400 and "registrations are disabled" in result.text, result
    finally:
        if gateway is not None:
            gateway.stop()
        synapse.stop()
