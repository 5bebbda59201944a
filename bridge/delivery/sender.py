"""One webhook attempt: a row's body POSTed to the marketplace, signed afresh each time."""

from __future__ import annotations

from aiohttp import ClientError, ClientResponse, ClientSession, ClientTimeout
from yarl import URL

from bridge.runtime.clock import Clock

from .outbox import OutboxRow
from .signing import Signer

# An answer's body is read (and ignored) up to this size, so that its connection goes back
# to the pool for the next webhook (aiohttp closes one whose body was left unread).
MAX_BODY_READ = 64 * 1024


class WebhookSender:
    def __init__(
        self,
        session: ClientSession,
        url: str,
        timeout_seconds: float,
        signer: Signer,
        clock: Clock,
    ) -> None:
        self._session = session
        self._url = URL(url)  # parsed once, not on every POST
        self._timeout = ClientTimeout(total=timeout_seconds)
        self._signer = signer
        self._clock = clock

    async def send(self, row: OutboxRow) -> str | None:
        """None when the receiver answered 2xx; else what went wrong. Redirects are not
        followed: the receiver's address is configuration, not something it may move."""
        body = row.body.encode()
        # A fresh timestamp on every attempt: receivers reject old ones to stop replays.
        headers = self._signer.headers(row.id, body, self._clock.now_ms() // 1000)
        try:
            async with self._session.post(
                self._url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                await _read_to_end(response)
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (ClientError, TimeoutError, OSError) as e:
            return f"{type(e).__name__}: {e}"


async def _read_to_end(response: ClientResponse) -> None:
    """Consume the answer's body, at most MAX_BODY_READ bytes of it."""
    left = MAX_BODY_READ
    while left > 0 and not response.content.at_eof():
        chunk = await response.content.read(left)
        if not chunk:
            return
        left -= len(chunk)
