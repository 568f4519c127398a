"""Headless output: logging set up for a person (rich) or a machine (JSON lines), optionally also to a
rotating file, and a bus subscriber that logs engine events."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, TextIO

from pythonjsonlogger.json import JsonFormatter
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from .errors import ConfigError
from .events import ChallengeResult, ChallengeServed, ErrorEvent, Event, EventBus, LogEvent

if TYPE_CHECKING:
    from .config import LoggingSettings

TRACE = 5
logging.addLevelName(TRACE, "TRACE")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def json_formatter(role: str = "", node: str = "") -> logging.Formatter:
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, role and node, and
    ``exception`` (the traceback text) when there is one."""
    return JsonFormatter("%(levelname)s %(name)s %(message)s", timestamp="time",
                         rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
                         static_fields={"role": role, "node": node}, json_ensure_ascii=False)


def json_line(level: int, message: str, role: str = "", node: str = "", logger: str = "tensorage") -> str:
    """One log line in the JSON format, for what a command says before or without logging set up
    (a startup refusal, a notice), so a --logging.format json run's stderr is JSON throughout."""
    record = logging.LogRecord(logger, level, "(cli)", 0, message, None, None)
    return json_formatter(role, node).format(record)


class _RichLines(RichHandler):
    """A rich handler that prints a record's traceback text (an engine job's, carried as ``exc_text``)
    whole under its line, not folded into the message column: at the 80 columns of a headless log
    file a folded traceback splits paths and names, and an operator's grep for them finds nothing."""

    def emit(self, record: logging.LogRecord) -> None:
        text = record.exc_text
        if not text or record.exc_info:
            super().emit(record)
            return
        record.exc_text = None  # the table row without it; other handlers see the record as it was
        try:
            super().emit(record)
        finally:
            record.exc_text = text
        try:
            self.console.print(Text(text), soft_wrap=True, highlight=False)
        except Exception:
            self.handleError(record)


def setup_logging(debug: bool = False, trace: bool = False, stream: Optional[TextIO] = None, fmt: str = "rich",
                  file: Optional[str] = None, max_mb: float = 50.0, backups: int = 5, role: str = "",
                  node: str = "") -> None:
    """Log to ``stream`` (stderr) as rich text or JSON lines (``fmt``), and with ``file`` also to a file
    that rotates at ``max_mb`` keeping ``backups`` old ones (JSON when ``fmt`` is json, plain text
    otherwise: a file is read by tools and ``less``, not a terminal)."""
    level = TRACE if trace else logging.DEBUG if debug else logging.INFO
    out = stream or sys.stderr
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(out)
        handler.setFormatter(json_formatter(role, node))
    else:
        handler = _RichLines(console=Console(file=out, soft_wrap=True), show_path=False, rich_tracebacks=True,
                             markup=False, log_time_format="[%X]")
    handlers = [handler]
    if file:
        handlers.append(rotating_file(file, max_mb, backups, json_formatter(role, node) if fmt == "json"
                                      else logging.Formatter(TEXT_FORMAT)))
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, logging.FileHandler):
            old.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    for noisy in ("aiohttp.access", "apscheduler.executors.default", "apscheduler.scheduler", "peewee", "asyncio",
                  "tzlocal"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not trace else logging.DEBUG)


def setup_logging_for(settings: "LoggingSettings", role: str = "", node: str = "") -> None:
    """:func:`setup_logging` from the ``--logging.*`` flags."""
    setup_logging(settings.debug, settings.trace, fmt=settings.format, file=settings.file, max_mb=settings.max_mb,
                  backups=settings.backups, role=role, node=node)


def rotating_file(path: str, max_mb: float, backups: int, formatter: logging.Formatter) -> logging.Handler:
    """A RotatingFileHandler on ``path`` (its directory made); a path that cannot be written is refused
    with what to do, before the node starts."""
    target = Path(path).expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(target, maxBytes=max(1, int(max_mb * 1024 * 1024)),
                                                       backupCount=backups, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--logging.file {path}: cannot write it ({exc.strerror}): pick a writable path") from None
    handler.setFormatter(formatter)
    return handler


def event_level(event: Event) -> int:
    if isinstance(event, LogEvent):
        return _LEVELS.get(event.severity, logging.INFO)
    return _LEVELS.get(str(event.level), logging.INFO)


FAILURES_LOGGED_PER_WINDOW = 5


def log_events(bus: EventBus, logger_name: str = "tensorage") -> None:
    """Every event becomes one log line (its summary), at the event's level, except a window's
    per-miner verdicts: passes are debug lines and at most a few failures a window are shown
    (the window's own line, ``WindowJudged``, says how many passed). A validator checking a
    thousand miners writes a handful of lines a window, not a thousand, and does not spend its
    event loop rendering them. A miner's window is one line too: its lookup (the same answer sent
    to the other validators is debug). A job's crash is one record with its traceback."""
    logger = logging.getLogger(logger_name)
    failures: dict[str, tuple[int, int]] = {}  # source -> (window, failures logged)

    def _log(event: Event) -> None:
        source = f"[{event.source}] " if event.source else ""
        level = event_level(event)
        if isinstance(event, ChallengeServed) and event.cached:
            level = logging.DEBUG  # a miner's line a window is its lookup; the same answer to the others is debug
        elif isinstance(event, ChallengeResult):
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
        if not logger.isEnabledFor(level):
            return
        if isinstance(event, ErrorEvent) and event.traceback:
            # the traceback as the record's exception text: one record, shown once by every formatter
            # (rich and plain text append it, JSON puts it in "exception")
            record = logger.makeRecord(logger.name, level, "(event)", 0, "%s%s", (source, event.summary()), None)
            record.exc_text = event.traceback.rstrip("\n")
            logger.handle(record)
            return
        logger.log(level, "%s%s", source, event.summary())

    bus.subscribe(_log)
