"""Headless output: rich logging, and a bus subscriber that logs engine events."""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler

from .events import ChallengeResult, Event, EventBus, LogEvent

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


FAILURES_LOGGED_PER_WINDOW = 5


def log_events(bus: EventBus, logger_name: str = "tensorage") -> None:
    """Every event becomes one log line (its summary), at the event's level, except a window's
    per-miner verdicts: passes are debug lines and at most a few failures a window are shown
    (the window's own line, its proof_round job, says how many passed). A validator checking a
    thousand miners writes a handful of lines a window, not a thousand, and does not spend its
    event loop rendering them."""
    logger = logging.getLogger(logger_name)
    failures: dict[str, tuple[int, int]] = {}  # source -> (window, failures logged)

    def _log(event: Event) -> None:
        source = f"[{event.source}] " if event.source else ""
        level = event_level(event)
        if isinstance(event, ChallengeResult):
            if event.result == "pass":
                level = logging.DEBUG
            else:
                window, shown = failures.get(event.source, (event.window, 0))
                shown = shown + 1 if window == event.window else 1
                failures[event.source] = (event.window, shown)
                if shown == FAILURES_LOGGED_PER_WINDOW + 1:
                    logger.warning("%smore failures in window %d: --logging.debug shows them all", source,
                                   event.window)
                if shown > FAILURES_LOGGED_PER_WINDOW:
                    level = logging.DEBUG
        if logger.isEnabledFor(level):
            logger.log(level, "%s%s", source, event.summary())

    bus.subscribe(_log)
