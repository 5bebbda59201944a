"""A round-robin HTTP load balancer on loopback, in front of bridge replicas.

    client (Synapse's appservice pushes, the marketplace's API calls) -> this proxy
        -> the next replica in turn (a turn per kind of request: the homeserver's, the API's,
           the rest, so each kind reaches every replica); a replica that refuses the
           connection is skipped, and an idempotent request (GET, PUT: Synapse's transactions
           are PUTs, idempotent by txnId) cut mid-way is tried on the next one, as nginx's
           proxy_next_upstream does
        -> 502 when no replica answered

It counts what each replica answered, so a test can see that every replica served.
"""

from __future__ import annotations

from collections import Counter

from aiohttp import ClientConnectionError, ClientConnectorError, ClientSession, ClientTimeout, web

from bridge.ops.local_synapse import free_loopback_port

# Not forwarded: they describe one connection, not the request (RFC 9110 7.6.1), or aiohttp
# sets them for the body it sends.
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Transfer-Encoding",
        "TE",
        "Trailer",
        "Upgrade",
        "Proxy-Connection",
        "Host",
        "Content-Length",
        "Content-Encoding",
    )
)
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class RoundRobinProxy:
    def __init__(self, upstreams: list[int], port: int | None = None) -> None:
        self.upstreams = list(upstreams)  # the replicas' loopback ports
        self.port = port or free_loopback_port()
        # (upstream port, "homeserver" | "api" | "other") -> requests it answered
        self.served: Counter[tuple[int, str]] = Counter()
        self.failed = 0  # attempts a replica did not answer (the request went on, or 502)
        self._turns: Counter[str] = Counter()  # kind -> requests forwarded
        self._session: ClientSession | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def served_by(self, upstream: int, kind: str) -> int:
        return self.served[(upstream, kind)]

    async def start(self) -> None:
        # No total timeout: a transaction of 100 events may take a while to store.
        self._session = ClientSession(timeout=ClientTimeout(total=None, sock_connect=2))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        kind = _kind(request.path)
        error = "no replica"
        for _ in range(len(self.upstreams)):
            upstream = self.upstreams[self._turns[kind] % len(self.upstreams)]
            self._turns[kind] += 1
            url = f"http://127.0.0.1:{upstream}{request.path_qs}"
            try:
                async with self._session.request(
                    request.method, url, data=body, headers=headers, allow_redirects=False
                ) as answer:
                    payload = await answer.read()
                    self.served[(upstream, kind)] += 1
                    out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
                    return web.Response(status=answer.status, body=payload, headers=out)
            except ClientConnectorError as e:  # never reached it: any request may go on
                error = repr(e)
                self.failed += 1
            except ClientConnectionError as e:  # cut mid-way: only a repeatable one goes on
                error = repr(e)
                self.failed += 1
                if request.method not in IDEMPOTENT:
                    break
        return web.Response(status=502, text=f"no replica answered: {error}")


def _kind(path: str) -> str:
    if path.startswith("/_matrix/app/"):
        return "homeserver"
    if path.startswith("/api/"):
        return "api"
    return "other"
