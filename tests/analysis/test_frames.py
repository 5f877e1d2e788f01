"""Event, step, attempt and pause frames, checked against exactly known virtual-time schedules."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from yukkuri_nb.analysis import attempts_frame, events_frame, paused_frame, steps_frame
from yukkuri_nb.core import EventKind

from .workflows import diamond_engine, run_projects


def _by_step(df: pd.DataFrame) -> dict:
    return {row.step: row for row in df.itertuples(index=False)}


def test_steps_frame_has_the_schedule_the_engine_ran():
    engine, clock = diamond_engine()
    run_projects(engine, clock, "p1")
    df = steps_frame(engine)
    rows = _by_step(df)
    assert list(df["step"]) == ["a", "b", "c"]
    assert (rows["b"].queued, rows["b"].started, rows["b"].finished) == (0.0, 0.0, 2.0)
    # a waited for the gpu pool while b held it
    assert (rows["a"].queued, rows["a"].started, rows["a"].finished, rows["a"].wait) == (0.0, 2.0, 3.0, 2.0)
    assert (rows["c"].queued, rows["c"].started, rows["c"].finished, rows["c"].wait) == (3.0, 3.0, 6.0, 0.0)
    assert rows["c"].display_name == "動画合成"
    assert rows["a"].pools == ("gpu",) and rows["c"].pools == ()
    assert [rows[s].estimate for s in "abc"] == [1.0, 2.0, 3.0]
    assert [rows[s].duration for s in "abc"] == [1.0, 2.0, 3.0]
    assert set(df["status"]) == {"completed"}
    assert set(df["attempts"]) == {1}
    assert df["slot"].notna().all()
    assert df.attrs["max_concurrent_steps"] == 2
    assert df.attrs["pool_capacities"] == {"gpu": 1}
    assert df.attrs["critical_paths"] == {"diamond": ["b", "c"]}


def test_retries_are_one_attempt_row_each_and_the_step_keeps_its_total_busy_time():
    engine, clock = diamond_engine(fail_a_once=True)
    run_projects(engine, clock, "p1")
    a = _by_step(steps_frame(engine))["a"]
    assert a.status == "completed" and a.attempts == 2
    # attempt 1 ran 2-3 and failed, the retry delay was 0.5 s, attempt 2 ran 3.5-4.5
    assert (a.started, a.finished, a.duration, a.busy) == (2.0, 4.5, 1.0, 2.0)
    assert a.error is None or (isinstance(a.error, float) and math.isnan(a.error))
    att = attempts_frame(engine)
    a_rows = att[att["step"] == "a"]
    assert list(a_rows["attempt"]) == [1, 2]
    assert list(a_rows["status"]) == ["failed", "completed"]
    assert a_rows["error"].iloc[0] == "RuntimeError: 一時的なエラー"
    assert list(a_rows["started"]) == [2.0, 3.5]


def test_events_frame_is_engine_history_with_flattened_data():
    engine, clock = diamond_engine()
    run_projects(engine, clock, "p1", "p2")
    ev = events_frame(engine, "p1")
    assert ev.columns[:8].tolist() == ["seq", "time", "t", "kind", "project_id", "workflow_name", "run_id", "step"]
    assert ev["seq"].is_monotonic_increasing
    assert set(ev["project_id"]) == {"p1"}
    assert ev["kind"].iloc[0] == "run_started" and ev["kind"].iloc[-1] == "run_finished"
    assert ev["t"].iloc[0] == 0.0
    started = ev[ev["kind"] == EventKind.STEP_STARTED.value]
    assert started["attempt"].tolist() == [1, 1, 1]
    assert all(isinstance(p, tuple) for p in started["pools"])
    assert ev["run_id"].nunique() == 1
    # engine.history() is this frame; None means every known project
    pd.testing.assert_frame_equal(engine.history("p1"), ev)
    everything = engine.history()
    assert set(everything["project_id"]) == {"p1", "p2"}
    assert len(everything) == len(ev) + len(events_frame(engine, "p2"))


def test_frames_from_a_plain_event_list_and_from_dicts_agree_with_the_engine():
    engine, clock = diamond_engine()
    run_projects(engine, clock, "p1")
    events = engine.events("p1")
    from_engine = steps_frame(engine).drop(columns=["display_name", "estimate", "priority"])
    from_events = steps_frame(events).drop(columns=["display_name", "estimate", "priority"])
    from_dicts = steps_frame([e.to_dict() for e in events]).drop(columns=["display_name", "estimate", "priority"])
    cols = ["step", "status", "queued", "started", "finished", "wait", "duration", "attempts", "slot"]
    pd.testing.assert_frame_equal(from_engine[cols], from_events[cols])
    pd.testing.assert_frame_equal(from_engine[cols], from_dicts[cols])
    # without an engine the frame still names pools (from step_started) but not estimates
    assert steps_frame(events)["estimate"].isna().all()
    assert steps_frame(events, engine=engine)["estimate"].tolist() == [1.0, 2.0, 3.0]


def test_steps_frame_from_a_result_uses_its_attempt_history():
    engine, clock = diamond_engine(fail_a_once=True)
    (result,) = run_projects(engine, clock, "p1")
    df = steps_frame(result, engine=engine)
    rows = _by_step(df)
    assert (rows["a"].started, rows["a"].finished, rows["a"].attempts, rows["a"].busy) == (2.0, 4.5, 2, 2.0)
    assert rows["c"].display_name == "動画合成"
    assert df["queued"].isna().all() and df["slot"].isna().all()
    bare = steps_frame(result)
    assert list(bare["display_name"]) == ["a", "b", "c"]


def test_frames_of_several_runs_concatenate_for_batch_analysis():
    e1, c1 = diamond_engine()
    run_projects(e1, c1, "p1", "p2")
    e2, c2 = diamond_engine()
    (r3,) = run_projects(e2, c2, "p3")
    batch = pd.concat([steps_frame(e1), steps_frame(r3, engine=e2)], ignore_index=True)
    assert batch.groupby("project_id")["step"].count().to_dict() == {"p1": 3, "p2": 3, "p3": 3}
    assert batch.columns.tolist() == steps_frame(e1).columns.tolist()
    # the two projects of e1 share the pool: together they take longer than one alone
    ends = batch.groupby("project_id")["finished"].max()
    assert max(ends["p1"], ends["p2"]) > 6.0 and ends["p3"] == 6.0


def test_paused_intervals_come_from_pause_and_resume_events():
    engine, clock = diamond_engine()
    run_projects(engine, clock, "p1", pause_at=0.5, resume_at=2.5)
    pf = paused_frame(engine)
    assert pf[["project_id", "start", "end"]].values.tolist() == [["p1", 0.5, 2.5]]
    # nothing new started while paused: a (waiting for the pool) started at the resume
    assert _by_step(steps_frame(engine))["a"].started == 2.5
    assert steps_frame(engine).attrs["paused"] == [("p1", 0.5, 2.5)]


def test_unknown_sources_are_refused_with_what_to_pass():
    with pytest.raises(TypeError, match=r"^cannot analyse int 42; pass a WorkflowEngine, a RunHandle, "
                                        r"a WorkflowExecutionResult, a run store \(or the path of its file\), a list of events, "
                                        r"or a list of those$"):
        steps_frame(42)


def test_an_engine_without_runs_gives_empty_frames_with_the_columns():
    engine, _ = diamond_engine()
    assert events_frame(engine).columns[:8].tolist() == ["seq", "time", "t", "kind", "project_id", "workflow_name", "run_id", "step"]
    assert steps_frame(engine).empty and "duration" in steps_frame(engine).columns
    assert attempts_frame(engine).empty
