"""Concurrency tuning: run a batch under several limits and compare.

:func:`sweep` runs ``projects`` copies of a workflow at once for every
combination of a ``max_concurrent_steps`` value and a pool-capacity setting,
and returns one row per combination: makespan, throughput, utilisation per
pool, and the lower bound no schedule can beat.  Two modes:

``mode="simulate"`` (default)
    The real engine (its scheduler, pools, events) runs on a
    :class:`~yukkuri_nb.core.VirtualClock` with processors that only
    ``await asyncio.sleep(estimated_duration * time_scale)``.  Virtual time
    jumps from timer to timer, so an hour-long batch takes milliseconds.  It
    answers "what if" from the estimates alone.
``mode="real"``
    Runs the batch for real: with an engine (or an engine factory) its own
    processors; with a bare workflow, processors that really sleep
    ``estimated_duration * time_scale`` seconds.

Agreement: with the same ``time_scale`` a simulated makespan matches a real
sleep-based run's up to the engine's per-step overhead (well within 10% for
steps of 50 ms and more).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import time
from typing import Any, Awaitable, Callable, Iterable, Mapping, Sequence, TypeVar

import pandas as pd

__all__ = ["sweep", "sweep_async", "SweepError"]

T = TypeVar("T")


class SweepError(ValueError):
    """A sweep was asked for something it cannot run (bad values, unknown workflow, ...)."""


# --------------------------------------------------------------------------- inputs
class _Target:
    """What a sweep runs: a workflow graph, base capacities, and how to get an engine for real runs."""

    def __init__(self, source: Any, workflow_name: str | None) -> None:
        from yukkuri_nb.core import WorkflowEngine
        from yukkuri_nb.core.graph import DependencyResolver, WorkflowGraph

        self.engine: Any = None
        self.factory: Callable[[], Any] | None = None
        if isinstance(source, WorkflowEngine):
            self.engine = source
            engine = source
        elif isinstance(source, WorkflowGraph):
            engine = None
            self.graph = source
        elif isinstance(source, (list, tuple)):
            engine = None
            self.graph = DependencyResolver().resolve(workflow_name or "sweep", source)
        elif callable(source):
            self.factory = source
            engine = source()
            if not isinstance(engine, WorkflowEngine):
                raise SweepError(
                    f"the engine factory {source!r} returned {type(engine).__name__}, not a WorkflowEngine"
                )
        else:
            raise SweepError(
                f"sweep() needs a WorkflowEngine, an engine factory, a WorkflowGraph or a list of step "
                f"definitions, got {type(source).__name__}"
            )
        if engine is not None:
            names = engine.workflows
            if workflow_name is None:
                if len(names) != 1:
                    raise SweepError(
                        f"the engine has {len(names)} workflows ({', '.join(map(repr, names)) or 'none'}); "
                        "pass workflow_name=... to say which one to sweep"
                    )
                workflow_name = names[0]
            self.graph = engine.get_workflow(workflow_name)
            rm = engine.resource_manager
            self.default_capacity = rm.default_capacity
            self.base_caps = {p: rm.capacity(p) for p in self.graph.resource_requirements}
            self.base_limit = engine.max_concurrent_steps
        else:
            self.default_capacity = 1
            self.base_caps = {p: 1 for p in self.graph.resource_requirements}
            self.base_limit = 3
        self.workflow_name = self.graph.name


def _check_values(values: Iterable[int]) -> list[int]:
    out = list(values)
    if not out:
        raise SweepError("max_concurrent_values is empty; give at least one int >= 1, e.g. [1, 2, 4]")
    for v in out:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SweepError(f"max_concurrent_values must be ints >= 1, got {v!r}")
    return out


def _check_caps(settings: Sequence[Mapping[str, int] | None] | Mapping[str, int] | None) -> list[dict[str, int]]:
    if settings is None:
        return [{}]
    if isinstance(settings, Mapping):
        settings = [settings]
    out = []
    for s in settings:
        s = dict(s or {})
        for pool, cap in s.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise SweepError(f"pool_capacities: pool {pool!r} needs an int capacity >= 1, got {cap!r}")
        out.append(s)
    return out or [{}]


def _label(overrides: Mapping[str, int]) -> str:
    return ", ".join(f"{p}={c}" for p, c in sorted(overrides.items())) or "現在の容量 (current)"


# --------------------------------------------------------------------------- running a batch
def _sleeper(seconds: float) -> Callable[..., Awaitable[dict]]:
    async def process(context: Any, input_data: Mapping[str, Any]) -> dict:
        await asyncio.sleep(seconds)
        return {}

    return process


def _sleep_engine(target: _Target, limit: int, caps: Mapping[str, int], clock: Any, time_scale: float, n: int) -> Any:
    from yukkuri_nb.core import ResourceManager, WorkflowEngine

    rm = ResourceManager(dict(caps), default_capacity=target.default_capacity)
    engine = WorkflowEngine(
        resource_manager=rm, max_concurrent_steps=limit, clock=clock,
        default_timeout_seconds=1e9, history_limit=max(100, n),
    )
    engine.register_workflow(target.workflow_name, target.graph.steps)
    for step in target.graph.steps:
        engine.register_step_processor(step.name, _sleeper(step.estimated_duration * time_scale))
    return engine


async def _batch(engine: Any, workflow_name: str, n: int, tag: str, initial_input: Mapping[str, Any] | None) -> tuple[list, list]:
    events: list = []
    unsubscribe = engine.subscribe(events.append)
    try:
        results = await asyncio.gather(
            *(engine.execute_workflow(workflow_name, f"{tag}-{j:03d}", dict(initial_input or {}), fresh=True)
              for j in range(n))
        )
    finally:
        unsubscribe()
    return [e for e in events if e.project_id is not None], list(results)


def _measure(events: list, results: list, graph: Any, caps: Mapping[str, int]) -> dict[str, Any]:
    """Makespan, utilisation per pool and busy time from a batch's events (pure Python: sweeps are hot)."""
    from .frames import _replay, _runs_from_events

    runs = _runs_from_events(events)
    if not runs:
        return {"makespan": 0.0, "busy": 0.0, "pool_busy": {}}
    start = min(r.start for r in runs)
    end = max(r.end for r in runs)
    busy = 0.0
    pool_busy: dict[str, float] = {}
    pools_of = {s.name: s.required_resources for s in graph.steps}
    for run in runs:
        for name, st in _replay(run).items():
            for a in st.attempts:
                if a.end is None:
                    continue
                d = a.end - a.start
                busy += d
                for p in pools_of.get(name, ()):
                    pool_busy[p] = pool_busy.get(p, 0.0) + d
    return {"makespan": end - start, "busy": busy, "pool_busy": pool_busy}


def _run_blocking(fn: Callable[[], T]) -> T:
    """Run ``fn`` here, or in a worker thread if this thread already runs an event loop (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="yukkuri_nb-sweep") as pool:
        return pool.submit(fn).result()


async def _one_real(target: _Target, limit: int, caps: Mapping[str, int], n: int, time_scale: float,
                    tag: str, initial_input: Mapping[str, Any] | None) -> tuple[list, list]:
    if target.factory is not None:
        engine = target.factory()
        engine.max_concurrent_steps = limit
        for p, c in caps.items():
            engine.set_pool_capacity(p, c)
        try:
            return await _batch(engine, target.workflow_name, n, tag, initial_input)
        finally:
            engine.close()
    if target.engine is not None:
        engine = target.engine
        saved_limit = engine.max_concurrent_steps
        saved_caps = {p: engine.resource_manager.capacity(p) for p in caps}
        engine.max_concurrent_steps = limit
        for p, c in caps.items():
            engine.set_pool_capacity(p, c)
        try:
            return await _batch(engine, target.workflow_name, n, tag, initial_input)
        finally:
            engine.max_concurrent_steps = saved_limit
            for p, c in saved_caps.items():
                engine.set_pool_capacity(p, c)
    from yukkuri_nb.core import RealClock

    engine = _sleep_engine(target, limit, caps, RealClock(), time_scale, n)
    try:
        return await _batch(engine, target.workflow_name, n, tag, initial_input)
    finally:
        engine.close()


def _row(target: _Target, limit: int, overrides: Mapping[str, int], caps: Mapping[str, int], n: int,
         time_scale: float, mode: str, measured: dict[str, Any], results: list, wall: float) -> dict[str, Any]:
    from yukkuri_nb.core.plan import makespan_lower_bound, simulate_schedule

    graph = target.graph
    span = measured["makespan"]
    bound = makespan_lower_bound([graph] * n, limit, caps.get, target.default_capacity) * time_scale
    planned = max((s.end for s in simulate_schedule([graph] * n, limit, caps, default_capacity=target.default_capacity)),
                  default=0.0) * time_scale
    completed = sum(1 for r in results if r.is_successful)
    row: dict[str, Any] = {
        "max_concurrent_steps": limit,
        "pool_setting": _label(overrides),
        "projects": n,
        "mode": mode,
        "makespan": span,
        "lower_bound": bound,
        "efficiency": bound / span if span else math.nan,
        "planned_makespan": planned,
        "runs_per_hour": 3600.0 * completed / span if span else math.nan,
        "steps_per_minute": 60.0 * sum(r.completed_steps for r in results) / span if span else math.nan,
        "mean_concurrency": measured["busy"] / span if span else math.nan,
        "completed_runs": completed,
        "failed_runs": len(results) - completed,
        "wall_seconds": wall,
    }
    for p in sorted(caps):
        row[f"capacity_{p}"] = caps[p]
    for p in sorted(caps):
        busy = measured["pool_busy"].get(p, 0.0)
        row[f"utilisation_{p}"] = busy / (caps[p] * span) if span and caps[p] else math.nan
    return row


async def sweep_async(
    source: Any,
    *,
    max_concurrent_values: Iterable[int],
    pool_capacities: Sequence[Mapping[str, int] | None] | Mapping[str, int] | None = None,
    projects: int = 10,
    mode: str = "simulate",
    workflow_name: str | None = None,
    time_scale: float = 1.0,
    initial_input: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Awaitable :func:`sweep`: keeps a notebook's widgets live during a real sweep (same parameters)."""
    plan = _prepare(source, max_concurrent_values, pool_capacities, projects, mode, workflow_name, time_scale)
    target, limits, cap_settings = plan
    if mode == "simulate":
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: _simulate_all(target, limits, cap_settings, projects, time_scale, initial_input))
    rows = []
    for k, overrides in enumerate(cap_settings):
        caps = {**target.base_caps, **overrides}
        for limit in limits:
            t0 = time.perf_counter()
            events, results = await _one_real(target, limit, caps, projects, time_scale, f"sweep-{k}-{limit}", initial_input)
            rows.append(_row(target, limit, overrides, caps, projects, time_scale, mode,
                             _measure(events, results, target.graph, caps), results, time.perf_counter() - t0))
    return _frame(rows)


def sweep(
    source: Any,
    *,
    max_concurrent_values: Iterable[int],
    pool_capacities: Sequence[Mapping[str, int] | None] | Mapping[str, int] | None = None,
    projects: int = 10,
    mode: str = "simulate",
    workflow_name: str | None = None,
    time_scale: float = 1.0,
    initial_input: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Run a batch of ``projects`` runs per setting and tabulate how fast it went.

    Parameters:
        source: a ``WorkflowEngine`` (its workflow, capacities and, for
            ``mode="real"``, processors; its limits are restored afterwards),
            a zero-argument engine factory (a fresh engine per real setting),
            a ``WorkflowGraph`` (``engine.get_workflow(name)``), or a list of
            ``WorkflowStepDefinition``.
        max_concurrent_values: the ``max_concurrent_steps`` values to try.
        pool_capacities: capacity settings to try, each a dict pool -> units
            overriding the source's capacities (``None`` or ``{}``: unchanged).
        projects: runs started together per setting (distinct project ids).
        mode: ``"simulate"`` (virtual clock, estimated durations) or ``"real"``.
        workflow_name: which workflow of an engine (needed if it has several).
        time_scale: durations are ``estimated_duration * time_scale`` for the
            simulation and for sleep-based real runs; makespans and bounds are
            in those scaled seconds.
        initial_input: passed to every run.

    Returns a frame with one row per (pool setting, limit): ``max_concurrent_steps``,
    ``pool_setting`` (label), ``projects``, ``mode``, ``makespan`` (s),
    ``lower_bound`` (max of the critical path, total work / limit and each
    pool's work / capacity), ``efficiency`` (lower_bound / makespan),
    ``planned_makespan`` (the planner's prediction, ``simulate_schedule``),
    ``runs_per_hour``, ``steps_per_minute``, ``mean_concurrency``,
    ``completed_runs``, ``failed_runs``, ``wall_seconds`` (what computing the
    row cost), then ``capacity_<pool>`` and ``utilisation_<pool>`` (0..1) per
    pool.  Plot it with :func:`yukkuri_nb.viz.sweep_chart`.

    Raises :class:`SweepError` (a ``ValueError``) for bad values or an
    ambiguous workflow.  In a running event loop (Jupyter) a blocking call
    runs in a worker thread; prefer ``await sweep_async(...)`` for real runs.
    """
    if mode == "real":
        return _run_blocking(lambda: asyncio.run(sweep_async(
            source, max_concurrent_values=max_concurrent_values, pool_capacities=pool_capacities,
            projects=projects, mode=mode, workflow_name=workflow_name, time_scale=time_scale,
            initial_input=initial_input,
        )))
    target, limits, cap_settings = _prepare(source, max_concurrent_values, pool_capacities, projects, mode, workflow_name, time_scale)
    return _run_blocking(lambda: _simulate_all(target, limits, cap_settings, projects, time_scale, initial_input))


def _prepare(source: Any, values: Iterable[int], caps: Any, projects: int, mode: str, workflow_name: str | None,
             time_scale: float) -> tuple[_Target, list[int], list[dict[str, int]]]:
    if mode not in ("simulate", "real"):
        raise SweepError(f"mode must be 'simulate' or 'real', got {mode!r}")
    if isinstance(projects, bool) or not isinstance(projects, int) or projects < 1:
        raise SweepError(f"projects must be an int >= 1, got {projects!r}")
    if not (isinstance(time_scale, (int, float)) and time_scale > 0):
        raise SweepError(f"time_scale must be a number > 0, got {time_scale!r}")
    return _Target(source, workflow_name), _check_values(values), _check_caps(caps)


def _simulate_all(target: _Target, limits: list[int], cap_settings: list[dict[str, int]], n: int,
                  time_scale: float, initial_input: Mapping[str, Any] | None) -> pd.DataFrame:
    from yukkuri_nb.core import VirtualClock

    rows = []
    for k, overrides in enumerate(cap_settings):
        caps = {**target.base_caps, **overrides}
        for limit in limits:
            t0 = time.perf_counter()
            clock = VirtualClock()
            engine = _sleep_engine(target, limit, caps, clock, time_scale, n)
            try:
                events, results = clock.run(_batch(engine, target.workflow_name, n, f"sim-{k}-{limit}", initial_input))
            finally:
                engine.close()
            rows.append(_row(target, limit, overrides, caps, n, time_scale, "simulate",
                             _measure(events, results, target.graph, caps), results, time.perf_counter() - t0))
    return _frame(rows)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df.attrs["kind"] = "sweep"
    return df
