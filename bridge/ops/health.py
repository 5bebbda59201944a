"""Liveness, readiness and metrics: ``/health``, ``/ready`` and ``/metrics``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Check = Callable[[], Awaitable[None]]
CHECK_TIMEOUT = 3.0


class HealthRoutes:
    def __init__(
        self, checks: dict[str, Check], registry: CollectorRegistry, log: logging.Logger
    ) -> None:
        self._checks = checks
        self._registry = registry
        self._log = log

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)

    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _ready(self, _: web.Request) -> web.Response:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(name) for name in names))
        checks = dict(zip(names, results, strict=True))
        ready = all(result == "ok" for result in results)
        return web.json_response(
            {"status": "ready" if ready else "not_ready", "checks": checks},
            status=200 if ready else 503,
        )

    async def _run(self, name: str) -> str:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                await self._checks[name]()
        except Exception as e:
            self._log.warning("Readiness check %s failed: %s", name, e)
            return "unavailable"
        return "ok"

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )
