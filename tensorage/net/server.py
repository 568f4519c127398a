"""aiohttp app factory and a runner that binds (possibly) an ephemeral port."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .auth import PeerDirectory, auth_middleware
from .messages import MAX_CONTROL_BODY


def make_app(self_hotkey: str, directory: PeerDirectory, netuid: int,
             max_body: int = MAX_CONTROL_BODY) -> web.Application:
    """An app with signed-request checks on every route; add routes to it."""
    return web.Application(middlewares=[auth_middleware(self_hotkey, directory, netuid)], client_max_size=max_body)


class PeerLogger(logging.LoggerAdapter):
    """aiohttp's server logger, except that a request its parser cannot read (a NUL in a header, a bad
    request line, two Content-Lengths) is the client's fault: one line at INFO, not an ERROR with a
    traceback that any stranger could repeat to fill the operator's log. The client still gets its 400."""

    def exception(self, msg: Any, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            text = " ".join(str(exc_info.message).split())[:200]
            self.info(f"{msg}: malformed request ({exc_info.code}: {text})", *args, **kwargs)
            return
        self.error(msg, *args, exc_info=exc_info, **kwargs)


@dataclass
class Served:
    runner: web.AppRunner
    host: str
    port: int

    async def close(self) -> None:
        await self.runner.cleanup()


# A connection that has not finished a request by then is closed (aiohttp starts this clock when the
# connection opens): a peer dribbling its headers a byte at a time holds a connection this long at most.
IDLE_CONNECTION_S = 75.0


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0,
                shutdown_timeout: float = 2.0, idle_s: float = IDLE_CONNECTION_S) -> Served:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout, keepalive_timeout=idle_s,
                           logger=PeerLogger(logging.getLogger("aiohttp.server"), {}))
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        from ..errors import ConfigError

        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}): pick another --axon.port") from None
    bound: Optional[int] = None
    for addr in runner.addresses:
        if isinstance(addr, tuple):
            bound = addr[1]
            break
    return Served(runner=runner, host=host, port=bound or port)
