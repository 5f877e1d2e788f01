"""Concurrency sweeps: simulation on the virtual clock, real runs, and their agreement."""

from __future__ import annotations

import asyncio

import pytest

from yukkuri_nb.analysis import SweepError, sweep, sweep_async
from yukkuri_nb.core.workflow_step import WorkflowStepDefinition as W
from yukkuri_nb.demo import build_demo_engine


def small_steps() -> list[W]:
    return [
        W(name="theme", display_name="テーマ選定", estimated_duration=2),
        W(name="script", display_name="台本", dependencies=["theme"], estimated_duration=3, required_resources={"llm"}),
        W(name="title", display_name="タイトル", dependencies=["theme"], estimated_duration=2, required_resources={"llm"}),
        W(name="video", display_name="動画", dependencies=["script", "title"], estimated_duration=2),
    ]


def test_simulated_sweep_of_the_demo_workflow():
    engine = build_demo_engine()
    df = sweep(engine, max_concurrent_values=[1, 2, 4], pool_capacities=[None, {"video_encoder": 2}], projects=6)
    assert len(df) == 6
    assert list(df["max_concurrent_steps"]) == [1, 2, 4, 1, 2, 4]
    assert list(df["pool_setting"][:3].unique()) == ["現在の容量 (current)"]
    assert set(df["pool_setting"][3:]) == {"video_encoder=2"}
    assert set(df["mode"]) == {"simulate"} and set(df["completed_runs"]) == {6}
    assert (df["makespan"] >= df["lower_bound"] - 1e-9).all()
    # one slot: the batch is all the work in a row, exactly the bound
    work = 6 * (30 + 120 + 60 + 300 + 600)
    assert df.loc[0, "makespan"] == pytest.approx(work) and df.loc[0, "lower_bound"] == pytest.approx(work)
    # the real scheduler on virtual time and the planner's replay of its policy agree
    assert df["makespan"].tolist() == pytest.approx(df["planned_makespan"].tolist())
    # a second encoder helps once there are slots to use it
    assert df.loc[5, "makespan"] < df.loc[2, "makespan"]
    for pool in ("llm_api", "tts_api", "video_encoder", "storage"):
        assert df[f"utilisation_{pool}"].between(0, 1).all()
    assert df["capacity_video_encoder"].tolist() == [1, 1, 1, 2, 2, 2]
    assert df.loc[2, "runs_per_hour"] == pytest.approx(3600 * 6 / df.loc[2, "makespan"])
    # the engine itself was not touched
    assert engine.max_concurrent_steps == 3 and engine.resource_manager.capacity("video_encoder") == 1
    assert engine.project_ids == []


@pytest.mark.parametrize(
    ("projects", "limit", "llm", "bound", "binding"),
    [
        (1, 4, 2, 7.0, "critical path: theme 2 + script 3 + video 2"),
        (4, 8, 1, 20.0, "llm pool: 4 x (script 3 + title 2) on one unit"),
        (4, 1, 8, 36.0, "concurrency: 4 x 9 s of work in one slot"),
    ],
)
def test_lower_bound_is_the_largest_of_critical_path_pool_work_and_total_work(projects, limit, llm, bound, binding):
    df = sweep(small_steps(), max_concurrent_values=[limit], pool_capacities=[{"llm": llm}], projects=projects)
    assert df.loc[0, "lower_bound"] == pytest.approx(bound), binding
    assert df.loc[0, "makespan"] >= bound
    assert df.loc[0, "efficiency"] == pytest.approx(bound / df.loc[0, "makespan"])


def test_simulation_agrees_with_a_real_sleep_based_run():
    # 1 estimated second = 0.1 real seconds; the real run takes about 2 s.
    kw = dict(max_concurrent_values=[3], pool_capacities=[{"llm": 1}], projects=3, time_scale=0.1)
    sim = sweep(small_steps(), **kw)
    real = sweep(small_steps(), mode="real", **kw)
    assert sim.loc[0, "makespan"] == pytest.approx(1.9)
    ratio = real.loc[0, "makespan"] / sim.loc[0, "makespan"]
    # a real run can only be slower, by the engine's per-step overhead
    assert 0.97 <= ratio <= 1.10, (real.loc[0, "makespan"], sim.loc[0, "makespan"])
    assert real.loc[0, "completed_runs"] == 3


def test_real_sweep_of_an_engine_restores_its_limits():
    engine = build_demo_engine(scale=0.00002)
    df = sweep(engine, max_concurrent_values=[1, 4], pool_capacities=[{"video_encoder": 2}], projects=2, mode="real")
    assert list(df["completed_runs"]) == [2, 2] and set(df["mode"]) == {"real"}
    assert engine.max_concurrent_steps == 3
    assert engine.resource_manager.capacity("video_encoder") == 1


def test_real_sweep_with_an_engine_factory_uses_a_fresh_engine_per_setting():
    made = []

    def factory():
        made.append(build_demo_engine(scale=0.00002))
        return made[-1]

    df = sweep(factory, max_concurrent_values=[2, 3], projects=2, mode="real")
    assert list(df["completed_runs"]) == [2, 2]
    assert len(made) == 3  # one to read the workflow, one per setting
    assert made[1].max_concurrent_steps == 2 and made[2].max_concurrent_steps == 3


def test_sweep_works_inside_a_running_event_loop_and_has_an_awaitable_form():
    async def notebook_cell():
        blocking = sweep(small_steps(), max_concurrent_values=[1, 2], projects=2)
        awaited = await sweep_async(small_steps(), max_concurrent_values=[1, 2], projects=2)
        return blocking, awaited

    blocking, awaited = asyncio.run(notebook_cell())
    assert blocking["makespan"].tolist() == awaited["makespan"].tolist() == [18.0, 14.0]  # llm (1 unit) serialises the four llm steps


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_concurrent_values": []}, r"^max_concurrent_values is empty; give at least one int >= 1, e.g. \[1, 2, 4\]$"),
        ({"max_concurrent_values": [0]}, r"^max_concurrent_values must be ints >= 1, got 0$"),
        ({"max_concurrent_values": [1], "mode": "fast"}, r"^mode must be 'simulate' or 'real', got 'fast'$"),
        ({"max_concurrent_values": [1], "projects": 0}, r"^projects must be an int >= 1, got 0$"),
        ({"max_concurrent_values": [1], "pool_capacities": [{"llm": 0}]},
         r"^pool_capacities: pool 'llm' needs an int capacity >= 1, got 0$"),
    ],
)
def test_bad_sweep_arguments_are_refused(kwargs, message):
    with pytest.raises(SweepError, match=message):
        sweep(small_steps(), **kwargs)


def test_an_engine_with_several_workflows_needs_a_workflow_name():
    engine = build_demo_engine()
    engine.register_workflow("other", small_steps())
    with pytest.raises(SweepError, match=r"^the engine has 2 workflows \('complete_video_generation', 'other'\); "
                                         r"pass workflow_name=\.\.\. to say which one to sweep$"):
        sweep(engine, max_concurrent_values=[1])
    df = sweep(engine, max_concurrent_values=[1], workflow_name="other", projects=1)
    assert df.loc[0, "makespan"] == 9.0
