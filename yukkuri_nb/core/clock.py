"""Clocks: where the engine reads time, so tests and simulations can fake it.

The engine reads *monotonic* seconds from ``clock.now()`` for every event and
duration, and wall-clock datetimes from ``clock.wall()`` for ``started_at``
style fields.  Timeouts and retry delays are asyncio timers, i.e. they follow
the running loop's ``time()``; a clock therefore has to agree with the loop it
runs under.  :class:`RealClock` agrees with every standard asyncio loop (whose
``time()`` is :func:`time.monotonic`).

:class:`VirtualClock` makes a loop whose time only moves when every task is
waiting on a timer: it then jumps straight to the next timer.  The real
scheduler, timeouts and ``asyncio.sleep`` all run unchanged on virtual time, so
a what-if simulation of an hour-long batch takes milliseconds, and a test of a
300 s timeout costs no wall time.  Work running in threads still takes real
time; while a thread is busy and no timer is due, the loop blocks for real.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Protocol, TypeVar, runtime_checkable

__all__ = ["Clock", "RealClock", "VirtualClock"]

T = TypeVar("T")


@runtime_checkable
class Clock(Protocol):
    """What the engine needs from a clock."""

    def now(self) -> float:
        """Monotonic seconds (same scale as the running loop's ``time()``)."""

    def wall(self) -> datetime:
        """The current wall-clock time, timezone-aware."""


class RealClock:
    """The machine's clocks: :func:`time.monotonic` and :func:`datetime.now`."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> datetime:
        return datetime.now(_local_timezone())

    def check_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Raise if ``loop`` does not keep :func:`time.monotonic` time."""
        if abs(loop.time() - time.monotonic()) > 1.0:
            raise RuntimeError(
                "the running event loop's time() is not time.monotonic(); "
                "pass WorkflowEngine(clock=VirtualClock()) and run with clock.run(...) for virtual time"
            )

    def __repr__(self) -> str:
        return "RealClock()"


# The local UTC offset, re-read at most once a second: ``astimezone()`` asks
# the C library every call, which costs more than the rest of wall() and
# the engine reads the wall clock twice per step.  A DST switch shows up
# within a second.
_tz_cache: list[Any] = [timezone.utc, float("-inf")]


def _local_timezone() -> Any:
    now = time.monotonic()
    if now >= _tz_cache[1]:
        _tz_cache[0] = datetime.now(timezone.utc).astimezone().tzinfo
        _tz_cache[1] = now + 1.0
    return _tz_cache[0]


class VirtualClock:
    """A clock whose time jumps to the next timer when the loop is idle.

    Run coroutines with :meth:`run` (like :func:`asyncio.run`)::

        clock = VirtualClock()
        engine = WorkflowEngine(clock=clock)
        result = clock.run(engine.execute_workflow("wf", "p1", {}))
        clock.now()   # virtual seconds the run took
    """

    def __init__(self, start: float = 0.0, *, epoch: datetime | None = None) -> None:
        self._now = float(start)
        self._start = float(start)
        self.epoch = epoch or datetime(2026, 1, 1, tzinfo=timezone.utc)

    def now(self) -> float:
        return self._now

    def wall(self) -> datetime:
        return self.epoch + timedelta(seconds=self._now - self._start)

    def advance(self, seconds: float) -> None:
        """Move time forward by hand (for tests driving a loop step by step)."""
        if seconds < 0:
            raise ValueError(f"VirtualClock.advance() needs seconds >= 0, got {seconds!r}")
        self._now += seconds

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make ``loop`` keep this clock's time (a selector-based loop, not yet running)."""
        selector = getattr(loop, "_selector", None)
        if selector is None:
            raise TypeError(f"VirtualClock needs a selector event loop, got {type(loop).__name__}")
        real_select = selector.select

        def select(timeout: float | None = None) -> Any:
            # None means "no timer pending": only I/O or a thread can wake the
            # loop, so block for real.  Otherwise skip the wait in virtual time.
            if timeout is None:
                return real_select(None)
            events = real_select(0)
            if not events and timeout > 0:
                self._now += timeout
            return events

        selector.select = select  # type: ignore[method-assign]
        loop.time = self.now  # type: ignore[method-assign]

    def check_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop.time() != self._now:
            raise RuntimeError(
                "this engine uses a VirtualClock but the running loop keeps real time; "
                "run the coroutine with clock.run(coro) instead of asyncio.run(coro)"
            )

    def run(self, main: Awaitable[T]) -> T:
        """Run ``main`` to completion on a fresh loop driven by this clock."""
        loop = asyncio.SelectorEventLoop()
        self.install(loop)
        try:
            return loop.run_until_complete(main)
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now:.3f})"
