"""The metrics port: plain HTTP ``GET /metrics`` on the node's own loop, apart from its signed API,
on --metrics.host (loopback by default). A scrape reads in-memory engine state on the loop (a few
dicts); disks, SQLite and /proc are read, and the text encoded, in a thread. A timer that measures
the loop's lag is the only other cost."""

from __future__ import annotations

import asyncio
from typing import Optional

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ..errors import ConfigError
from .registry import NodeMetrics

LAG_PROBE_S = 0.5  # how often the loop's lag is measured
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsServer:
    def __init__(self, metrics: NodeMetrics, host: str, port: int) -> None:
        self.metrics = metrics
        self.host, self.port = host, port
        self._runner: Optional[web.AppRunner] = None
        self._lag = metrics.histogram("tensorage_event_loop_lag_seconds", buckets=LAG_BUCKETS)
        self._probe: Optional[asyncio.TimerHandle] = None

    async def handle(self, request: web.Request) -> web.Response:
        on_loop = self.metrics.collect_on_loop()
        body = await asyncio.to_thread(self.metrics.render, on_loop)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> int:
        """Listen; returns the bound port (``port`` 0: any free one)."""
        app = web.Application()
        app.router.add_get("/metrics", self.handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"cannot serve metrics on {self.host}:{self.port} ({exc.strerror}): pick another "
                              f"--metrics.port, or --metrics.disable") from None
        self._runner = runner
        self.port = next((a[1] for a in runner.addresses if isinstance(a, tuple)), self.port)
        loop = asyncio.get_running_loop()
        self._probe = loop.call_later(LAG_PROBE_S, self._measure, loop.time() + LAG_PROBE_S)
        return self.port

    def _measure(self, due: float) -> None:
        """How late this timer ran is how long something held the loop."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._lag.observe(max(0.0, now - due))
        self._probe = loop.call_later(LAG_PROBE_S, self._measure, now + LAG_PROBE_S)

    @property
    def listening(self) -> bool:
        return self._runner is not None

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
