"""pandas frames of recorded runs: events, steps, attempts and pauses.

Every function here takes a *source*:

* a :class:`~yukkuri_nb.core.WorkflowEngine` (all of its known projects, or
  those named by ``project_ids``: the latest run of each, live or finished);
* a :class:`~yukkuri_nb.core.RunHandle` (its run);
* a :class:`~yukkuri_nb.core.WorkflowExecutionResult` (its steps' recorded
  attempts; pass ``engine=`` to add display names, estimates and pools);
* a list of :class:`~yukkuri_nb.core.Event` (or their ``to_dict()`` form, as
  a run store keeps them), possibly of several runs;
* a run store: an :class:`~yukkuri_nb.core.store.SQLiteRunStore`, or the
  path of its file (a :class:`pathlib.Path`, or a ``str`` naming an existing
  file; opened read-only): every stored run, oldest first, or those of
  ``project_ids``.  Runs written by other processes have their own clock, so
  compare them by ``t`` and ``started``, not ``time`` / ``run_start``;
* a list mixing any of the above (a batch).

Times: ``time`` is the engine clock's monotonic seconds; ``t``, ``queued``,
``started`` and ``finished`` are seconds since the start of their run, and
``run_start`` is that start on the engine clock, so ``run_start + started``
puts runs of one engine on one time line.  Frames of several runs (or several
calls) concatenate with :func:`pandas.concat`; the metrics in
:mod:`~yukkuri_nb.analysis.metrics` accept such concatenations.

Frame ``attrs`` carry what the frame alone cannot say, when the source knows
it: ``max_concurrent_steps``, ``pool_capacities`` (pool -> units),
``critical_paths`` (workflow -> step names) and ``paused`` (list of
``(project_id, start, end)`` on the engine clock).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import pandas as pd

__all__ = [
    "events_frame",
    "steps_frame",
    "attempts_frame",
    "paused_frame",
    "collect_runs",
    "RunRecord",
    "EVENT_COLUMNS",
    "STEP_COLUMNS",
    "ATTEMPT_COLUMNS",
]

EVENT_COLUMNS = ["seq", "time", "t", "kind", "project_id", "workflow_name", "run_id", "step"]
STEP_COLUMNS = [
    "project_id", "workflow_name", "run_id", "step", "display_name", "status",
    "queued", "started", "finished", "wait", "duration", "busy", "estimate",
    "attempts", "pools", "slot", "error", "priority", "restored", "run_start",
]
ATTEMPT_COLUMNS = [
    "project_id", "workflow_name", "run_id", "step", "display_name", "attempt", "status",
    "started", "finished", "duration", "slot", "pools", "error", "run_start",
]
PAUSE_COLUMNS = ["project_id", "run_id", "start", "end", "run_start"]

_NAN = float("nan")


class _Ev(NamedTuple):
    seq: int
    time: float
    kind: str
    project_id: str | None
    workflow_name: str | None
    step: str | None
    data: Mapping[str, Any]


@dataclass
class RunRecord:
    """One run as the analysis sees it (internal, but stable enough to build on).

    ``start`` / ``end`` are engine-clock seconds; ``events`` is ``None`` for a
    run known only from its :class:`WorkflowExecutionResult`.
    """

    project_id: str
    workflow_name: str | None
    run_id: str | None
    start: float
    end: float
    events: list[_Ev] | None = None
    result: Any = None
    graph: Any = None
    max_concurrent_steps: int | None = None
    capacity: Callable[[str], int] | None = None
    engine_events: list[_Ev] = field(default_factory=list)


# --------------------------------------------------------------------------- sources
def _is_engine(obj: Any) -> bool:
    return callable(getattr(obj, "events", None)) and hasattr(obj, "project_ids") and hasattr(obj, "get_workflow")


def _is_handle(obj: Any) -> bool:
    return _is_engine(getattr(obj, "engine", None)) and isinstance(getattr(obj, "project_id", None), str)


def _is_result(obj: Any) -> bool:
    return hasattr(obj, "step_results") and hasattr(obj, "workflow_name") and hasattr(obj, "project_id")


def _as_ev(obj: Any) -> _Ev | None:
    if isinstance(obj, Mapping):
        if "kind" not in obj or "seq" not in obj:
            return None
        kind = obj["kind"]
        return _Ev(int(obj["seq"]), float(obj["time"]), str(getattr(kind, "value", kind)), obj.get("project_id"),
                   obj.get("workflow_name"), obj.get("step"), obj.get("data") or {})
    kind = getattr(obj, "kind", None)
    if kind is None or not hasattr(obj, "seq"):
        return None
    return _Ev(obj.seq, obj.time, str(getattr(kind, "value", kind)), obj.project_id, obj.workflow_name, obj.step, obj.data or {})


def _graph_of(engine: Any, workflow_name: str | None) -> Any:
    if engine is None or not workflow_name:
        return None
    try:
        return engine.get_workflow(workflow_name)
    except Exception:  # re-registered or unknown: analyse without it
        return None


def _engine_limits(engine: Any) -> tuple[int | None, Callable[[str], int] | None]:
    if engine is None:
        return None, None
    rm = getattr(engine, "resource_manager", None)
    return getattr(engine, "max_concurrent_steps", None), getattr(rm, "capacity", None)


def _runs_from_events(events: Sequence[_Ev], engine: Any = None) -> list[RunRecord]:
    """Split events into runs: per project, a new run at every ``run_started``."""
    limit, capacity = _engine_limits(engine)
    engine_level = [e for e in events if e.project_id is None]
    runs: list[RunRecord] = []
    current: dict[str, RunRecord] = {}
    for ev in sorted((e for e in events if e.project_id is not None), key=lambda e: e.seq):
        rec = current.get(ev.project_id)
        if rec is None or ev.kind == "run_started":
            rec = RunRecord(
                project_id=ev.project_id, workflow_name=ev.workflow_name,
                run_id=ev.data.get("run_id") if ev.kind == "run_started" else None,
                start=ev.time, end=ev.time, events=[],
                graph=_graph_of(engine, ev.workflow_name), max_concurrent_steps=limit, capacity=capacity,
                engine_events=engine_level,
            )
            current[ev.project_id] = rec
            runs.append(rec)
        rec.events.append(ev)
        rec.end = max(rec.end, ev.time)
    return runs


def _as_store(obj: Any) -> Any:
    """``(store, opened_here)`` if ``obj`` is a run store or the path of one, else ``(None, False)``."""
    if isinstance(obj, os.PathLike) or (isinstance(obj, str) and os.path.isfile(obj)):
        from yukkuri_nb.core.store import SQLiteRunStore

        return SQLiteRunStore(obj, readonly=True), True
    if callable(getattr(obj, "list_runs", None)) and callable(getattr(obj, "events", None)) and not _is_engine(obj):
        return obj, False
    return None, False


def _runs_from_store(store: Any, wanted: list[str] | None, engine: Any = None) -> list[RunRecord]:
    runs: list[RunRecord] = []
    for row in reversed(store.list_runs()):  # list_runs is newest first
        if wanted is not None and row["project_id"] not in wanted:
            continue
        evs = [e for e in (_as_ev(x) for x in store.events(row["run_id"])) if e is not None]
        for rec in _runs_from_events(evs, engine):
            rec.run_id = rec.run_id or row["run_id"]
            runs.append(rec)
    return runs


def _run_from_result(result: Any, engine: Any = None) -> RunRecord:
    limit, capacity = _engine_limits(engine)
    times = [(a.started_at, a.finished_at) for r in result.step_results.values() for a in (r.attempt_history or [])]
    start = min((s for s, _ in times), default=0.0)
    end = max((e for _, e in times), default=start)
    return RunRecord(
        project_id=result.project_id, workflow_name=result.workflow_name, run_id=getattr(result, "run_id", None),
        start=start, end=end, result=result, graph=_graph_of(engine, result.workflow_name),
        max_concurrent_steps=limit, capacity=capacity,
    )


def _run_order(run: RunRecord) -> tuple[float, int]:
    return (run.start, run.events[0].seq if run.events else 0)


def collect_runs(source: Any, project_ids: Iterable[str] | str | None = None, *, engine: Any = None) -> list[RunRecord]:
    """The runs of ``source`` (see the module docstring for what a source may be).

    ``project_ids`` narrows an engine (or a list of events) to those projects.
    Raises ``TypeError`` naming the object when it is none of the known sources.
    """
    if isinstance(project_ids, str):
        project_ids = [project_ids]
    wanted = None if project_ids is None else list(project_ids)
    if isinstance(source, RunRecord):
        return [source] if wanted is None or source.project_id in wanted else []
    if _is_engine(source):
        pids = wanted if wanted is not None else list(source.project_ids)
        runs = []
        for pid in pids:
            evs = [e for e in (_as_ev(x) for x in source.events(pid)) if e is not None]
            runs.extend(_runs_from_events(evs, source))
        return sorted(runs, key=_run_order)
    if _is_handle(source):
        return collect_runs(source.engine, [source.project_id])
    if _is_result(source):
        return [_run_from_result(source, engine)]
    store, opened = _as_store(source)
    if store is not None:
        try:
            return _runs_from_store(store, wanted, engine)
        finally:
            if opened:
                store.close()
    if isinstance(source, (str, bytes, Mapping)) or not isinstance(source, Iterable):
        raise TypeError(
            f"cannot analyse {type(source).__name__} {source!r:.60}; pass a WorkflowEngine, a RunHandle, "
            "a WorkflowExecutionResult, a run store (or the path of its file), a list of events, or a list of those"
        )
    runs: list[RunRecord] = []
    loose: list[_Ev] = []
    for item in source:
        ev = _as_ev(item)
        if ev is not None:
            loose.append(ev)
        else:
            runs.extend(collect_runs(item, wanted, engine=engine))
    if loose:
        runs.extend(_runs_from_events(loose, engine))
    if wanted is not None:
        runs = [r for r in runs if r.project_id in wanted]
    return sorted(runs, key=_run_order)


def _step_info(graph: Any) -> dict[str, dict[str, Any]]:
    if graph is None:
        return {}
    return {
        s.name: {
            "display_name": s.display_name or s.name,
            "estimate": float(s.estimated_duration),
            "pools": tuple(sorted(s.required_resources)),
            "priority": int(s.priority),
        }
        for s in graph.steps
    }


# --------------------------------------------------------------------------- per-run reconstruction
@dataclass
class _Attempt:
    attempt: int
    start: float
    end: float | None = None
    slot: int | None = None
    pools: tuple[str, ...] = ()
    status: str = "running"
    error: str | None = None


@dataclass
class _Step:
    status: str = "pending"
    queued: float | None = None
    attempts: list[_Attempt] = field(default_factory=list)
    error: str | None = None
    restored: bool = False


def _replay(run: RunRecord) -> dict[str, _Step]:
    """Per step: status, queue time and attempts, in engine-clock seconds."""
    steps: dict[str, _Step] = {}
    if run.events is None:
        for name, r in run.result.step_results.items():
            st = steps.setdefault(name, _Step())
            st.status = str(getattr(r.status, "value", r.status))
            st.error = r.error_message
            for a in r.attempt_history or []:
                st.attempts.append(_Attempt(a.attempt, a.started_at, a.finished_at, None, (),
                                            str(getattr(a.status, "value", a.status)), a.error_message))
            st.restored = name in (getattr(run.result, "resumed_steps", None) or [])
        return steps
    for ev in run.events:
        if ev.step is None:
            continue
        st = steps.setdefault(ev.step, _Step())
        kind, data = ev.kind, ev.data
        open_ = st.attempts[-1] if st.attempts and st.attempts[-1].end is None else None
        if kind == "step_queued":
            st.status = "ready"
            if st.queued is None:
                st.queued = ev.time
        elif kind == "step_started":
            st.status = "running"
            st.attempts.append(_Attempt(int(data.get("attempt", len(st.attempts) + 1)), ev.time,
                                        slot=data.get("slot"), pools=tuple(data.get("pools") or ())))
        elif kind == "step_completed":
            st.status = "completed"
            st.error = None  # earlier attempts' errors stay in attempts_frame
            if data.get("restored"):
                st.restored = True
            elif open_ is not None:
                open_.end, open_.status = ev.time, "completed"
        elif kind in ("step_failed", "step_retrying"):
            st.status = "failed" if kind == "step_failed" else "retrying"
            st.error = data.get("error") or st.error
            if open_ is not None:
                open_.end, open_.status, open_.error = ev.time, "failed", data.get("error")
        elif kind == "step_cancelled":
            st.status = "cancelled"
            st.error = data.get("reason") or "cancelled"
            if open_ is not None:
                open_.end, open_.status = ev.time, "cancelled"
        elif kind == "step_skipped":
            st.status = "skipped"
            st.error = data.get("reason")
    return steps


def _rel(x: float | None, origin: float) -> float:
    return _NAN if x is None else x - origin


def _pauses(run: RunRecord) -> list[tuple[float, float]]:
    """Paused intervals of a run on the engine clock (an unmatched pause ends with the run)."""
    out: list[tuple[float, float]] = []
    since: float | None = None
    for ev in run.events or ():
        if ev.kind == "paused" and since is None:
            since = ev.time
        elif ev.kind in ("resumed", "run_finished", "cancel_requested") and since is not None:
            out.append((since, ev.time))
            since = None
    if since is not None:
        out.append((since, run.end))
    return out


def _attrs(runs: Sequence[RunRecord]) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    limits = {r.max_concurrent_steps for r in runs if r.max_concurrent_steps}
    if len(limits) == 1:
        attrs["max_concurrent_steps"] = limits.pop()
    caps: dict[str, int] = {}
    crit: dict[str, list[str]] = {}
    for r in runs:
        if r.graph is not None:
            crit.setdefault(r.graph.name, list(r.graph.critical_path))
            if r.capacity is not None:
                for pool in r.graph.resource_requirements:
                    caps[pool] = int(r.capacity(pool))
    if caps:
        attrs["pool_capacities"] = caps
    if crit:
        attrs["critical_paths"] = crit
    attrs["paused"] = [(r.project_id, s, e) for r in runs for s, e in _pauses(r)]
    return attrs


# --------------------------------------------------------------------------- frames
def events_frame(source: Any, project_id: str | Iterable[str] | None = None) -> pd.DataFrame:
    """One row per event, in ``seq`` order.

    Columns: ``seq``, ``time`` (engine clock), ``t`` (seconds since its run
    started), ``kind`` (the event kind's value, e.g. ``"step_started"``),
    ``project_id``, ``workflow_name``, ``run_id``, ``step``, then one column
    per key of the events' ``data`` (``attempt``, ``slot``, ``pools``,
    ``duration``, ``error``, ``delay``, ``fraction``, ``status``, ...; a key
    that clashes with a column above is prefixed ``data_``).

    ``engine.history(project_id)`` returns this; ``project_id=None`` means
    every project the engine knows.  Raises ``TypeError`` for an unknown source.
    """
    runs = collect_runs(source, project_id)
    rows: list[dict[str, Any]] = []
    seen_engine: set[int] = set()
    origin = min((r.start for r in runs), default=0.0)
    for run in runs:
        if run.events is None:
            continue
        run_id = run.run_id
        for ev in run.events:
            rows.append(_event_row(ev, ev.time - run.start, run_id))
        for ev in run.engine_events:
            if ev.seq not in seen_engine:
                seen_engine.add(ev.seq)
                rows.append(_event_row(ev, ev.time - origin, None))
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=EVENT_COLUMNS)
    else:
        extra = [c for c in df.columns if c not in EVENT_COLUMNS]
        df = df[EVENT_COLUMNS + extra].sort_values("seq", kind="stable").reset_index(drop=True)
    df.attrs.update(_attrs(runs))
    return df


def _event_row(ev: _Ev, t: float, run_id: str | None) -> dict[str, Any]:
    row = {
        "seq": ev.seq, "time": ev.time, "t": t, "kind": ev.kind, "project_id": ev.project_id,
        "workflow_name": ev.workflow_name, "run_id": run_id, "step": ev.step,
    }
    for key, value in ev.data.items():
        if key == "run_id":
            row["run_id"] = value
            continue
        if isinstance(value, list):
            value = tuple(value)
        row[f"data_{key}" if key in row else key] = value
    return row


def steps_frame(source: Any, project_ids: str | Iterable[str] | None = None, *, engine: Any = None) -> pd.DataFrame:
    """One row per step of each run.

    Columns: ``project_id``, ``workflow_name``, ``run_id``, ``step``,
    ``display_name``, ``status`` (value string), ``queued`` / ``started`` /
    ``finished`` (seconds since the run started: first queued, first attempt
    started, last attempt ended; NaN if it did not happen), ``wait``
    (started - queued), ``duration`` (of the last attempt, as the
    ``StepResult`` reports it), ``busy`` (all attempts), ``estimate``
    (``estimated_duration``), ``attempts``, ``pools`` (tuple), ``slot``
    (concurrency slot of the last attempt), ``error``, ``priority``,
    ``restored`` (taken from a run store, not executed), ``run_start``.

    A result has no queue times or slots (NaN / <NA>).  ``engine`` adds display
    names, estimates and pools to runs known from results or events only.
    """
    runs = collect_runs(source, project_ids, engine=engine)
    rows = []
    for run in runs:
        info = _step_info(run.graph)
        replayed = _replay(run)
        names = list(info) + [n for n in replayed if n not in info]
        for name in names:
            st = replayed.get(name, _Step())
            meta = info.get(name, {})
            first = st.attempts[0] if st.attempts else None
            last = st.attempts[-1] if st.attempts else None
            started = _rel(first.start if first else None, run.start)
            queued = _rel(st.queued, run.start)
            ended = [a for a in st.attempts if a.end is not None]
            rows.append({
                "project_id": run.project_id,
                "workflow_name": run.workflow_name,
                "run_id": run.run_id,
                "step": name,
                "display_name": meta.get("display_name", name),
                "status": st.status,
                "queued": queued,
                "started": started,
                "finished": _rel(last.end if last else None, run.start),
                "wait": started - queued if not (math.isnan(started) or math.isnan(queued)) else _NAN,
                "duration": (last.end - last.start) if last and last.end is not None else _NAN,
                "busy": sum(a.end - a.start for a in ended) if ended else _NAN,
                "estimate": meta.get("estimate", _NAN),
                "attempts": len(st.attempts),
                "pools": meta.get("pools") or (last.pools if last else ()),
                "slot": last.slot if last else None,
                "error": st.error,
                "priority": meta.get("priority"),
                "restored": st.restored,
                "run_start": run.start,
            })
    df = pd.DataFrame(rows, columns=STEP_COLUMNS)
    df["slot"] = df["slot"].astype("Int64")
    df["priority"] = df["priority"].astype("Int64")
    df["attempts"] = df["attempts"].astype(int)
    df["restored"] = df["restored"].astype(bool)
    df.attrs.update(_attrs(runs))
    return df


def attempts_frame(source: Any, project_ids: str | Iterable[str] | None = None, *, engine: Any = None) -> pd.DataFrame:
    """One row per attempt of each step (what Gantt charts and concurrency use).

    Columns: ``project_id``, ``workflow_name``, ``run_id``, ``step``,
    ``display_name``, ``attempt``, ``status`` (completed / failed / cancelled,
    or running while open), ``started``, ``finished`` (NaN while running),
    ``duration``, ``slot``, ``pools``, ``error``, ``run_start``.
    """
    runs = collect_runs(source, project_ids, engine=engine)
    rows = []
    for run in runs:
        info = _step_info(run.graph)
        for name, st in _replay(run).items():
            meta = info.get(name, {})
            for a in st.attempts:
                rows.append({
                    "project_id": run.project_id,
                    "workflow_name": run.workflow_name,
                    "run_id": run.run_id,
                    "step": name,
                    "display_name": meta.get("display_name", name),
                    "attempt": a.attempt,
                    "status": a.status,
                    "started": a.start - run.start,
                    "finished": _rel(a.end, run.start),
                    "duration": (a.end - a.start) if a.end is not None else _NAN,
                    "slot": a.slot,
                    "pools": a.pools or meta.get("pools", ()),
                    "error": a.error,
                    "run_start": run.start,
                })
    df = pd.DataFrame(rows, columns=ATTEMPT_COLUMNS)
    df["slot"] = df["slot"].astype("Int64")
    df = df.sort_values(["run_start", "started"], kind="stable").reset_index(drop=True)
    df.attrs.update(_attrs(runs))
    return df


def paused_frame(source: Any, project_ids: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Paused intervals: ``project_id``, ``run_id``, ``start``, ``end`` (seconds since the run started), ``run_start``."""
    runs = collect_runs(source, project_ids)
    rows = [
        {"project_id": r.project_id, "run_id": r.run_id, "start": s - r.start, "end": e - r.start, "run_start": r.start}
        for r in runs
        for s, e in _pauses(r)
    ]
    return pd.DataFrame(rows, columns=PAUSE_COLUMNS)
