"""Metrics derived from recorded runs: makespan, throughput, concurrency, pool use.

Each function takes a source (an engine, a handle, a result, a list of events
or of those; see :mod:`~yukkuri_nb.analysis.frames`) or a frame made by
:func:`~yukkuri_nb.analysis.steps_frame` / :func:`~yukkuri_nb.analysis.attempts_frame`
(also a concatenation of several).  Time ``t`` is seconds since the earliest
run of the batch started.  From a steps frame a retried step counts as busy
from its first start to its last end; from any other source, attempts are
counted exactly (retry delays are not busy time).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import pandas as pd

from .frames import attempts_frame, collect_runs

__all__ = [
    "makespan",
    "throughput",
    "concurrency_over_time",
    "pool_usage_over_time",
    "pool_utilisation",
    "summary",
    "busy_intervals",
]


def _frame_kind(df: pd.DataFrame) -> str:
    if {"attempt", "started", "finished", "run_start"} <= set(df.columns):
        return "attempts"
    if {"step", "started", "finished", "run_start"} <= set(df.columns):
        return "steps"
    raise ValueError(
        f"a frame with columns {list(df.columns)[:8]} is neither a steps frame nor an attempts frame; "
        "pass steps_frame(...) or attempts_frame(...) (or the engine / result itself)"
    )


def busy_intervals(source: Any) -> pd.DataFrame:
    """Intervals during which a step held a slot, on the batch time line.

    Columns: ``project_id``, ``workflow_name``, ``run_id``, ``step``, ``display_name``, ``status``,
    ``start``, ``end`` (seconds since the batch started; a running attempt ends
    at the last recorded event), ``slot``, ``pools``.  ``attrs`` carries
    ``horizon`` (the end of the batch), ``origin`` (its start on the engine
    clock) and the source frame's attrs.
    """
    horizon = None
    if isinstance(source, pd.DataFrame) and {"start", "end", "pools"} <= set(source.columns) and "run_start" not in source:
        return source  # already intervals
    if isinstance(source, pd.DataFrame):
        df = source
        kind = _frame_kind(df)
    else:
        runs = collect_runs(source)
        df = attempts_frame(runs)
        kind = "attempts"
        if runs:
            origin = min(r.start for r in runs)
            horizon = max(r.end for r in runs) - origin
    cols = ["project_id", "workflow_name", "run_id", "step", "display_name", "status", "start", "end", "slot", "pools"]
    if df.empty:
        out = pd.DataFrame(columns=cols)
        out.attrs.update(df.attrs)
        out.attrs["horizon"] = horizon or 0.0
        return out
    origin = df["run_start"].min()
    shift = df["run_start"] - origin
    start = shift + df["started"]
    end = shift + df["finished"]
    if kind == "steps":
        keep = start.notna()
    else:
        keep = pd.Series(True, index=df.index)
    last = pd.concat([start, end]).max()
    if horizon is None:
        horizon = float(last) if pd.notna(last) else 0.0
    end = end.fillna(horizon)
    out = pd.DataFrame({
        "project_id": df["project_id"], "workflow_name": df["workflow_name"], "run_id": df["run_id"], "step": df["step"],
        "display_name": df["display_name"], "status": df["status"], "start": start, "end": end,
        "slot": df["slot"], "pools": df["pools"],
    })[keep].reset_index(drop=True)
    out.attrs.update(df.attrs)
    out.attrs["horizon"] = float(horizon)
    out.attrs["origin"] = float(origin)
    return out


def makespan(source: Any) -> float:
    """Seconds from the first run's start to the last step's end (0.0 for nothing recorded)."""
    if not isinstance(source, pd.DataFrame):
        runs = collect_runs(source)
        if not runs:
            return 0.0
        return max(r.end for r in runs) - min(r.start for r in runs)
    iv = busy_intervals(source)
    return float(iv.attrs.get("horizon", 0.0))


def _step_function(changes: list[tuple[float, int]]) -> tuple[list[float], list[int]]:
    # Ends sort before starts at the same instant (delta -1 < +1): a slot freed
    # and refilled at one time never shows as one step too many.
    changes.sort()
    ts: list[float] = [0.0]
    vals: list[int] = [0]
    level = 0
    for t, d in changes:
        level += d
        if ts and ts[-1] == t:
            vals[-1] = level
        else:
            ts.append(t)
            vals.append(level)
    return ts, vals


def concurrency_over_time(source: Any, *, limit: int | None = None) -> pd.DataFrame:
    """Steps running at once, as a step function.

    Columns: ``t`` (seconds since the batch started), ``running`` (steps
    running from ``t`` until the next row), ``limit`` (``max_concurrent_steps``:
    ``limit`` if given, else the engine's, else NaN).
    """
    iv = busy_intervals(source)
    changes = [(float(s), 1) for s in iv["start"]] + [(float(e), -1) for e in iv["end"]]
    ts, vals = _step_function(changes)
    lim = limit if limit is not None else iv.attrs.get("max_concurrent_steps")
    out = pd.DataFrame({"t": ts, "running": vals, "limit": float(lim) if lim else math.nan})
    out.attrs["horizon"] = iv.attrs.get("horizon", 0.0)
    return out


def pool_usage_over_time(source: Any, capacities: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Units in use per pool, as step functions.

    Columns: ``pool``, ``t``, ``in_use`` (from ``t`` until the pool's next
    row), ``capacity`` (from ``capacities``, else the engine's, else NaN).
    """
    iv = busy_intervals(source)
    caps = {**iv.attrs.get("pool_capacities", {}), **(capacities or {})}
    per_pool: dict[str, list[tuple[float, int]]] = {}
    for s, e, pools in zip(iv["start"], iv["end"], iv["pools"]):
        for p in pools or ():
            per_pool.setdefault(p, []).extend([(float(s), 1), (float(e), -1)])
    frames = []
    for pool in sorted(per_pool):
        ts, vals = _step_function(per_pool[pool])
        frames.append(pd.DataFrame({"pool": pool, "t": ts, "in_use": vals, "capacity": float(caps.get(pool, math.nan))}))
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["pool", "t", "in_use", "capacity"])
    out.attrs["horizon"] = iv.attrs.get("horizon", 0.0)
    return out


def pool_utilisation(source: Any, capacities: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Per pool: how busy it was over the batch.

    Columns: ``pool``, ``capacity``, ``steps`` (attempts that held it),
    ``busy_seconds`` (unit-seconds held), ``mean_in_use`` (busy / makespan),
    ``peak_in_use``, ``utilisation`` (busy / (capacity x makespan), 0..1; NaN
    without a capacity), ``wait_seconds`` (time steps needing the pool spent
    ready but not started: a high value marks a bottleneck; NaN from results,
    which carry no queue times).  ``capacities`` overrides the engine's.
    """
    iv = busy_intervals(source)
    horizon = iv.attrs.get("horizon", 0.0)
    caps = {**iv.attrs.get("pool_capacities", {}), **(capacities or {})}
    usage = pool_usage_over_time(iv, caps) if not iv.empty else None
    waits: dict[str, float] = {}
    if not isinstance(source, pd.DataFrame) or _frame_kind(source) == "steps":
        from .frames import steps_frame

        sf = source if isinstance(source, pd.DataFrame) else steps_frame(source)
        for pools, w in zip(sf["pools"], sf["wait"]):
            for p in pools or ():
                if pd.notna(w):
                    waits[p] = waits.get(p, 0.0) + float(w)
                else:
                    waits.setdefault(p, math.nan)
    rows = []
    pools = sorted({p for ps in iv["pools"] for p in (ps or ())} | set(caps))
    for pool in pools:
        held = iv[[pool in (ps or ()) for ps in iv["pools"]]]
        busy = float((held["end"] - held["start"]).sum()) if not held.empty else 0.0
        peak = 0
        if usage is not None and not usage.empty:
            peak = int(usage.loc[usage["pool"] == pool, "in_use"].max() or 0) if (usage["pool"] == pool).any() else 0
        cap = caps.get(pool)
        rows.append({
            "pool": pool,
            "capacity": cap if cap is not None else math.nan,
            "steps": len(held),
            "busy_seconds": busy,
            "mean_in_use": busy / horizon if horizon else math.nan,
            "peak_in_use": peak,
            "utilisation": busy / (cap * horizon) if cap and horizon else math.nan,
            "wait_seconds": waits.get(pool, math.nan),
        })
    return pd.DataFrame(rows, columns=["pool", "capacity", "steps", "busy_seconds", "mean_in_use",
                                       "peak_in_use", "utilisation", "wait_seconds"])


def throughput(source: Any, *, bins: int = 20, window: float | None = None) -> pd.DataFrame:
    """Completed steps and runs over time, in fixed windows.

    Parameters:
        bins: number of windows over the makespan (ignored if ``window`` is given).
        window: window length in seconds.

    Columns: ``start``, ``end`` (seconds since the batch started),
    ``steps`` (steps completed in the window), ``steps_per_minute``,
    ``cumulative_steps``, ``cumulative_runs`` (runs whose every step had
    completed by ``end``).  Raises ``ValueError`` for ``bins < 1`` or
    ``window <= 0``.
    """
    from .frames import steps_frame

    if window is None and bins < 1:
        raise ValueError(f"throughput() needs bins >= 1, got {bins!r}")
    if window is not None and not window > 0:
        raise ValueError(f"throughput() needs window > 0 seconds, got {window!r}")
    sf = source if isinstance(source, pd.DataFrame) and _frame_kind(source) == "steps" else steps_frame(source)
    span = makespan(source)
    done = sf[sf["status"] == "completed"]
    origin = sf["run_start"].min() if not sf.empty else 0.0
    ends = (done["run_start"] - origin + done["finished"].fillna(0.0)).to_numpy()
    width = window if window is not None else (span / bins if span > 0 else 1.0)
    n = max(1, math.ceil(span / width - 1e-9)) if span > 0 else 1
    run_end = []
    for _, g in sf.groupby(["project_id", "run_id"], dropna=False, sort=False):
        if (g["status"] == "completed").all():
            run_end.append(float((g["run_start"] - origin + g["finished"].fillna(0.0)).max()))
    rows = []
    total = 0
    for k in range(n):
        lo, hi = k * width, (k + 1) * width
        last = k == n - 1
        count = int(((ends >= lo) & ((ends <= hi) if last else (ends < hi))).sum())
        total += count
        rows.append({
            "start": lo, "end": hi, "steps": count, "steps_per_minute": 60.0 * count / width,
            "cumulative_steps": total,
            "cumulative_runs": sum(1 for e in run_end if e <= hi or last),
        })
    return pd.DataFrame(rows, columns=["start", "end", "steps", "steps_per_minute", "cumulative_steps", "cumulative_runs"])


def summary(source: Any) -> dict[str, Any]:
    """Headline figures of a run or a batch, as a JSON-friendly dict.

    Keys: ``runs``, ``steps``, ``completed``, ``failed``, ``skipped``,
    ``cancelled``, ``makespan`` (s), ``runs_per_hour``, ``steps_per_minute``,
    ``mean_wait`` (s), ``total_busy`` (slot-seconds), ``mean_concurrency``,
    ``peak_concurrency``, ``max_concurrent_steps``, ``paused_seconds``,
    ``pool_utilisation`` (pool -> 0..1).
    """
    from .frames import steps_frame

    sf = source if isinstance(source, pd.DataFrame) and _frame_kind(source) == "steps" else steps_frame(source)
    span = makespan(source)
    iv = busy_intervals(source)
    conc = concurrency_over_time(iv)
    util = pool_utilisation(source)
    runs = sf.groupby(["project_id", "run_id"], dropna=False).ngroups if not sf.empty else 0
    counts = sf["status"].value_counts()
    completed_runs = sum(
        1 for _, g in sf.groupby(["project_id", "run_id"], dropna=False) if (g["status"] == "completed").all()
    ) if not sf.empty else 0
    busy = float((iv["end"] - iv["start"]).sum()) if not iv.empty else 0.0
    paused = sum(e - s for _, s, e in sf.attrs.get("paused", []))

    def num(x: Any) -> float | None:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    return {
        "runs": int(runs),
        "completed_runs": int(completed_runs),
        "steps": int(len(sf)),
        "completed": int(counts.get("completed", 0)),
        "failed": int(counts.get("failed", 0)),
        "skipped": int(counts.get("skipped", 0)),
        "cancelled": int(counts.get("cancelled", 0)),
        "makespan": float(span),
        "runs_per_hour": 3600.0 * completed_runs / span if span else None,
        "steps_per_minute": 60.0 * int(counts.get("completed", 0)) / span if span else None,
        "mean_wait": num(sf["wait"].mean()) if not sf.empty else None,
        "total_busy": busy,
        "mean_concurrency": busy / span if span else None,
        "peak_concurrency": int(conc["running"].max()) if not conc.empty else 0,
        "max_concurrent_steps": sf.attrs.get("max_concurrent_steps"),
        "paused_seconds": float(paused),
        "pool_utilisation": {p: num(u) for p, u in zip(util["pool"], util["utilisation"])},
    }
