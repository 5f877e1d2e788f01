"""Live run state and final results.

:class:`WorkflowExecutionState` is a projection of the event stream: the
engine never sets its counters directly, it only calls :meth:`apply` with each
event (``is_paused`` / ``is_cancelled`` are also set at once by the control
calls, so they read true the moment ``pause_workflow`` returns).

Invariant: ``completed + failed + running + pending + skipped + cancelled ==
total``, where *pending* counts steps waiting for dependencies, a slot, a pool
or a retry delay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from .definitions import StepStatus
from .events import Event, EventKind, expand_data, new_event
from .results import StepResult

if TYPE_CHECKING:  # pragma: no cover
    from .graph import WorkflowGraph

__all__ = ["WorkflowExecutionState", "WorkflowExecutionResult"]

_COUNTER = {
    StepStatus.PENDING: "pending_steps",
    StepStatus.READY: "pending_steps",
    StepStatus.RETRYING: "pending_steps",
    StepStatus.PAUSED: "pending_steps",
    StepStatus.RUNNING: "running_steps",
    StepStatus.COMPLETED: "completed_steps",
    StepStatus.FAILED: "failed_steps",
    StepStatus.SKIPPED: "skipped_steps",
    StepStatus.CANCELLED: "cancelled_steps",
}
_STEP_EVENT_STATUS = {
    EventKind.STEP_QUEUED: StepStatus.READY,
    EventKind.STEP_STARTED: StepStatus.RUNNING,
    EventKind.STEP_RETRYING: StepStatus.RETRYING,
    EventKind.STEP_COMPLETED: StepStatus.COMPLETED,
    EventKind.STEP_FAILED: StepStatus.FAILED,
    EventKind.STEP_SKIPPED: StepStatus.SKIPPED,
    EventKind.STEP_CANCELLED: StepStatus.CANCELLED,
}
# (old status, new status) -> (counter to decrement, counter to increment),
# only for the pairs that move a step between counters.
_MOVES = {
    (old, new): (_COUNTER[old], _COUNTER[new]) for old in _COUNTER for new in _COUNTER if _COUNTER[old] != _COUNTER[new]
}
# apply() runs for every event: enum members bound once (class attribute
# lookups on an Enum are slow).
_STARTED, _COMPLETED = EventKind.STEP_STARTED, EventKind.STEP_COMPLETED
_FAILED, _RETRYING = EventKind.STEP_FAILED, EventKind.STEP_RETRYING
_SKIPPED, _CANCELLED = EventKind.STEP_SKIPPED, EventKind.STEP_CANCELLED
_QUEUED = EventKind.STEP_QUEUED
_READY, _RUNNING, _DONE = StepStatus.READY, StepStatus.RUNNING, StepStatus.COMPLETED
_PENDING_STATUSES = frozenset({StepStatus.PENDING, StepStatus.RETRYING})


class WorkflowExecutionState:
    """The live state of one run (the seed's fields plus ``step_statuses`` and more).

    Read it from ``engine.get_execution_status(project_id)`` or in a progress
    callback.  Counters: ``total_steps``, ``completed_steps``, ``failed_steps``,
    ``running_steps``, ``pending_steps``, ``skipped_steps``, ``cancelled_steps``.
    Per step: ``step_statuses``, ``step_progress`` (0..1 sub-progress),
    ``step_attempts``, ``step_errors``, ``step_start_times`` (when the first
    attempt started) and ``step_end_times`` (when the step ended), both in
    the engine clock's seconds (``engine.clock.now()``).  ``schedule`` is the
    order the run takes its ready steps in (``execute_workflow(schedule=...)``;
    for ``"makespan"``, the one it chose).
    """

    def __init__(
        self,
        project_id: str,
        workflow_name: str,
        graph: "WorkflowGraph",
        started_at: datetime,
        *,
        clock_now: Callable[[], float],
        limits: Callable[[], tuple[int, Callable[[str], int]]] | None = None,
    ) -> None:
        self.project_id = project_id
        self.workflow_name = workflow_name
        self.total_steps = len(graph)
        self.completed_steps = 0
        self.failed_steps = 0
        self.running_steps = 0
        self.pending_steps = len(graph)
        self.skipped_steps = 0
        self.cancelled_steps = 0
        self.started_at = started_at
        self.completed_at: datetime | None = None
        self.is_cancelled = False
        self.is_paused = False
        self.status = StepStatus.RUNNING
        self.cancel_reason: str | None = None
        #: the order the run takes its ready steps in (see execute_workflow's ``schedule``)
        self.schedule = "priority"
        self.step_statuses: dict[str, StepStatus] = dict.fromkeys(graph.index, StepStatus.PENDING)
        self.step_progress: dict[str, float] = {}
        self.step_messages: dict[str, str] = {}
        self.step_attempts: dict[str, int] = {}
        self.step_errors: dict[str, str] = {}
        self.step_start_times: dict[str, float] = {}
        self.step_end_times: dict[str, float] = {}
        self.callback_errors = 0
        self._last: tuple | None = None  # (seq, time, kind, step, data) of the latest event
        self._last_event: Event | None = None
        self._graph = graph
        self._now = clock_now
        self._limits = limits
        self._t0 = clock_now()
        self._t_end: float | None = None
        self._step_start: dict[str, float] = {}
        self._actual: float = 0.0  # summed actual seconds of completed steps with an estimate
        self._estimated: float = 0.0  # summed estimates of those steps

    # -- the projection ------------------------------------------------
    @property
    def last_event(self) -> Event | None:
        """The latest event applied (``None`` before the first)."""
        if self._last_event is None and self._last is not None:
            seq, time, kind, step, data = self._last
            self._last_event = new_event(seq, time, kind, self.project_id, self.workflow_name, step, data)
        return self._last_event

    def apply(self, event: Event) -> None:
        """Update the state from one event of this run."""
        self._apply(event.seq, event.time, event.kind, event.step, event.data)
        self._last_event = event

    def _apply(self, seq: int, time: float, kind: EventKind, name: str | None, data: dict) -> None:
        # The engine's path: the event's fields, no Event object (that is
        # built only if someone reads last_event).
        self._last = (seq, time, kind, name, data)
        self._last_event = None
        new = _STEP_EVENT_STATUS.get(kind)
        if new is not None:
            statuses = self.step_statuses
            old = statuses[name]
            if old is not new:
                statuses[name] = new
                move = _MOVES.get((old, new))
                if move is not None:
                    old_c, new_c = move
                    setattr(self, old_c, getattr(self, old_c) - 1)
                    setattr(self, new_c, getattr(self, new_c) + 1)
            if kind is _STARTED:
                self._note_start(name, time, data.get("attempt", 1))
            elif kind is _COMPLETED:
                self._note_completion(name, time, None if data.get("restored") else data.get("duration"))
            elif kind is _FAILED or kind is _RETRYING:
                self.step_errors[name] = str(data.get("error", ""))
                if kind is _FAILED:
                    self.step_end_times[name] = time
            elif kind is _SKIPPED or kind is _CANCELLED:
                self.step_end_times[name] = time
            return
        if kind is EventKind.STEP_PROGRESS:
            self.step_progress[name] = float(data.get("fraction", 0.0))
            if data.get("message"):
                self.step_messages[name] = data["message"]
        elif kind is EventKind.PAUSED:
            self.is_paused = True
        elif kind is EventKind.RESUMED:
            self.is_paused = False
        elif kind is EventKind.CANCEL_REQUESTED:
            self.is_cancelled = True
            self.cancel_reason = data.get("reason") or self.cancel_reason
        elif kind is EventKind.RUN_STARTED:
            self.schedule = data.get("schedule", "priority")
        elif kind is EventKind.RUN_FINISHED:
            self.status = StepStatus(data["status"])
            self.is_paused = False
            self._t_end = time

    def _note_start(self, name: str, time: float, attempt: int) -> None:
        self._step_start[name] = time
        if name not in self.step_start_times:  # a retry keeps the first start
            self.step_start_times[name] = time
        self.step_attempts[name] = attempt
        self.step_progress[name] = 0.0

    def _note_completion(self, name: str, time: float, duration: float | None) -> None:
        """``duration``: the step's own, or None (unknown, or a restored step's) to keep it out of the ETA."""
        self.step_end_times[name] = time
        self.step_progress[name] = 1.0
        graph = self._graph
        est = graph.steps[graph.index[name]].estimated_duration
        if est > 0 and duration is not None:
            self._actual += duration
            self._estimated += est

    # The engine's three events of every step, with the transition each
    # one makes in a normal run (queued from pending or retrying, started
    # from ready, completed from running): the same effect as _apply at a
    # fraction of its cost (no lookups of the new status or of the counter
    # move).  Any other old status goes through _apply.
    # tests/core/test_history.py replays a run's events through apply() and
    # compares every projected field with the live state.
    # Their data comes compact (events.COMPACT_FIELDS: () / (attempt, slot,
    # pools) / (attempt, duration)), as the engine records it.
    def _queued(self, seq: int, time: float, name: str, data: tuple) -> None:
        statuses = self.step_statuses
        if statuses[name] not in _PENDING_STATUSES:
            return self._apply(seq, time, _QUEUED, name, expand_data(_QUEUED, data))
        self._last = (seq, time, _QUEUED, name, data)
        self._last_event = None
        statuses[name] = _READY

    def _started(self, seq: int, time: float, name: str, data: tuple) -> None:
        statuses = self.step_statuses
        if statuses[name] is not _READY:
            return self._apply(seq, time, _STARTED, name, expand_data(_STARTED, data))
        self._last = (seq, time, _STARTED, name, data)
        self._last_event = None
        statuses[name] = _RUNNING
        self.pending_steps -= 1
        self.running_steps += 1
        self._note_start(name, time, data[0])

    def _completed(self, seq: int, time: float, name: str, data: tuple) -> None:
        statuses = self.step_statuses
        if statuses[name] is not _RUNNING:
            return self._apply(seq, time, _COMPLETED, name, expand_data(_COMPLETED, data))
        self._last = (seq, time, _COMPLETED, name, data)
        self._last_event = None
        statuses[name] = _DONE
        self.running_steps -= 1
        self.completed_steps += 1
        self._note_completion(name, time, data[1])

    # -- derived figures -------------------------------------------------
    @property
    def completion_percentage(self) -> float:
        """100 x completed / total (100 for an empty workflow)."""
        if not self.total_steps:
            return 100.0
        return 100.0 * self.completed_steps / self.total_steps

    @property
    def elapsed_seconds(self) -> float:
        end = self._t_end if self._t_end is not None else self._now()
        return end - self._t0

    @property
    def is_finished(self) -> bool:
        return self._t_end is not None

    @property
    def speed_factor(self) -> float:
        """Actual / estimated duration of the steps completed so far (1.0 until one completes)."""
        if self._estimated <= 0:
            return 1.0
        return self._actual / self._estimated

    def estimate_remaining_time(self) -> float:
        """Seconds until the run should finish.

        From the estimated durations of the steps not yet done (a running
        step counts only what is left of its estimate), scaled by
        :attr:`speed_factor`, and bounded below by what parallelism allows:
        the longest remaining dependency chain, the remaining work divided by
        ``max_concurrent_steps``, and each pool's remaining work divided by its
        capacity.  0 once the run has finished.
        """
        if self._t_end is not None:
            return 0.0
        g = self._graph
        now = self._now()
        statuses = self.step_statuses
        index = g.index
        steps = g.steps
        chain = 0.0
        work = 0.0
        pool_work: dict[str, float] = {}
        for name, status in statuses.items():
            if status.is_terminal:
                continue
            i = index[name]
            est = steps[i].estimated_duration
            left = est
            if status is StepStatus.RUNNING:
                left = max(0.0, est - (now - self._step_start.get(name, now)))
                frac = self.step_progress.get(name, 0.0)
                if 0.0 < frac < 1.0:
                    left = min(left, est * (1.0 - frac)) if left else 0.0
            chain = max(chain, g.rank[i] - est + left)
            work += left
            for pool in g.pools[i]:
                pool_work[pool] = pool_work.get(pool, 0.0) + left
        bound = chain
        if self._limits is not None:
            max_conc, capacity = self._limits()
            if max_conc > 0:
                bound = max(bound, work / max_conc)
            for pool, w in pool_work.items():
                cap = capacity(pool)
                if cap > 0:
                    bound = max(bound, w / cap)
        return bound * self.speed_factor

    def get_status_summary(self) -> dict[str, Any]:
        """A JSON-serialisable summary of the run right now."""
        return {
            "project_id": self.project_id,
            "workflow_name": self.workflow_name,
            "status": self.status.value,
            "total_steps": self.total_steps,
            "completed_steps": self.completed_steps,
            "failed_steps": self.failed_steps,
            "running_steps": self.running_steps,
            "pending_steps": self.pending_steps,
            "skipped_steps": self.skipped_steps,
            "cancelled_steps": self.cancelled_steps,
            "completion_percentage": round(self.completion_percentage, 2),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "estimated_remaining_seconds": round(self.estimate_remaining_time(), 3),
            "is_paused": self.is_paused,
            "is_cancelled": self.is_cancelled,
            "cancel_reason": self.cancel_reason,
            "schedule": self.schedule,
            "started_at": self.started_at.isoformat(),
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "step_statuses": {k: v.value for k, v in self.step_statuses.items()},
            "step_progress": dict(self.step_progress),
            "step_errors": dict(self.step_errors),
            "callback_errors": self.callback_errors,
        }

    def __repr__(self) -> str:
        return (
            f"<WorkflowExecutionState {self.project_id!r} {self.status.value} "
            f"{self.completed_steps}/{self.total_steps} done, {self.running_steps} running, "
            f"{self.failed_steps} failed{', paused' if self.is_paused else ''}>"
        )


@dataclass
class WorkflowExecutionResult:
    """The outcome of a run (the seed's fields plus skipped/cancelled counts and ``error_summary``).

    ``status`` is ``COMPLETED`` when every step completed, ``CANCELLED`` when
    the run was cancelled, else ``FAILED``.
    """

    project_id: str
    workflow_name: str
    status: StepStatus
    total_steps: int
    completed_steps: int
    failed_steps: int
    execution_time_seconds: float
    step_results: dict[str, StepResult]
    skipped_steps: int = 0
    cancelled_steps: int = 0
    error_summary: dict[str, str] = field(default_factory=dict)
    cancel_reason: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    resumed_steps: list[str] = field(default_factory=list)
    run_id: str | None = None

    @property
    def is_successful(self) -> bool:
        """True when every step completed."""
        return self.status is StepStatus.COMPLETED

    @property
    def success_rate(self) -> float:
        """completed / (completed + failed) over the steps that ran (0.0 if none ran)."""
        ran = self.completed_steps + self.failed_steps
        return self.completed_steps / ran if ran else 0.0

    @property
    def completion_percentage(self) -> float:
        """100 x completed / total (100 for an empty workflow)."""
        return 100.0 * self.completed_steps / self.total_steps if self.total_steps else 100.0

    @property
    def outputs(self) -> dict[str, Any]:
        """All outputs merged in step order (later steps win), for convenience."""
        merged: dict[str, Any] = {}
        for r in self.step_results.values():
            if r.is_successful:
                merged.update(r.output_data)
        return merged

    def to_dict(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "workflow_name": self.workflow_name,
            "status": self.status.value,
            "total_steps": self.total_steps,
            "completed_steps": self.completed_steps,
            "failed_steps": self.failed_steps,
            "skipped_steps": self.skipped_steps,
            "cancelled_steps": self.cancelled_steps,
            "execution_time_seconds": self.execution_time_seconds,
            "success_rate": self.success_rate,
            "completion_percentage": self.completion_percentage,
            "error_summary": self.error_summary,
            "cancel_reason": self.cancel_reason,
            "resumed_steps": self.resumed_steps,
            "step_results": {k: v.to_dict() for k, v in self.step_results.items()},
        }

    def __repr__(self) -> str:
        return (
            f"<WorkflowExecutionResult {self.project_id!r} {self.status.value} "
            f"{self.completed_steps}/{self.total_steps} completed, {self.failed_steps} failed, "
            f"{self.execution_time_seconds:.2f}s>"
        )
