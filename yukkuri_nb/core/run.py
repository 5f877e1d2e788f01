"""The bookkeeping of one run: per-step status, data flow, observers.

A ``_Run`` is private to the engine.  Its fields (all indexed by the step's
position in ``graph.steps``):

``status[i]``
    the step's :class:`StepStatus`; only the engine changes it, on the loop
    thread, always together with emitting the matching event.
``missing[i]``
    dependencies of ``i`` that have not completed; ``i`` is queued when it
    reaches 0.
``acc[i]``
    after ``i`` completed: the data it passes down, ``key -> (position,
    value)`` where ``position`` is the topological position of the step that
    produced the value.  Built from the parents' ``acc`` plus ``i``'s own
    outputs, so the cost of a step is the size of the data, never the number
    of ancestors; a parent's entry is dropped once all its children took it.
``attempts[i]``
    attempts started so far.
``remaining``
    steps not yet in a terminal status; the run finishes when it reaches 0.

Control flags (``paused``, ``cancelled``) may be set from any thread under
the engine's lock; everything else happens on the run's loop thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .definitions import StepStatus
from .events import Event, EventKind, new_event
from .results import StepResult

if TYPE_CHECKING:  # pragma: no cover
    from .engine import WorkflowEngine
    from .graph import WorkflowGraph
    from .state import WorkflowExecutionState

_HISTORY_STRIDE = 5

_CALLBACK_KINDS = frozenset(
    {
        EventKind.RUN_STARTED,
        EventKind.RUN_FINISHED,
        EventKind.STEP_STARTED,
        EventKind.STEP_RETRYING,
        EventKind.STEP_COMPLETED,
        EventKind.STEP_FAILED,
        EventKind.STEP_SKIPPED,
        EventKind.STEP_CANCELLED,
        EventKind.PAUSED,
        EventKind.RESUMED,
        EventKind.CANCEL_REQUESTED,
    }
)


class _Run:
    __slots__ = (
        "engine", "graph", "project_id", "workflow_name", "run_id", "seq", "initial_input",
        "loop", "loop_thread", "status", "missing", "acc", "merged", "acc_readers", "attempts",
        "results", "outputs_view", "tasks", "retry_handles", "parked", "remaining",
        "paused", "cancelled", "cancel_reason", "fail_fast", "failed_fast", "done", "state",
        "history", "callback", "callback_tasks", "resume_waiters", "t_start", "wall0", "resumed_steps",
        "pool_lists", "fresh", "attempt_log", "record_history", "order", "pool_ends", "schedule", "claims",
        "context",
    )

    def __init__(
        self,
        engine: "WorkflowEngine",
        graph: "WorkflowGraph",
        project_id: str,
        run_id: str,
        seq: int,
        initial_input: Mapping[str, Any],
        state: "WorkflowExecutionState",
        callback: Callable[..., Any] | None,
        fail_fast: bool,
    ) -> None:
        n = len(graph)
        self.engine = engine
        self.graph = graph
        self.project_id = project_id
        self.workflow_name = graph.name
        self.run_id = run_id
        self.seq = seq
        self.initial_input = initial_input
        self.loop: asyncio.AbstractEventLoop | None = None
        #: the context execute_workflow was called in: every step runs in a copy of it
        self.context = contextvars.copy_context()
        self.loop_thread = 0
        self.status = [StepStatus.PENDING] * n
        self.missing = [len(p) for p in graph.parents]
        self.acc: list[dict | None] = [None] * n
        self.merged: dict[int, dict] = {}
        self.acc_readers = [len(c) for c in graph.children]
        self.attempts = [0] * n
        self.results: dict[int, StepResult] = {}
        self.outputs_view: dict[str, dict[str, Any]] = {}
        self.tasks: dict[int, asyncio.Task] = {}
        self.retry_handles: dict[int, asyncio.TimerHandle] = {}
        self.parked: list[tuple] = []
        self.remaining = n
        self.paused = False
        self.cancelled = False
        self.cancel_reason = ""
        self.fail_fast = fail_fast
        self.failed_fast = False
        self.done: asyncio.Future | None = None
        self.state = state
        #: every event of the run, flattened: ``_HISTORY_STRIDE`` items per
        #: event (seq, time, kind, step, data).  One flat list instead of an
        #: object per event keeps a long run's history out of the cyclic
        #: GC's way (no tracked object per event: the data, compact tuples
        #: for a step's three routine events and dicts otherwise, holds only
        #: atomic values); :meth:`events` rebuilds the Event objects.
        self.history: list[Any] = []
        self.callback = callback
        self.callback_tasks: set[asyncio.Task] = set()
        self.resume_waiters: list[asyncio.Future] = []
        self.t_start = 0.0
        #: the wall clock at t_start: step results' datetimes are wall0 plus clock seconds since
        self.wall0: Any = None
        self.resumed_steps: list[str] = []
        self.pool_lists = graph.pool_lists  # sorted once per graph, not per run
        self.fresh = False
        self.attempt_log: dict[int, list] = {}
        self.record_history = True
        #: scheduling key of the run: (-run priority, seq); see scheduler.py
        self.order: tuple[int, int] = (-2, seq)
        #: the order its ready steps are taken in (scheduler.SCHEDULES) and
        #: whether its blocked steps claim pools
        self.schedule = "priority"
        self.claims = True
        #: running steps that hold pool units -> estimated end (clock time;
        #: None without an estimate), for backfilling around claims
        self.pool_ends: dict[int, float | None] = {}

    # -- observers: state, history, progress callback ------------------------
    def record(self, seq: int, time: float, kind: EventKind, step: str | None, data: dict | tuple, update: Any = None) -> None:
        """Apply one event, given by its fields, to the state and history (before the bus delivers it).

        ``update`` is the state's own method for ``kind`` (``_queued``,
        ``_started``, ``_completed``, which take ``data`` compact: see
        :data:`~yukkuri_nb.core.events.COMPACT_FIELDS`), or None for its
        generic ``_apply`` (``data`` a dict).  The history keeps ``data`` as
        given; :meth:`events` makes dicts again.
        """
        if update is None:
            self.state._apply(seq, time, kind, step, data)
        else:
            update(self.state, seq, time, step, data)
        if self.record_history:
            self.history.extend((seq, time, kind, step, data))

    def events(self) -> list[Event]:
        """The recorded events, in order (new objects, equal to the ones observed)."""
        h = self.history
        pid, wf = self.project_id, self.workflow_name
        return [new_event(h[k], h[k + 1], h[k + 2], pid, wf, h[k + 3], h[k + 4]) for k in range(0, len(h), _HISTORY_STRIDE)]

    def notify(self, kind: EventKind) -> None:
        """Call the progress callback (after the bus delivered the event of ``kind``).

        Events the callback causes (``cancel_workflow`` ...) thus reach
        subscribers after this one, keeping the bus in ``seq`` order.
        """
        cb = self.callback
        if cb is not None and kind in _CALLBACK_KINDS:
            try:
                out = cb(self.state)
                if asyncio.iscoroutine(out):
                    task = asyncio.get_running_loop().create_task(out)
                    self.callback_tasks.add(task)
                    task.add_done_callback(self._callback_done)
            except (KeyboardInterrupt, SystemExit) as exc:
                # As in a step: the run is cancelled (Ctrl-C means stop) and
                # the engine goes on.  Re-raising would escape from whichever
                # step task emitted the event and stop the loop mid-run.
                self.state.callback_errors += 1
                self.engine.cancel_workflow(self.project_id, f"{type(exc).__name__} in the progress callback")
            except BaseException:  # any other escape would kill the step's task and hang the run
                self.state.callback_errors += 1
                _log_callback_error(self, kind)

    def _callback_done(self, task: asyncio.Task) -> None:
        self.callback_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.state.callback_errors += 1
            import logging

            logging.getLogger("yukkuri_nb.engine").error(
                "async progress callback of run %r failed", self.project_id, exc_info=task.exception()
            )

    # -- data flow -------------------------------------------------------------
    def merged_input(self, i: int) -> dict:
        """``key -> (position, value)`` from all ancestors of ``i`` (cached until ``i`` completes)."""
        cached = self.merged.get(i)
        if cached is not None:
            return cached
        parents = self.graph.parents[i]
        acc = self.acc
        if not parents:
            merged: dict = {}
        elif len(parents) == 1:
            merged = acc[parents[0]] or {}
        else:
            merged = {}
            for p in parents:
                for key, item in (acc[p] or {}).items():
                    cur = merged.get(key)
                    if cur is None or cur[0] < item[0]:
                        merged[key] = item
        for p in parents:
            self.acc_readers[p] -= 1
            if self.acc_readers[p] == 0:
                acc[p] = None  # every child has taken it
        self.merged[i] = merged
        return merged

    def input_data(self, i: int) -> dict[str, Any]:
        data = dict(self.initial_input)
        for key, (_, value) in self.merged_input(i).items():
            data[key] = value
        return data

    def store_output(self, i: int, output: Mapping[str, Any]) -> None:
        merged = self.merged.pop(i, None)
        if merged is None:
            merged = self.merged_input(i)
            self.merged.pop(i, None)
        if output:
            pos = self.graph.position[i]
            merged = dict(merged)
            for key, value in output.items():
                merged[key] = (pos, value)
        if self.acc_readers[i] > 0:
            self.acc[i] = merged

    # -- cross-thread services for contexts -------------------------------------
    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self.loop_thread

    def post_progress(self, step: str, fraction: float, message: str) -> None:
        try:
            fraction = min(1.0, max(0.0, float(fraction)))
        except (TypeError, ValueError):
            raise ValueError(f"report_progress() of step {step!r} needs a number 0..1, got {fraction!r}") from None
        self._post(EventKind.STEP_PROGRESS, step, {"fraction": fraction, "message": str(message)})

    def post_log(self, step: str, message: str) -> None:
        self._post(EventKind.LOG, step, {"message": str(message)})

    def _post(self, kind: EventKind, step: str, data: dict) -> None:
        if self.done is not None and self.done.done():
            return
        if self.on_loop_thread():
            self.engine._emit(self, kind, step, data)
        elif self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.engine._emit_if_active, self, kind, step, data)

    async def checkpoint(self) -> None:
        if self.cancelled:
            raise asyncio.CancelledError(f"run {self.project_id!r} was cancelled")
        while self.paused and not self.cancelled:
            fut = asyncio.get_running_loop().create_future()
            self.resume_waiters.append(fut)
            await fut
        if self.cancelled:
            raise asyncio.CancelledError(f"run {self.project_id!r} was cancelled")

    def wake_checkpoints(self) -> None:
        waiters, self.resume_waiters = self.resume_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    @property
    def resources(self) -> Any:
        return self.engine.resource_manager


def _log_callback_error(run: _Run, kind: EventKind) -> None:
    import logging

    logging.getLogger("yukkuri_nb.engine").exception(
        "progress callback of run %r failed on %s (the run goes on)", run.project_id, kind.value
    )
