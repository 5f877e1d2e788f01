"""Small workflows with exactly known schedules, run on a VirtualClock (shared by analysis and viz tests)."""

from __future__ import annotations

import asyncio

from yukkuri_nb.core import ResourceManager, RetryPolicy, VirtualClock, WorkflowEngine
from yukkuri_nb.core.workflow_step import WorkflowStepDefinition as W


def diamond_steps() -> list[W]:
    """b (2s) and a (1s) share pool ``gpu`` (capacity 1); c (3s) needs both.

    With max_concurrent_steps=2: b runs 0-2 (longer remaining path first),
    a waits for the pool and runs 2-3, c runs 3-6.
    """
    return [
        W(name="a", display_name="台本作成", estimated_duration=1, required_resources={"gpu"}),
        W(name="b", display_name="音声合成", estimated_duration=2, required_resources={"gpu"}),
        W(name="c", display_name="動画合成", dependencies=["a", "b"], estimated_duration=3),
    ]


def sleeper(seconds: float):
    async def process(context, data):
        await asyncio.sleep(seconds)
        return {f"{context.step_name}_done": True}

    return process


def diamond_engine(*, fail_a_once: bool = False, max_concurrent_steps: int = 2) -> tuple[WorkflowEngine, VirtualClock]:
    """An engine on a VirtualClock running :func:`diamond_steps` with sleeps equal to the estimates."""
    clock = VirtualClock()
    engine = WorkflowEngine(
        resource_manager=ResourceManager({"gpu": 1}), max_concurrent_steps=max_concurrent_steps, clock=clock
    )
    steps = diamond_steps()
    if fail_a_once:
        steps[0] = steps[0].model_copy(update={"retry_policy": RetryPolicy(max_retries=1, retry_delay=0.5)})
    engine.register_workflow("diamond", steps)
    for s in steps:
        engine.register_step_processor(s.name, sleeper(s.estimated_duration))
    if fail_a_once:
        calls = {"n": 0}

        async def flaky(context, data):
            calls["n"] += 1
            await asyncio.sleep(1)
            if calls["n"] == 1:
                raise RuntimeError("一時的なエラー")
            return {}

        engine.register_step_processor("a", flaky)
    return engine, clock


def run_projects(engine: WorkflowEngine, clock: VirtualClock, *project_ids: str, pause_at: float | None = None,
                 resume_at: float | None = None) -> list:
    """Run ``diamond`` for each project at once; optionally pause the first one between two virtual times."""

    async def main():
        tasks = [asyncio.ensure_future(engine.execute_workflow("diamond", pid, {})) for pid in project_ids]
        if pause_at is not None:
            await asyncio.sleep(pause_at)
            engine.pause_workflow(project_ids[0])
            await asyncio.sleep(resume_at - pause_at)
            engine.resume_workflow(project_ids[0])
        return await asyncio.gather(*tasks)

    return clock.run(main())
