"""What a dashboard shows, as plain data: a :class:`RunView` turns a run's live state into snapshots.

The widget dashboard and the text fallback both draw the same
:class:`RunSnapshot`, so they can never disagree.  Nothing here imports
ipywidgets.

A :class:`RunView` follows one ``project_id``.  Counters, statuses, when
each step first started and when it ended, sub-progress, attempts and
errors are all read from the live
:class:`~yukkuri_nb.core.WorkflowExecutionState` when a snapshot is taken,
so a view built after the run began or ended shows the same as one built
before it started.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from yukkuri_nb.core.definitions import StepStatus

if TYPE_CHECKING:  # pragma: no cover
    from yukkuri_nb.core.engine import WorkflowEngine

__all__ = ["RunView", "RunSnapshot", "StepRow", "PoolRow", "STATUS_LABELS", "format_seconds"]

#: Bilingual status words (Japanese first, as the display names are Japanese).
STATUS_LABELS: dict[StepStatus, str] = {
    StepStatus.PENDING: "待機 pending",
    StepStatus.READY: "準備完了 ready",
    StepStatus.RUNNING: "実行中 running",
    StepStatus.RETRYING: "再試行待ち retrying",
    StepStatus.PAUSED: "一時停止 paused",
    StepStatus.COMPLETED: "完了 completed",
    StepStatus.FAILED: "失敗 failed",
    StepStatus.SKIPPED: "スキップ skipped",
    StepStatus.CANCELLED: "中止 cancelled",
}
_MARKS = {
    StepStatus.PENDING: "·",
    StepStatus.READY: "○",
    StepStatus.RUNNING: "▶",
    StepStatus.RETRYING: "↻",
    StepStatus.PAUSED: "‖",
    StepStatus.COMPLETED: "✓",
    StepStatus.FAILED: "✗",
    StepStatus.SKIPPED: "-",
    StepStatus.CANCELLED: "■",
}
@dataclass(frozen=True, slots=True)
class StepRow:
    """One step as the dashboard shows it.  ``elapsed`` is ``None`` until the step first starts."""

    name: str
    display_name: str
    status: StepStatus
    fraction: float
    message: str
    elapsed: float | None
    attempts: int
    error: str


@dataclass(frozen=True, slots=True)
class PoolRow:
    """One resource pool: units in use out of ``capacity``, and steps waiting for it."""

    name: str
    capacity: int
    in_use: int
    waiting: int


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """A run at one moment: counters, overall fraction (with sub-progress), ETA, steps and pools.

    ``status`` is the run's status (``running`` until it finishes);
    ``eta`` is ``None`` once the run has finished.
    """

    project_id: str
    workflow_name: str
    status: StepStatus
    finished: bool
    paused: bool
    cancel_reason: str | None
    total: int
    completed: int
    failed: int
    running: int
    skipped: int
    cancelled: int
    fraction: float
    elapsed: float
    eta: float | None
    max_concurrent_steps: int
    steps: tuple[StepRow, ...]
    pools: tuple[PoolRow, ...]
    #: ``(name, display name, error)`` of every failed step of the run, also
    #: those left out of ``steps`` by a windowed :meth:`RunView.snapshot`.
    failures: tuple[tuple[str, str, str], ...] = ()
    #: the order the run takes its ready steps in (``execute_workflow(schedule=...)``)
    schedule: str = "priority"

    @property
    def headline(self) -> str:
        """One line: status, completed / total, elapsed and ETA."""
        state = "一時停止 paused" if self.paused and not self.finished else STATUS_LABELS[self.status]
        if self.finished and self.status is StepStatus.COMPLETED:
            state = "完了 completed"
        parts = [
            state,
            f"{self.completed}/{self.total} completed",
            f"elapsed {format_seconds(self.elapsed)}",
        ]
        if self.failed:
            parts.insert(2, f"{self.failed} failed")
        if self.eta is not None:
            parts.append(f"ETA {format_seconds(self.eta)}")
        if self.schedule != "priority":
            parts.append(f"schedule {self.schedule}")
        return " · ".join(parts)

    def errors(self) -> list[tuple[str, str]]:
        """``(display name, message)`` of every failed step, plus the cancel reason if any."""
        out = [(f"{display} ({name})", error or "failed") for name, display, error in self.failures]
        if self.cancel_reason and self.status is StepStatus.CANCELLED:
            out.append(("中止 cancelled", self.cancel_reason))
        return out

    def text(self) -> str:
        """A readable multi-line rendering (the dashboard without a widget front-end)."""
        width = max((_width(s.display_name) for s in self.steps), default=0)
        lines = [f"run {self.project_id!r} ({self.workflow_name}): {self.headline}"]
        for s in self.steps:
            pad = " " * (width - _width(s.display_name))
            extra = []
            if s.status is StepStatus.RUNNING and s.fraction:
                extra.append(f"{100 * s.fraction:.0f}%")
            if s.message and not s.status.is_terminal:
                extra.append(s.message)
            if s.elapsed is not None:
                extra.append(format_seconds(s.elapsed))
            if s.attempts > 1:
                extra.append(f"attempt {s.attempts}")
            if s.status is StepStatus.FAILED and s.error:
                extra.append(s.error)
            lines.append(f"  {_MARKS[s.status]} {s.display_name}{pad}  {s.status.value:<9} {'  '.join(extra)}".rstrip())
        if self.pools:
            pools = ", ".join(f"{p.name} {p.in_use}/{p.capacity} (waiting {p.waiting})" for p in self.pools)
            lines.append(f"  pools: {pools}; max_concurrent_steps={self.max_concurrent_steps}")
        if self.cancel_reason and self.status is StepStatus.CANCELLED:
            lines.append(f"  cancelled: {self.cancel_reason}")
        return "\n".join(lines)

    def html(self) -> str:
        """The same as :meth:`text`, in a ``<pre>`` (for ``text/html`` front-ends without widgets)."""
        return f"<pre>{html.escape(self.text())}</pre>"


class RunView:
    """Reads the run of ``project_id`` on ``engine`` and produces :class:`RunSnapshot` s.

    Everything comes from the engine's live state at the moment of
    :meth:`snapshot` (counters, statuses, sub-progress, first start and end
    time of each step), so a view needs no events: create one at any time,
    also after the run ended, and read it from any thread.
    """

    #: Above this many steps the ETA (``O(steps)`` to compute: ~0.4 ms per
    #: 1,000 steps) is recomputed at most every ``ETA_INTERVAL`` seconds of
    #: the engine's clock, not at every snapshot (10 a second in a dashboard).
    ETA_CACHE_STEPS = 500
    ETA_INTERVAL = 1.0

    def __init__(self, engine: "WorkflowEngine", project_id: str) -> None:
        self.engine = engine
        self.project_id = project_id
        self._display_graph: Any = None
        self._display: dict[str, str] = {}
        self._eta: tuple[Any, float, float] | None = None  # (state, computed at, value)

    def snapshot(self, steps: Iterable[str] | None = None) -> RunSnapshot | None:
        """The run right now, or ``None`` if the engine knows no run of this project.

        ``steps`` limits the rows to those step names (a dashboard page of a
        large run): a snapshot then costs ``O(rows)``, not ``O(steps)``, apart
        from the overall fraction and the ETA.  Counters, ``failures`` and
        the ETA always cover the whole run.
        """
        engine = self.engine
        state = engine.get_execution_status(self.project_id)
        if state is None:
            return None
        now = engine.clock.now()
        finished = state.is_finished
        display = self._display_names(state.workflow_name)
        statuses = state.step_statuses
        progress = state.step_progress
        starts, ends = state.step_start_times, state.step_end_times
        # Sub-progress of running steps (every started step has an entry).
        partial = sum(f for name, f in list(progress.items()) if statuses.get(name) is StepStatus.RUNNING)
        names = list(statuses) if steps is None else [n for n in steps if n in statuses]
        rows = []
        for name in names:
            status = statuses[name]
            fraction = 1.0 if status is StepStatus.COMPLETED else progress.get(name, 0.0)
            start = starts.get(name)
            elapsed = None if start is None else max(0.0, ends.get(name, now) - start)
            error = state.step_errors.get(name, "") if status in (StepStatus.FAILED, StepStatus.RETRYING) else ""
            rows.append(
                StepRow(
                    name=name,
                    display_name=display.get(name, name),
                    status=status,
                    fraction=min(1.0, max(0.0, fraction)),
                    message=state.step_messages.get(name, ""),
                    elapsed=elapsed,
                    attempts=state.step_attempts.get(name, 0),
                    error=error,
                )
            )
        failures = tuple(
            (name, display.get(name, name), error)
            for name, error in list(state.step_errors.items())
            if statuses.get(name) is StepStatus.FAILED
        )
        total = state.total_steps
        return RunSnapshot(
            project_id=self.project_id,
            workflow_name=state.workflow_name,
            status=state.status,
            finished=finished,
            paused=state.is_paused,
            cancel_reason=state.cancel_reason,
            total=total,
            completed=state.completed_steps,
            failed=state.failed_steps,
            running=state.running_steps,
            skipped=state.skipped_steps,
            cancelled=state.cancelled_steps,
            fraction=(state.completed_steps + partial) / total if total else 1.0,
            elapsed=state.elapsed_seconds,
            eta=None if finished else self._estimate(state, now),
            max_concurrent_steps=engine.max_concurrent_steps,
            steps=tuple(rows),
            pools=tuple(_pool_rows(engine, state.workflow_name)),
            failures=failures,
            schedule=state.schedule,
        )

    def _estimate(self, state: Any, now: float) -> float:
        if state.total_steps <= self.ETA_CACHE_STEPS:
            return state.estimate_remaining_time()
        cached = self._eta
        if cached is not None and cached[0] is state and now - cached[1] < self.ETA_INTERVAL:
            return max(0.0, cached[2] - (now - cached[1]))  # counted down in between
        value = state.estimate_remaining_time()
        self._eta = (state, now, value)
        return value

    def _display_names(self, workflow_name: str) -> dict[str, str]:
        # Cached per registered graph (re-registering a workflow makes a new one).
        try:
            graph = self.engine.get_workflow(workflow_name)
        except Exception:  # the workflow was unregistered since: show step names
            return {}
        if self._display_graph is not graph:
            self._display_graph = graph
            self._display = {s.name: s.display_name or s.name for s in graph.steps}
        return self._display

    def text(self) -> str:
        snap = self.snapshot()
        return snap.text() if snap is not None else f"run {self.project_id!r}: not started"


def format_seconds(seconds: float) -> str:
    """``0.4s``, ``12.3s``, ``2m05s``, ``1h02m`` (for labels)."""
    if seconds != seconds or seconds == float("inf"):  # NaN or unbounded
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _pool_rows(engine: "WorkflowEngine", workflow_name: str) -> list[PoolRow]:
    try:
        pools = sorted(engine.get_workflow(workflow_name).resource_requirements)
    except Exception:
        pools = []
    stats: dict[str, Any] = engine.resource_statistics()
    rm = engine.resource_manager
    rows = []
    for name in pools:
        s = stats.get(name)
        if s is None:
            rows.append(PoolRow(name, rm.capacity(name), rm.in_use(name), 0))
        else:
            rows.append(PoolRow(name, s.capacity, s.in_use, s.waiting))
    return rows


def _width(text: str) -> int:
    """Terminal columns of ``text`` (CJK characters take two)."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
