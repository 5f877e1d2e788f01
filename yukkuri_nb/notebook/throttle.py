"""Coalescing refreshes: many "something changed" marks, at most one redraw per interval.

A dashboard marks itself dirty on every event (possibly thousands a second)
and from click handlers on other threads; :class:`Coalescer` turns that into
at most one call of ``flush`` per ``interval`` seconds of the loop's time,
always on the loop's thread, and never drops the last change: a mark that
arrives while a flush is pending is covered by that flush, a mark that
arrives later schedules the next one.

Flushes run in an empty :class:`contextvars.Context`, not in the context of
whoever marked (often a step task created by the cell that started the run).
ipykernel keeps the request a message answers in a context variable and falls
back to the latest request when it is unset; so a redraw is sent as part of
the request being handled now, which is what front-ends and ``nbclient``
(which keeps only the messages of the cell it is executing) expect.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Callable

__all__ = ["Coalescer"]


class Coalescer:
    """Call ``flush()`` on ``loop`` at most once per ``interval`` seconds after :meth:`mark`.

    :meth:`mark` may be called from any thread.  :meth:`flush_now` flushes at
    once (on the loop's thread) and cancels the pending call.  After
    :meth:`close`, marks are ignored.  ``flushes`` counts the calls made.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, flush: Callable[[], None], interval: float) -> None:
        if interval <= 0:
            raise ValueError(f"Coalescer interval must be > 0 seconds, got {interval!r}")
        self.loop = loop
        self.interval = interval
        self.flushes = 0
        self._flush = flush
        self._handle: asyncio.TimerHandle | None = None
        self._last = float("-inf")
        self._closed = False
        self._lock = threading.Lock()  # guards _handle between mark() threads and the loop

    def mark(self) -> None:
        """Note that something changed; a flush will follow within ``interval`` seconds."""
        if self._handle is not None:
            # A flush is already pending and reads the state when it runs, so
            # it shows this change too (the change happened before this read,
            # and _run clears _handle before it flushes).  Every engine event
            # of a watched run comes here: this keeps it to one attribute read.
            return
        if self._closed or self.loop.is_closed():
            return
        if _running_loop() is self.loop:
            self._schedule()
        else:
            try:
                self.loop.call_soon_threadsafe(self._schedule)
            except RuntimeError:  # the loop closed in between
                pass

    def _schedule(self) -> None:
        with self._lock:
            if self._handle is not None or self._closed:
                return
            delay = max(0.0, self._last + self.interval - self.loop.time())
            self._handle = self.loop.call_later(delay, self._run, context=contextvars.Context())

    def _run(self) -> None:
        with self._lock:
            self._handle = None
        if self._closed:
            return
        self._last = self.loop.time()
        self.flushes += 1
        self._flush()

    def flush_now(self) -> None:
        """Flush at once (call on the loop's thread), cancelling a pending flush."""
        with self._lock:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
        self._last = self.loop.time() if not self.loop.is_closed() else self._last
        self.flushes += 1
        self._flush()

    def close(self) -> None:
        """Stop: cancel the pending flush and ignore later marks."""
        self._closed = True
        with self._lock:
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
