"""Choosing and starting ready steps: the engine's dispatcher.

:class:`Dispatcher` is a part of :class:`~yukkuri_nb.core.engine.WorkflowEngine`
(a mixin: the engine's state, one object).  The policy itself lives in
:mod:`~yukkuri_nb.core.scheduler`; this module applies it to the engine:

* ``_ready`` (:class:`~yukkuri_nb.core.scheduler.ReadyQueue`) holds the ready
  steps of every run, keyed ``(run.order, -urgency, -rank, index, run.seq)``;
  :func:`~yukkuri_nb.core.plan.simulate_schedule` builds the same keys.
  Entries name their run by ``seq`` (``_by_seq`` maps it back), not by the
  run object: a tuple of numbers only is untracked by the cyclic GC, so
  the 100,000 entries of a 100,000-step run queued at once do not count
  towards (and set off) a full collection of the heap, ~0.3 s there.
* ``_running`` counts started steps (all runs) against ``_max_concurrent``;
  ``_free_slots`` / ``_next_slot`` hand out small slot numbers (the lanes of
  the Gantt charts).
* ``_dispatch`` runs at most once per loop iteration (``_dispatch_pending``),
  so steps ending in the same iteration are decided together, as the
  planner does for steps ending at the same virtual time.
* ``run.pool_ends`` maps each running step holding pool units to its
  estimated end, for backfilling (``_claim_horizon`` / ``_fits_before``).

Invariant: ``_dispatch`` picks under ``_lock``, which the control calls
(pause / cancel from any thread) also take, so a paused or cancelled run
never gets a new step once the call returned.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import TYPE_CHECKING

from .definitions import StepStatus
from .events import EventKind
from .scheduler import claim_horizon, step_key
from .state import WorkflowExecutionState

if TYPE_CHECKING:  # pragma: no cover
    from .run import _Run

__all__ = ["Dispatcher"]

# Bound once: an Enum class attribute costs ~50 ns a read, and these are
# read for every step.
_READY, _RUNNING = StepStatus.READY, StepStatus.RUNNING
_QUEUED = EventKind.STEP_QUEUED


class Dispatcher:
    """The engine's ready queue handling (see the module docstring)."""

    def _request_dispatch(self) -> None:
        loop = self._loop
        if loop is None or self._dispatch_pending:
            return
        self._dispatch_pending = True
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(self._dispatch)
        else:
            loop.call_soon_threadsafe(self._dispatch)

    def _units_released(self) -> None:
        """The resource manager's listener: units were given back or a capacity changed."""
        # A step task giving back its own units decides what starts next
        # itself, right after (stepping.py): a deferred pass would find
        # nothing more to do.
        if not self._releasing:
            self._request_dispatch()

    def _queue(self, run: _Run, i: int) -> None:
        step = run.graph.steps[i]
        run.status[i] = _READY
        # The key of scheduler.py's policy; plan.simulate_schedule builds the same.
        if run.schedule == "priority":  # the default, inline
            entry = (run.order, -run.graph.urgency[i], -run.graph.rank[i], i, run.seq)
        else:
            k1, k2 = step_key(run.schedule, run.graph.urgency[i], run.graph.rank[i], self.clock.now())
            entry = (run.order, k1, k2, i, run.seq)
        if run.paused:
            run.parked.append(entry)
        else:
            self._ready.push(entry, run.graph.pools[i])
        self._emit(run, _QUEUED, step.name, (), WorkflowExecutionState._queued)  # compact data: events.COMPACT_FIELDS

    def _dispatch(self, keep: asyncio.Task | None = None) -> tuple[_Run, int, int, int] | None:
        """Start the ready steps that may start now, best first.

        With ``keep`` (the running step task, whose step just ended), a
        single step to start that may run in it (same loop, an equal
        context: see stepping.py, "continuing tasks") is begun in ``keep``
        instead of a task of its own, and returned as ``(run, index, slot,
        attempt)``.
        """
        self._dispatch_pending = False
        ready = self._ready
        if not ready:
            return None
        rm = self.resource_manager
        started: list[tuple[_Run, int, int]] = []
        deferred: list[tuple] = []
        with self._lock:
            slots = self._max_concurrent - self._running
            if slots <= 0:
                return None
            by_seq = self._by_seq
            for entry in ready.pop_startable(slots, rm.try_acquire_all, self._claim_horizon, self._fits_before, self._claims):
                run = by_seq[entry[4]]
                i = entry[3]
                if run.paused or run.cancelled:
                    # Paused or cancelled between queueing and now (another
                    # thread): give the units back and leave it to _do_pause /
                    # _do_cancel.
                    if run.graph.pools[i]:
                        rm.release_all(run.graph.pools[i])
                    deferred.append(entry)
                    continue
                slot = self._free_slots.pop() if self._free_slots else self._take_new_slot()
                self._running += 1
                run.status[i] = _RUNNING
                if run.graph.pools[i]:
                    est = run.graph.steps[i].estimated_duration
                    run.pool_ends[i] = self.clock.now() + est if est > 0 else None
                started.append((run, i, slot))
        for entry in deferred:
            run = by_seq[entry[4]]
            if run.cancelled:
                self._finish_step_cancelled(run, entry[3])
            else:
                run.parked.append(entry)
        if keep is not None and len(started) == 1:
            # One step to start (a chain's next): it goes on in the task
            # whose step just ended.  Not so when several start: the one
            # kept would run ahead of the others, split their loop
            # iteration in two and take more iterations in all.
            run, i, slot = started[0]
            if run.loop is self._loop and contextvars.copy_context() == run.context:
                return (run, i, slot, self._begin(run, i, slot, keep))
        for run, i, slot in started:
            self._start(run, i, slot)
        return None

    def _claim_horizon(self, pools: frozenset[str]) -> float:
        """Estimated time at which a unit of each of ``pools`` is free (``-inf``: unknown).

        :func:`~yukkuri_nb.core.scheduler.claim_horizon` over the running
        steps that hold pool units (an overrunning one counts as ending
        now).  Called only when a ready step is blocked and a held-back
        one might backfill, over at most ``max_concurrent_steps`` steps.
        """
        rm = self.resource_manager
        holders = [(run.graph.pools[i], end) for run in self._runs.values() for i, end in run.pool_ends.items()]
        return claim_horizon(self.clock.now(), pools, lambda p: rm.in_use(p) - rm.capacity(p) + 1, holders)

    def _fits_before(self, entry: tuple, until: float) -> bool:
        """Whether the step of ready ``entry``, started now, is estimated to end by ``until``."""
        est = self._by_seq[entry[4]].graph.steps[entry[3]].estimated_duration
        return est > 0 and self.clock.now() + est <= until

    def _take_new_slot(self) -> int:
        slot = self._next_slot
        self._next_slot += 1
        return slot

    def _claims(self, entry: tuple) -> bool:
        """Whether the blocked ready ``entry`` claims its pools (its run's schedule says)."""
        return self._by_seq[entry[4]].claims
