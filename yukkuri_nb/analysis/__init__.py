"""Analysis of recorded runs: pandas frames, metrics, concurrency tuning and reports.

Frames: :func:`events_frame`, :func:`steps_frame`, :func:`attempts_frame`,
:func:`paused_frame`.  Metrics: :func:`makespan`, :func:`throughput`,
:func:`concurrency_over_time`, :func:`pool_usage_over_time`,
:func:`pool_utilisation`, :func:`summary`.  Tuning: :func:`sweep`.  Reports:
:func:`performance_report`.  Charts of all of these are in :mod:`yukkuri_nb.viz`.

``engine.history(project_id)`` is :func:`events_frame`.  pandas is imported
with this package; the core never imports it.
"""

from .frames import attempts_frame, collect_runs, events_frame, paused_frame, steps_frame
from .metrics import (
    busy_intervals,
    concurrency_over_time,
    makespan,
    pool_usage_over_time,
    pool_utilisation,
    summary,
    throughput,
)
from .report import performance_report
from .tuning import SweepError, sweep, sweep_async

__all__ = [
    "events_frame",
    "steps_frame",
    "attempts_frame",
    "paused_frame",
    "collect_runs",
    "busy_intervals",
    "makespan",
    "throughput",
    "concurrency_over_time",
    "pool_usage_over_time",
    "pool_utilisation",
    "summary",
    "sweep",
    "sweep_async",
    "SweepError",
    "performance_report",
]
