"""Terminal progress: a line per step change, with a bar per project.

:class:`TerminalProgress` is an engine observer (``engine.subscribe``); it
only formats events, so the CLI, the demo and the pipeline share it.
Sub-progress lines are throttled to one per step per ``progress_interval``.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from .core import WorkflowEngine
from .core.events import Event, EventKind

__all__ = ["TerminalProgress", "bar"]

_ICONS = {
    EventKind.STEP_STARTED: "▶",
    EventKind.STEP_COMPLETED: "✔",
    EventKind.STEP_FAILED: "✘",
    EventKind.STEP_RETRYING: "↻",
    EventKind.STEP_SKIPPED: "⤼",
    EventKind.STEP_CANCELLED: "■",
    EventKind.STEP_PROGRESS: "…",
    EventKind.PAUSED: "⏸",
    EventKind.RESUMED: "⏵",
    EventKind.CANCEL_REQUESTED: "■",
}


def bar(fraction: float, width: int = 20) -> str:
    """A text progress bar like ``[#######-------------]``."""
    fraction = min(1.0, max(0.0, fraction))
    full = round(fraction * width)
    return "[" + "#" * full + "-" * (width - full) + "]"


class TerminalProgress:
    """Prints the engine's events as readable progress lines."""

    def __init__(self, engine: WorkflowEngine, stream: IO[str] | None = None, *, progress_interval: float = 1.0) -> None:
        self.engine = engine
        self.stream = stream or sys.stdout
        self.progress_interval = progress_interval
        self._t0: float | None = None
        self._last_progress: dict[tuple[str | None, str | None], float] = {}
        self._unsubscribe = engine.subscribe(self)

    def close(self) -> None:
        self._unsubscribe()

    def __enter__(self) -> "TerminalProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __call__(self, event: Event) -> None:
        if self._t0 is None:
            self._t0 = event.time
        t = event.time - self._t0
        kind = event.kind
        if kind is EventKind.STEP_QUEUED or kind is EventKind.LOG:
            return
        if kind is EventKind.STEP_PROGRESS:
            key = (event.project_id, event.step)
            if t - self._last_progress.get(key, -1e9) < self.progress_interval and event.data.get("fraction", 0) < 1:
                return
            self._last_progress[key] = t
        state = self.engine.get_execution_status(event.project_id) if event.project_id else None
        head = f"[{t:7.1f}s]"
        if kind is EventKind.LIMITS_CHANGED:
            self._print(f"{head} limits changed: {event.data}")
            return
        if kind is EventKind.RUN_STARTED:
            self._print(f"{head} {event.project_id}: run of {event.workflow_name!r} started ({event.data.get('total_steps')} steps)")
            return
        if kind is EventKind.RUN_FINISHED:
            self._print(f"{head} {event.project_id}: finished — {event.data.get('status')}" + (f" ({event.data['reason']})" if event.data.get("reason") else ""))
            return
        name = event.step or ""
        display = ""
        if event.step and event.workflow_name:
            try:
                graph = self.engine.get_workflow(event.workflow_name)
                display = graph.steps[graph.index[event.step]].display_name
            except Exception:
                display = ""
        label = f"{name} {display}" if display and display != name else name
        extra = ""
        d = event.data
        if kind is EventKind.STEP_STARTED and d.get("attempt", 1) > 1:
            extra = f" (attempt {d['attempt']})"
        elif kind is EventKind.STEP_COMPLETED and d.get("duration") is not None:
            extra = " (restored from the run store)" if d.get("restored") else f" in {d['duration']:.1f}s"
        elif kind is EventKind.STEP_FAILED:
            extra = f": {d.get('error')}"
        elif kind is EventKind.STEP_RETRYING:
            extra = f": {d.get('error')} — retry in {d.get('delay', 0):.1f}s"
        elif kind is EventKind.STEP_SKIPPED:
            extra = f": {d.get('reason')}"
        elif kind is EventKind.STEP_PROGRESS:
            extra = f" {bar(d.get('fraction', 0), 10)} {d.get('message', '')}"
        elif kind is EventKind.CANCEL_REQUESTED:
            extra = f" cancel requested: {d.get('reason')}"
        progress = ""
        if state is not None and kind is not EventKind.STEP_PROGRESS:
            progress = f" {bar(state.completion_percentage / 100, 12)} {state.completed_steps}/{state.total_steps}"
        icon = _ICONS.get(kind, "·")
        self._print(f"{head} {event.project_id}{progress} {icon} {label}{extra}")

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
