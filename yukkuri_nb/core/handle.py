"""Run handles: a run scheduled with ``engine.start(...)``, to await, steer and display.

The handle is plain asyncio; its ``dashboard`` is built on first use by
``yukkuri_nb.notebook`` (imported lazily, so the core never needs Jupyter).
"""

from __future__ import annotations

import asyncio
from importlib import import_module
from typing import TYPE_CHECKING, Any, Generator

if TYPE_CHECKING:  # pragma: no cover
    from .engine import WorkflowEngine
    from .state import WorkflowExecutionResult, WorkflowExecutionState

__all__ = ["RunHandle"]


class RunHandle:
    """A run in progress.  ``await handle`` returns its :class:`WorkflowExecutionResult`.

    ``pause()``, ``resume()`` and ``cancel(reason)`` steer it (safe from any
    thread); ``state`` is the live :class:`WorkflowExecutionState`;
    ``dashboard`` is an ipywidgets widget tree (built lazily).
    """

    def __init__(self, engine: "WorkflowEngine", project_id: str, task: "asyncio.Task[WorkflowExecutionResult]") -> None:
        self.engine = engine
        self.project_id = project_id
        self.task = task
        self._dashboard: Any = None

    # -- steering ----------------------------------------------------------
    def pause(self) -> bool:
        return self.engine.pause_workflow(self.project_id)

    def resume(self) -> bool:
        return self.engine.resume_workflow(self.project_id)

    def cancel(self, reason: str = "") -> bool:
        return self.engine.cancel_workflow(self.project_id, reason or "cancelled by the user")

    # -- watching ----------------------------------------------------------
    @property
    def state(self) -> "WorkflowExecutionState | None":
        return self.engine.get_execution_status(self.project_id)

    def done(self) -> bool:
        return self.task.done()

    def result(self) -> "WorkflowExecutionResult":
        """The result once done (raises ``asyncio.InvalidStateError`` before)."""
        return self.task.result()

    def __await__(self) -> Generator[Any, None, "WorkflowExecutionResult"]:
        return self.task.__await__()

    @property
    def dashboard(self) -> Any:
        """The ipywidgets dashboard of this run (needs ``ipywidgets``)."""
        if self._dashboard is None:
            self._dashboard = import_module("yukkuri_nb.notebook.dashboard").Dashboard(self)
        return self._dashboard

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        try:
            return self.dashboard._repr_mimebundle_(include=include, exclude=exclude)
        except Exception:
            return {"text/plain": repr(self)}

    def __repr__(self) -> str:
        state = self.state
        if state is None:
            return f"<RunHandle {self.project_id!r}>"
        return (
            f"<RunHandle {self.project_id!r} {state.status.value}: {state.completed_steps}/{state.total_steps} "
            f"completed, {state.running_steps} running{', paused' if state.is_paused else ''}>"
        )
