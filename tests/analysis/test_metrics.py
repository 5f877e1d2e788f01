"""Derived metrics: makespan, concurrency, pool utilisation, throughput, summary."""

from __future__ import annotations

import pandas as pd
import pytest

from yukkuri_nb.analysis import (
    concurrency_over_time,
    makespan,
    pool_usage_over_time,
    pool_utilisation,
    steps_frame,
    summary,
    throughput,
)

from .workflows import diamond_engine, run_projects


def test_makespan_of_a_run_and_of_its_frame():
    engine, clock = diamond_engine()
    run_projects(engine, clock, "p1")
    assert makespan(engine) == 6.0
    assert makespan(steps_frame(engine)) == 6.0


def test_concurrency_is_a_step_function_that_never_counts_a_freed_slot_twice():
    engine, clock = diamond_engine()
    run_projects(engine, clock, "p1")
    conc = concurrency_over_time(engine)
    # b 0-2, a 2-3, c 3-6: a and c start the instant their predecessor ends
    assert conc[["t", "running"]].values.tolist() == [[0.0, 1], [2.0, 1], [3.0, 1], [6.0, 0]]
    assert set(conc["limit"]) == {2.0}
    assert set(concurrency_over_time(engine, limit=5)["limit"]) == {5.0}


def test_two_projects_use_both_slots_but_not_more():
    engine, clock = diamond_engine()
    run_projects(engine, clock, "p1", "p2")
    conc = concurrency_over_time(engine)
    assert conc["running"].max() == 2
    assert conc["running"].iloc[-1] == 0


def test_pool_utilisation_is_busy_time_over_capacity_times_makespan():
    engine, clock = diamond_engine()
    run_projects(engine, clock, "p1")
    util = pool_utilisation(engine).set_index("pool")
    assert util.loc["gpu", "capacity"] == 1
    assert util.loc["gpu", "busy_seconds"] == 3.0  # a (1 s) + b (2 s)
    assert util.loc["gpu", "utilisation"] == pytest.approx(0.5)
    assert util.loc["gpu", "peak_in_use"] == 1
    assert util.loc["gpu", "wait_seconds"] == 2.0  # a waited for b
    # a capacity override changes the denominator
    assert pool_utilisation(engine, {"gpu": 2}).set_index("pool").loc["gpu", "utilisation"] == pytest.approx(0.25)
    usage = pool_usage_over_time(engine)
    assert usage[["t", "in_use"]].values.tolist() == [[0.0, 1], [2.0, 1], [3.0, 0]]


def test_throughput_counts_every_completed_step_once():
    engine, clock = diamond_engine()
    run_projects(engine, clock, "p1", "p2")
    tp = throughput(engine, bins=4)
    assert tp["steps"].sum() == 6
    assert tp["cumulative_steps"].iloc[-1] == 6
    assert tp["cumulative_runs"].iloc[-1] == 2
    assert tp["end"].iloc[-1] == pytest.approx(makespan(engine))
    by_window = throughput(engine, window=1.0)
    assert by_window["steps"].sum() == 6
    assert (by_window["end"] - by_window["start"]).eq(1.0).all()
    with pytest.raises(ValueError, match=r"^throughput\(\) needs window > 0 seconds, got 0$"):
        throughput(engine, window=0)


def test_summary_headline_figures():
    engine, clock = diamond_engine()
    run_projects(engine, clock, "p1", pause_at=0.5, resume_at=2.5)
    s = summary(engine)
    assert s["runs"] == 1 and s["completed_runs"] == 1
    assert (s["steps"], s["completed"], s["failed"]) == (3, 3, 0)
    assert s["makespan"] == 6.5
    assert s["paused_seconds"] == 2.0
    assert s["total_busy"] == 6.0
    assert s["peak_concurrency"] == 1 and s["max_concurrent_steps"] == 2
    assert s["pool_utilisation"] == {"gpu": pytest.approx(3.0 / 6.5)}


def test_metrics_accept_concatenated_frames_of_several_engines():
    e1, c1 = diamond_engine()
    run_projects(e1, c1, "p1")
    e2, c2 = diamond_engine()
    run_projects(e2, c2, "p2")
    both = pd.concat([steps_frame(e1), steps_frame(e2)], ignore_index=True)
    # both engines' virtual clocks start at 0: the runs overlap on one time line
    assert makespan(both) == 6.0
    assert concurrency_over_time(both)["running"].max() == 2
    assert throughput(both)["cumulative_steps"].iloc[-1] == 6


def test_a_frame_that_is_not_a_steps_frame_is_refused():
    with pytest.raises(ValueError, match=r"is neither a steps frame nor an attempts frame"):
        makespan(pd.DataFrame({"x": [1]}))
