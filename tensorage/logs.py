"""Headless output: rich logging, and a bus subscriber that logs engine events."""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

from .events import Event, EventBus, LogEvent

TRACE = 5
logging.addLevelName(TRACE, "TRACE")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def setup_logging(debug: bool = False, trace: bool = False, stream=None) -> None:
    level = TRACE if trace else logging.DEBUG if debug else logging.INFO
    console = Console(file=stream or sys.stderr, soft_wrap=True)
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=True, markup=False,
                          log_time_format="[%X]")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiohttp.access", "apscheduler.executors.default", "apscheduler.scheduler", "peewee", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not trace else logging.DEBUG)


def event_level(event: Event) -> int:
    if isinstance(event, LogEvent):
        return _LEVELS.get(event.severity, logging.INFO)
    return _LEVELS.get(str(event.level), logging.INFO)


def log_events(bus: EventBus, logger_name: str = "tensorage") -> None:
    """Every event becomes one log line (its summary), at the event's level."""
    logger = logging.getLogger(logger_name)

    def _log(event: Event) -> None:
        source = f"[{event.source}] " if event.source else ""
        logger.log(event_level(event), "%s%s", source, event.summary())

    bus.subscribe(_log)
