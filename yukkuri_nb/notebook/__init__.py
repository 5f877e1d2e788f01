"""Notebook front-end: run dashboards (ipywidgets) and a sync helper for Jupyter.

This is the only subpackage that imports ipywidgets, and only when a
dashboard is built (``yukkuri_nb.notebook.dashboard``); ``run_sync`` and the
text view need nothing beyond the standard library.

Only the non-blocking forms keep a dashboard's buttons live while a run goes
on: ``run = engine.start(...)`` (then ``await run`` in a later cell) or
``await engine.execute_workflow(...)``.  The blocking
``engine.execute_workflow_sync(...)`` holds the kernel until the run ends, so
clicks are only handled afterwards.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Dashboard", "RunView", "run_sync"]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing yukkuri_nb.notebook.sync never pulls ipywidgets in.
    if name == "Dashboard":
        from .dashboard import Dashboard

        return Dashboard
    if name == "RunView":
        from .view import RunView

        return RunView
    if name == "run_sync":
        from .sync import run_sync

        return run_sync
    raise AttributeError(f"module 'yukkuri_nb.notebook' has no attribute {name!r}")
