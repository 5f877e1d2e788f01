"""The task a step runs in: its context, its cancellation, and the loop's turn.

A step whose chain successor is the only step to start hands its task on to
that successor (``yukkuri_nb.core.stepping``, "continuing tasks"); these tests
pin what a user can observe of that: nothing, except a responsive loop.
"""

from __future__ import annotations

import asyncio
import contextvars

from yukkuri_nb.core import EventKind, WorkflowEngine
from yukkuri_nb.core.workflow_step import StepStatus
from yukkuri_nb.core.workflow_step import WorkflowStepDefinition as W

who = contextvars.ContextVar("who", default="nobody")


def chain(names: list[str], **kwargs) -> list[W]:
    return [W(name=n, dependencies=[names[k - 1]] if k else [], **kwargs) for k, n in enumerate(names)]


def noop_chain_engine(names: list[str]) -> WorkflowEngine:
    """An engine with workflow "wf": a chain of ``names``, each step returning at once."""
    engine = WorkflowEngine()
    engine.register_workflow("wf", chain(names))

    async def noop(context, data):
        return {}

    for n in names:
        engine.register_step_processor(n, noop)
    return engine


def test_every_step_sees_the_callers_context_and_nothing_an_earlier_step_set():
    seen: dict[str, str] = {}

    def step(name: str, sets: bool):
        async def process(context, data):
            seen[name] = who.get()
            if sets:
                who.set(f"set by {name}")
            return {}

        return process

    engine = WorkflowEngine(max_concurrent_steps=4)
    # A pure chain (a step's successor goes on in its task unless the
    # context changed) and a fan-out (each child in a task of its own).
    workflows = {"chain": chain(["a", "b", "c"]), "fan": [W(name="d"), W(name="e", dependencies=["d"]), W(name="f", dependencies=["d"])]}
    for name, steps in workflows.items():
        engine.register_workflow(name, steps)
        for s in steps:
            engine.register_step_processor(s.name, step(s.name, sets=s.name in ("a", "b", "d")))

    async def main():
        who.set("caller")
        results = [await engine.execute_workflow(name, name, {}) for name in workflows]
        return results, who.get()

    results, after = asyncio.run(main())
    assert all(r.is_successful for r in results)
    # a, b and d set the variable, each in its own copy of the caller's context.
    assert seen == dict.fromkeys("abcdef", "caller")
    assert after == "caller"


def test_a_chain_of_steps_that_never_await_lets_the_loop_run_other_tasks():
    names = [f"s{k}" for k in range(320)]
    engine = noop_chain_engine(names)

    async def main():
        ticks = 0
        done = False

        async def ticker():
            nonlocal ticks
            while not done:
                await asyncio.sleep(0)
                ticks += 1

        t = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        result = await engine.execute_workflow("wf", "p", {})
        done = True
        await t
        return result, ticks

    result, ticks = asyncio.run(main())
    assert result.is_successful
    # One task runs at most 16 steps back to back, so the ticker gets a turn
    # at least every 16 steps (320 / 16 = 20); all in one go would give ~1.
    assert ticks >= 15, ticks


def test_a_cancellation_arriving_after_its_step_ended_does_not_hit_the_next_step():
    # One slot: run Y's step waits for run X's.  X's step ends in the same
    # loop iteration as X is cancelled, so the cancel (delivered one
    # iteration later) finds X's task already running Y's step.
    engine = WorkflowEngine(max_concurrent_steps=1)
    engine.register_workflow("x", [W(name="x1")])
    engine.register_workflow("y", [W(name="y1")])

    async def main():
        gate = asyncio.Event()

        async def x1(context, data):
            await gate.wait()
            return {}

        async def y1(context, data):
            await asyncio.sleep(0.05)
            return {"y": 1}

        engine.register_step_processor("x1", x1)
        engine.register_step_processor("y1", y1)
        rx = asyncio.create_task(engine.execute_workflow("x", "px", {}))
        await asyncio.sleep(0.01)
        ry = asyncio.create_task(engine.execute_workflow("y", "py", {}))
        await asyncio.sleep(0.01)
        assert engine.get_execution_status("px").step_statuses["x1"] is StepStatus.RUNNING
        gate.set()  # x1's task is woken first ...
        engine.cancel_workflow("px", "too late")  # ... then X is cancelled
        return await rx, await ry

    result_x, result_y = asyncio.run(main())
    assert result_y.is_successful, result_y.step_results["y1"]
    assert result_y.step_results["y1"].output_data == {"y": 1}
    assert result_x.step_results["x1"].status in (StepStatus.COMPLETED, StepStatus.CANCELLED)


def test_a_step_cannot_take_its_successor_down_through_their_task():
    # asyncio.timeout inside a step relies on its task's cancel count, and a
    # step may even cancel its own task and return: the next step of the
    # chain must start clean either way.
    outcomes: dict[str, str] = {}

    def times_out(name: str):
        async def process(context, data):
            try:
                async with asyncio.timeout(0.01):
                    await asyncio.sleep(1)
            except TimeoutError:
                outcomes[name] = "timed out"
            return {}

        return process

    async def cancels_itself(context, data):
        asyncio.current_task().cancel()  # delivered at its next await, which never comes
        outcomes["b"] = "returned"
        return {}

    async def sleeps(context, data):
        await asyncio.sleep(0.02)
        outcomes["d"] = "slept"
        return {}

    engine = WorkflowEngine()
    engine.register_workflow("wf", chain(["a", "b", "c", "d"]))
    for n, fn in {"a": times_out("a"), "b": cancels_itself, "c": times_out("c"), "d": sleeps}.items():
        engine.register_step_processor(n, fn)
    result = asyncio.run(engine.execute_workflow("wf", "p", {}))
    assert result.is_successful, result.error_summary
    assert outcomes == {"a": "timed out", "b": "returned", "c": "timed out", "d": "slept"}


def test_pausing_a_chain_stops_it_after_the_running_step_and_resume_goes_on():
    # The yukkuri pipeline is mostly a chain: the Pause button must hold
    # the next step even though it would go on in the same task.
    names = [f"s{k}" for k in range(6)]
    engine = noop_chain_engine(names)

    paused: list[bool] = []

    def callback(state):
        if state.completed_steps == 2 and not paused:
            paused.append(False)  # first: the paused event calls back in here
            paused[0] = engine.pause_workflow(state.project_id)
            asyncio.get_running_loop().call_later(0.05, engine.resume_workflow, state.project_id)

    result = asyncio.run(engine.execute_workflow("wf", "p", {}, progress_callback=callback))
    assert result.is_successful and paused == [True]
    kinds = [(e.kind, e.step) for e in engine.events("p")]
    paused_at = kinds.index((EventKind.PAUSED, None))
    resumed = kinds.index((EventKind.RESUMED, None))
    assert [s for k, s in kinds[paused_at:resumed] if k is EventKind.STEP_STARTED] == []
    assert [s for k, s in kinds[resumed:] if k is EventKind.STEP_STARTED] == names[2:]
