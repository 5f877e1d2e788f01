"""Running a step's blocking work in a thread that can be paused and stopped.

A worker thread cannot be killed, so the pipeline's heavy work cooperates:
it receives a :class:`StepControl` and calls ``control.check()`` between units
of work (a TTS line, a second of video).  ``check`` returns at once normally,
blocks while the run is paused (it awaits ``context.checkpoint()`` on the
event loop), and raises :class:`PipelineCancelled` once the step was cancelled
or timed out.  :func:`run_in_worker` turns a cancellation of the awaiting task
into that flag, waits (briefly) for the thread to stop, so ffmpeg and open
files are cleaned up before the step is reported as cancelled, then re-raises.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import PipelineCancelled

__all__ = ["StepControl", "run_in_worker"]

T = TypeVar("T")

# How long a cancelled step waits for its thread to notice and clean up.
_STOP_GRACE_SECONDS = 15.0


class StepControl:
    """What the worker thread may do: report progress, honour pause / cancel."""

    def __init__(self, context: Any, loop: asyncio.AbstractEventLoop):
        self._context = context
        self._loop = loop
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        """Whether the step was cancelled (or timed out)."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Ask the worker to stop at its next :meth:`check`."""
        self._cancelled.set()

    def progress(self, fraction: float, message: str = "") -> None:
        """Forward sub-progress to ``context.report_progress`` (thread-safe there)."""
        report = getattr(self._context, "report_progress", None)
        if report is not None:
            report(fraction, message)

    def check(self) -> None:
        """Return, wait while paused, or raise :class:`PipelineCancelled`."""
        if self._cancelled.is_set():
            raise PipelineCancelled()
        context = self._context
        # Fast path: the engine's context exposes the flags; no loop round trip needed.
        if getattr(context, "is_paused", True) is False and getattr(context, "is_cancelled", True) is False:
            return
        checkpoint = getattr(context, "checkpoint", None)
        if checkpoint is None or self._loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(checkpoint(), self._loop)
        while True:
            try:
                future.result(timeout=0.2)
                break
            except concurrent.futures.TimeoutError:
                if self._cancelled.is_set():
                    future.cancel()
                    raise PipelineCancelled() from None
            except (asyncio.CancelledError, concurrent.futures.CancelledError):
                self._cancelled.set()
                raise PipelineCancelled() from None
        if self._cancelled.is_set():
            raise PipelineCancelled()


async def run_in_worker(context: Any, work: Callable[[StepControl], T]) -> T:
    """Run ``work(control)`` in a thread and await its result without blocking the loop.

    Raises:
        whatever ``work`` raises; ``asyncio.CancelledError`` when the awaiting
        task is cancelled (after the worker has had a chance to stop).
    """
    loop = asyncio.get_running_loop()
    control = StepControl(context, loop)
    future = loop.run_in_executor(None, work, control)
    try:
        return await asyncio.shield(future)
    except PipelineCancelled:
        # The run was cancelled and the worker noticed first (via checkpoint).
        raise asyncio.CancelledError() from None
    except asyncio.CancelledError:
        control.cancel()
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(_STOP_GRACE_SECONDS):
                await future
        raise
