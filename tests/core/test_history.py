"""A run's recorded history: complete, equal to what observers saw, and light on the heap."""

from __future__ import annotations

import asyncio
import gc

import pytest

from yukkuri_nb.core import EventKind, WorkflowEngine
from yukkuri_nb.core.workflow_step import ResourceManager, WorkflowStepDefinition

W = WorkflowStepDefinition


def _chain_engine(n: int, **kwargs) -> WorkflowEngine:
    engine = WorkflowEngine(resource_manager=ResourceManager({"tts_api": 2}), max_concurrent_steps=4, **kwargs)
    steps = [W(name=f"s{i}", dependencies=[f"s{i - 1}"] if i else [], required_resources={"tts_api"} if i % 2 else set())
             for i in range(n)]
    engine.register_workflow("w", steps)

    async def noop(ctx, data):
        return None

    for s in steps:
        engine.register_step_processor(s.name, noop)
    return engine


def test_engine_events_equal_the_events_observers_saw_live():
    engine = _chain_engine(20)
    seen = []
    engine.subscribe(seen.append)
    result = asyncio.run(engine.execute_workflow("w", "p"))
    assert result.is_successful
    events = engine.events("p")
    assert events == [e for e in seen if e.project_id == "p"]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    started = [e for e in events if e.kind is EventKind.STEP_STARTED]
    assert [e.data["pools"] for e in started[:2]] == [(), ("tts_api",)]
    assert events[0].kind is EventKind.RUN_STARTED and events[-1].kind is EventKind.RUN_FINISHED


def test_a_finished_runs_history_adds_no_gc_tracked_object_per_event():
    # 2,000 steps make > 6,000 events; the history keeps them in one flat
    # list, so what the run leaves on the GC's lists grows with its steps
    # (one StepResult each), not with its events: long runs stay cheap to
    # collect.  (A first-try success keeps its attempt record as a tuple.)
    engine = _chain_engine(2000)
    gc.collect()
    before = len(gc.get_objects())
    result = asyncio.run(engine.execute_workflow("w", "p"))
    gc.collect()
    grown = len(gc.get_objects()) - before
    assert result.is_successful and len(engine.events("p")) > 6000
    assert grown < 1.5 * 2000, f"{grown} new GC-tracked objects for 2,000 steps"


def test_a_first_try_success_reads_its_attempt_like_any_other():
    engine = _chain_engine(2)
    result = asyncio.run(engine.execute_workflow("w", "p"))
    step = result.step_results["s1"]
    (attempt,) = step.attempt_history
    assert attempt.attempt == 1 and attempt.status.value == "completed"
    assert attempt.duration == pytest.approx(step.execution_time)
    assert step.to_dict()["attempt_history"][0]["status"] == "completed"
    assert step == engine.get_step_result("p", "s1") and step.attempt_history is step.attempt_history


def test_call_on_next_event_calls_once_at_the_next_event_and_a_failing_one_is_logged(caplog):
    engine = _chain_engine(3)
    calls: list[int] = []

    def sampler() -> None:
        calls.append(len(engine.events("p")))

    def broken() -> None:
        raise RuntimeError("描画に失敗")

    async def main():
        run = engine.start("w", "p")
        engine.call_on_next_event(sampler)
        engine.call_on_next_event(broken)
        await run
        engine.max_concurrent_steps = 2  # an engine event, not a run's
        return run.result()

    result = asyncio.run(main())
    assert result.is_successful
    # Once, right after the run's first event (run_started), then never again.
    assert calls == [1]
    assert "call_on_next_event callback" in caplog.text and "描画に失敗" in caplog.text

    seen = []
    engine.call_on_next_event(lambda: seen.append("limits"))
    engine.max_concurrent_steps = 3  # engine events wake samplers too
    assert seen == ["limits"]


def test_state_keeps_first_start_end_times_and_last_event_without_subscribers():
    from yukkuri_nb.core.workflow_step import RetryPolicy

    engine = WorkflowEngine(max_concurrent_steps=2)
    engine.register_workflow(
        "w", [W(name="flaky", retry_policy=RetryPolicy(max_retries=1, retry_delay=0.01)), W(name="after", dependencies=["flaky"])]
    )
    tries = []

    async def flaky(ctx, data):
        tries.append(engine.clock.now())
        if len(tries) == 1:
            raise ValueError("一回目は失敗")

    engine.register_step_processor("flaky", flaky)
    engine.register_step_processor("after", lambda ctx, data: None)
    result = asyncio.run(engine.execute_workflow("w", "p"))
    assert result.is_successful
    state = engine.get_execution_status("p")
    events = engine.events("p")
    assert state.last_event == events[-1] and state.last_event.kind is EventKind.RUN_FINISHED
    first_start = next(e.time for e in events if e.kind is EventKind.STEP_STARTED and e.step == "flaky")
    assert state.step_start_times["flaky"] == first_start <= tries[0]  # the first attempt's, not the retry's
    done = {e.step: e.time for e in events if e.kind is EventKind.STEP_COMPLETED}
    assert state.step_end_times == done


def test_queued_steps_give_the_cyclic_gc_nothing_to_track():
    # A 100,000-step run queues its roots at once; entries naming their run
    # by number (not by object) are plain tuples of numbers, which the GC
    # stops tracking, so they do not set off a full collection of the heap
    # (~0.3 s at that size; benchmarks E).  White-box: reads the ready queue.
    engine = WorkflowEngine(max_concurrent_steps=1)
    engine.register_workflow("w", [W(name=f"s{i}") for i in range(300)])
    seen = {}

    async def first(ctx, data):
        gc.collect()  # tuples of untracked items are untracked by a collection
        entries = list(engine._ready.entries())
        seen["queued"] = len(entries)
        seen["tracked"] = sum(gc.is_tracked(e) for e in entries)

    engine.register_step_processor("s0", first)
    for i in range(1, 300):
        engine.register_step_processor(f"s{i}", lambda ctx, data: None)
    assert asyncio.run(engine.execute_workflow("w", "p")).is_successful
    assert seen == {"queued": 299, "tracked": 0}


def _replayed(engine, project):
    """A fresh state fed the run's recorded events through the public apply()."""
    from yukkuri_nb.core.state import WorkflowExecutionState

    live = engine.get_execution_status(project)
    fresh = WorkflowExecutionState(
        live.project_id, live.workflow_name, engine.get_workflow(live.workflow_name), live.started_at,
        clock_now=engine.clock.now,
    )
    for event in engine.events(project):
        fresh.apply(event)
    return live, fresh


_PROJECTED = (
    "total_steps", "completed_steps", "failed_steps", "running_steps", "pending_steps", "skipped_steps",
    "cancelled_steps", "status", "is_paused", "is_cancelled", "cancel_reason", "schedule", "step_statuses",
    "step_progress", "step_messages", "step_attempts", "step_errors", "step_start_times", "step_end_times",
    "speed_factor", "last_event",
)


@pytest.mark.parametrize("cancel", [False, True])
def test_the_live_state_is_exactly_the_projection_of_the_runs_events(cancel):
    from yukkuri_nb.core import VirtualClock
    from yukkuri_nb.core.workflow_step import RetryPolicy

    clock = VirtualClock()
    engine = WorkflowEngine(resource_manager=ResourceManager({"tts_api": 1}), max_concurrent_steps=2, clock=clock)
    steps = [
        W(name="flaky", estimated_duration=1, retry_policy=RetryPolicy(max_retries=2, retry_delay=0.5)),
        W(name="bad", estimated_duration=1, required_resources={"tts_api"}),
        W(name="after_bad", dependencies=["bad"], estimated_duration=1),
        W(name="after_flaky", dependencies=["flaky"], estimated_duration=2, required_resources={"tts_api"}),
        W(name="last", dependencies=["after_flaky"], estimated_duration=3),
    ]
    engine.register_workflow("w", steps)
    tries = {"flaky": 0}

    async def work(ctx, data):
        ctx.report_progress(0.5, "半分")
        await asyncio.sleep(1)
        if ctx.step_name == "flaky":
            tries["flaky"] += 1
            if tries["flaky"] < 2:
                raise ValueError("一回目は失敗")
        if ctx.step_name == "bad":
            raise RuntimeError("音声が作れません")

    for s in steps:
        engine.register_step_processor(s.name, work)

    async def main():
        run = engine.start("w", "p", schedule="fifo")
        await asyncio.sleep(1.2)
        run.pause()
        await asyncio.sleep(2)
        run.resume()
        if cancel:
            await asyncio.sleep(1.5)
            run.cancel("途中で中止")
        return await run

    result = clock.run(main())
    assert result.status.value == ("cancelled" if cancel else "failed")
    live, fresh = _replayed(engine, "p")
    for name in _PROJECTED:
        assert getattr(live, name) == getattr(fresh, name), name
    assert live.step_attempts["flaky"] == 2 and live.step_statuses["after_bad"].value == "skipped"


def test_step_datetimes_are_the_runs_wall_start_plus_clock_seconds():
    from datetime import timedelta

    from yukkuri_nb.core import VirtualClock

    clock = VirtualClock(start=100.0)
    engine = WorkflowEngine(clock=clock)
    engine.register_workflow("w", [W(name="a"), W(name="b", dependencies=["a"])])

    async def wait(ctx, data):
        await asyncio.sleep(1.5)

    engine.register_step_processor("a", wait)
    engine.register_step_processor("b", lambda ctx, data: None)
    result = clock.run(engine.execute_workflow("w", "p"))
    a, b = result.step_results["a"], result.step_results["b"]
    # The run starts at virtual 100 s = the clock's epoch; a runs 100-101.5, b starts at 101.5.
    assert a.started_at == clock.epoch and a.completed_at == clock.epoch + timedelta(seconds=1.5)
    assert b.started_at == a.completed_at and b.started_at.tzinfo is not None
    assert (a.completed_at - a.started_at).total_seconds() == a.execution_time == 1.5
    assert a.to_dict()["completed_at"] == (clock.epoch + timedelta(seconds=1.5)).isoformat()
