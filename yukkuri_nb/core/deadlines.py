"""Step timeouts: every running step's deadline behind one loop timer.

``asyncio.timeout`` arms and cancels one loop timer per step (a
``TimerHandle``, a context copy, a heap push), which cost more than the rest
of starting a no-op step.  Here :class:`Deadlines` (one per engine) keeps the
deadlines of all running steps in a heap and arms a single loop timer for the
earliest.  A step that ends only marks its entry (``task = None``); marked
entries are dropped when they reach the top of the heap or when the timer
fires, so the timer may fire for a deadline that is gone, which re-arms it
and changes nothing else.

Semantics are those of ``asyncio.timeout`` (CPython ``asyncio/timeouts.py``):
at the deadline the step's task is cancelled; leaving the
:class:`StepDeadline` block with that ``CancelledError`` raises
``TimeoutError`` (unless someone else also cancelled the task: then the
cancellation goes on), and :meth:`StepDeadline.expired` tells the engine the
deadline was its own.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

__all__ = ["Deadlines", "StepDeadline"]


class Deadlines:
    """The deadlines of one engine's running steps, and the one timer armed for the earliest.

    Invariant: while any entry is unmarked, a timer is armed on ``_loop`` at
    ``_at`` <= the earliest unmarked deadline.  All calls happen on the
    loop's thread.
    """

    __slots__ = ("_heap", "_seq", "_timer", "_at", "_loop")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, StepDeadline]] = []
        self._seq = itertools.count()  # ties broken by arrival: entries never compare
        self._timer: asyncio.TimerHandle | None = None
        self._at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None

    def _add(self, deadline: "StepDeadline") -> None:
        heap = self._heap
        loop = deadline.loop
        timer = self._timer
        if timer is not None and self._loop is not loop:
            # Left over from a run on another (closed) loop: forget it.
            timer.cancel()
            timer = None
            del heap[:]
        heapq.heappush(heap, (deadline.when, next(self._seq), deadline))
        if timer is None or deadline.when < self._at:
            if timer is not None:
                timer.cancel()
            self._at = deadline.when
            self._loop = loop
            self._timer = loop.call_at(deadline.when, self._due, loop)

    def _drop_done(self) -> None:
        heap = self._heap
        while heap and heap[0][2].task is None:
            heapq.heappop(heap)
        # An empty heap keeps its timer until no step runs (see drop_idle):
        # steps that end without awaiting would otherwise arm and cancel a
        # loop timer each.

    def drop_idle(self) -> None:
        """No step is running: every deadline is gone, so the loop timer goes too.

        Only running steps may leave a timer behind, so an idle loop (a
        paused run, a VirtualClock between runs) never wakes for a deadline
        of a step that already ended.
        """
        if self._timer is not None and all(entry[2].task is None for entry in self._heap):
            self._timer.cancel()
            self._timer = None
            self._heap.clear()

    def _due(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer fired: cancel every step whose deadline has come, re-arm for the next."""
        self._timer = None
        due = self._at
        heap = self._heap
        while heap and (heap[0][2].task is None or heap[0][0] <= due):
            deadline = heapq.heappop(heap)[2]
            task = deadline.task
            if task is not None and deadline.loop is loop:
                deadline._expired = True
                task.cancel()
        if heap:
            self._at = heap[0][0]
            self._timer = loop.call_at(heap[0][0], self._due, loop)


class StepDeadline:
    """One step's timeout: ``with StepDeadline(deadlines, loop, delay, task): ...`` inside ``task``
    (the running task) cancels it at ``loop.time() + delay``, taken when the deadline is made."""

    __slots__ = ("owner", "loop", "when", "task", "cancelling", "_expired", "_owner_task")

    def __init__(self, owner: Deadlines, loop: asyncio.AbstractEventLoop, delay: float, task: asyncio.Task | None) -> None:
        self.owner = owner
        self.loop = loop
        self.when = loop.time() + delay
        self._owner_task = task
        self.task: asyncio.Task | None = None
        self.cancelling = 0
        self._expired = False

    def expired(self) -> bool:
        """Whether this deadline cancelled the task."""
        return self._expired

    def __enter__(self) -> "StepDeadline":
        task = self._owner_task
        if task is None:
            raise RuntimeError("a step deadline must be entered inside a task")
        self.task = task
        self.cancelling = task.cancelling()
        self.owner._add(self)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        task, self.task = self.task, None
        self.owner._drop_done()
        if self._expired and task is not None:
            if task.uncancel() <= self.cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc
