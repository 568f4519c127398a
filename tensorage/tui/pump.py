"""Bus subscriber -> Textual messages, with coalescing and backpressure (as Toolong does).

``EventBus.publish`` calls subscribers on the publisher's thread: the app's event loop for
in-process engines and the devnet relay, or a worker thread. ``post_message`` is
thread-safe. At most one :class:`EngineEvents` message is in flight: events that arrive
before the app takes it join its batch, so a burst of 10,000 events costs one message and
one redraw. A publisher on another thread additionally stalls (briefly) while the app's
queue is long, so it cannot outrun the UI.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from textual.app import App

from ..events import Event, EventBus
from .messages import EngineEvents

HIGH_WATER = 200  # app messages queued before a foreign-thread publisher stalls
MAX_STALL_S = 1.0


class EventPump:
    def __init__(self, app: App, high_water: int = HIGH_WATER) -> None:
        self.app = app
        self.high_water = high_water
        self._lock = threading.Lock()
        self._pending: Optional[EngineEvents] = None
        self._unsubscribe: Optional[Callable[[], None]] = None
        self._loop_thread = threading.get_ident()
        self.posted = 0  # messages posted (for tests and the benchmark)
        self.received = 0
        self.stalls = 0

    def attach(self, bus: EventBus, replay: bool = True) -> None:
        self._loop_thread = threading.get_ident()
        self._unsubscribe = bus.subscribe(self, replay=replay)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.received += 1
            if self._pending is not None:
                self._pending.events.append(event)
                return
            message = self._pending = EngineEvents([event])
        self.posted += 1
        self.app.post_message(message)
        if threading.get_ident() != self._loop_thread:
            self._stall()

    def _stall(self) -> None:
        deadline = time.monotonic() + MAX_STALL_S
        while self.app.message_queue_size > self.high_water and time.monotonic() < deadline:
            self.stalls += 1
            time.sleep(0.01)

    def take(self, message: EngineEvents) -> list[Event]:
        """The batch of ``message``; later events start a new message."""
        with self._lock:
            if self._pending is message:
                self._pending = None
            return message.events
