"""A small OpenID Connect provider for the tests: the marketplace behind "Sign in with ...".

    GET  /.well-known/openid-configuration  discovery (the authorization code flow, PKCE S256)
    GET  /jwks                              the public half of its RS256 signing key
    GET  /authorize                         no login page: approves `subject` at once and sends
                                            the browser back to the registered redirect_uri
                                            with a one-time code and the state (or
                                            error=access_denied when `subject` is None)
    POST /token                             the code (its client authenticated, redirect_uri
                                            and PKCE verifier checked, used once) for an
                                            access token and an id_token signed RS256 with
                                            the JWKS key, the nonce echoed
    GET  /userinfo                          the claims, for the access token

It serves plain http on loopback, in a thread with its own event loop, so one provider can
stand behind a module's Synapse while each test runs in its own loop. Tokens are signed with
joserfc (authlib's JOSE library, which Synapse's OIDC extra brings).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

TOKEN_SECONDS = 300


@dataclass
class Grant:
    """What /authorize approved, waiting for its code to be exchanged."""

    client_id: str
    redirect_uri: str
    claims: dict[str, Any]
    nonce: str | None
    code_challenge: str | None


@dataclass
class OidcProvider:
    client_id: str
    client_secret: str
    # Where /authorize may send people back: Synapse's
    # <public_baseurl>_synapse/client/oidc/callback.
    redirect_uris: list[str] = field(default_factory=list)
    # Who signs in at the next /authorize; None: the person refuses (or has no account).
    subject: str | None = None
    # Claims beside `sub` in the id_token and at /userinfo (name, email, ...).
    claims: dict[str, Any] = field(default_factory=dict)
    # "METHOD /path" of every request, in order.
    requests: list[str] = field(default_factory=list)
    # The subjects of the id_tokens issued, in order.
    issued: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = RSAKey.generate_key(
            2048, parameters={"kid": secrets.token_hex(8), "use": "sig", "alg": "RS256"}
        )
        self.port = 0
        self._codes: dict[str, Grant] = {}
        self._access_tokens: dict[str, dict[str, Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # --- running -------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on a free loopback port; returns once it does."""
        started = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except BaseException as e:  # reported to start()'s caller
                failure.append(e)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="oidc-provider", daemon=True)
        self._thread.start()
        if not started.wait(30):
            raise RuntimeError("the OpenID Connect provider did not start")
        if failure:
            raise failure[0]

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    async def _listen(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_get("/userinfo", self._userinfo)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    # --- endpoints -----------------------------------------------------------------------------

    def _log(self, request: web.Request) -> None:
        self.requests.append(f"{request.method} {request.path}")

    async def _discovery(self, request: web.Request) -> web.Response:
        self._log(request)
        base = self.issuer
        return web.json_response(
            {
                "issuer": base,
                "authorization_endpoint": base + "authorize",
                "token_endpoint": base + "token",
                "userinfo_endpoint": base + "userinfo",
                "jwks_uri": base + "jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "profile"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        self._log(request)
        return web.json_response(KeySet([self.key]).as_dict(private=False))

    async def _authorize(self, request: web.Request) -> web.Response:
        self._log(request)
        query = request.query
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or redirect_uri not in self.redirect_uris:
            # Never redirect to an address nobody registered: an error page instead.
            return web.Response(status=400, text="unknown client or redirect_uri")
        back: dict[str, str] = {}
        if "state" in query:
            back["state"] = query["state"]
        if query.get("response_type") != "code":
            back["error"] = "unsupported_response_type"
        elif "openid" not in query.get("scope", "").split():
            back["error"] = "invalid_scope"
        elif query.get("code_challenge") and query.get("code_challenge_method") != "S256":
            back["error"] = "invalid_request"
        elif self.subject is None:
            back["error"] = "access_denied"
        else:
            code = secrets.token_urlsafe(24)
            self._codes[code] = Grant(
                client_id=self.client_id,
                redirect_uri=redirect_uri,
                claims={**self.claims, "sub": self.subject},
                nonce=query.get("nonce"),
                code_challenge=query.get("code_challenge"),
            )
            back["code"] = code
        raise web.HTTPFound(f"{redirect_uri}?{urlencode(back)}")

    async def _token(self, request: web.Request) -> web.Response:
        self._log(request)
        form = await request.post()
        if not self._client_authenticated(request, form):
            return _oauth_error(401, "invalid_client")
        if form.get("grant_type") != "authorization_code":
            return _oauth_error(400, "unsupported_grant_type")
        grant = self._codes.pop(str(form.get("code", "")), None)  # used once, whatever follows
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return _oauth_error(400, "invalid_grant")
        if grant.code_challenge is not None:
            verifier = str(form.get("code_verifier", ""))
            digest = hashlib.sha256(verifier.encode()).digest()
            if _b64url(digest) != grant.code_challenge:
                return _oauth_error(400, "invalid_grant")
        access_token = secrets.token_urlsafe(32)
        self._access_tokens[access_token] = grant.claims
        now = int(time.time())
        claims = {
            **grant.claims,
            "iss": self.issuer,
            "aud": grant.client_id,
            "iat": now,
            "auth_time": now,
            "exp": now + TOKEN_SECONDS,
            # The left half of the access token's SHA-256 (OpenID Connect Core 3.1.3.6).
            "at_hash": _b64url(hashlib.sha256(access_token.encode()).digest()[:16]),
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        id_token = jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)
        self.issued.append(grant.claims["sub"])
        return web.json_response(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": TOKEN_SECONDS,
                "scope": "openid profile",
                "id_token": id_token,
            },
            headers={"Cache-Control": "no-store"},
        )

    async def _userinfo(self, request: web.Request) -> web.Response:
        self._log(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        claims = self._access_tokens.get(token) if scheme.lower() == "bearer" else None
        if claims is None:
            return _oauth_error(401, "invalid_token")
        return web.json_response(claims)

    def _client_authenticated(self, request: web.Request, form: Any) -> bool:
        """client_secret_basic (RFC 6749 2.3.1: each part form-urlencoded), or
        client_secret_post."""
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(encoded, validate=True).decode()
            except ValueError:
                return False
            client_id, _, secret = decoded.partition(":")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        else:
            client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        return secrets.compare_digest(
            client_id.encode(), self.client_id.encode()
        ) and secrets.compare_digest(secret.encode(), self.client_secret.encode())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _oauth_error(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)
