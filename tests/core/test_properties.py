"""Property-based tests: random DAGs, priorities, pools, durations, failures, timeouts, cancels.

Every run uses the real engine on a :class:`VirtualClock`, so durations and
timeouts cost no wall time.  Invariants checked for every example:

* the concurrency limit and every pool capacity are never exceeded;
* no step starts before all of its dependencies completed;
* every step ends in exactly one terminal state (one terminal event each);
* all pool units are back, and no asyncio task is left pending;
* each step's input holds the outputs of all of its ancestors, the nearest
  (latest in topological order) winning on a shared key;
* a step is skipped exactly when an ancestor failed (without a cancel).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yukkuri_nb.core import EventKind, VirtualClock, WorkflowEngine
from yukkuri_nb.core.workflow_step import (
    ResourceManager,
    RetryPolicy,
    StepPriority,
    StepStatus,
    WorkflowStepDefinition,
)

POOLS = ["llm_api", "tts_api", "video_encoder"]


@dataclass
class Case:
    deps: list[list[int]]
    priorities: list[int]
    pools: list[list[str]]
    durations: list[float]
    fail: list[bool]
    timeout: list[bool]
    retries: list[int]
    capacities: dict[str, int]
    max_concurrent: int
    cancel_at: float | None


@st.composite
def cases(draw) -> Case:
    n = draw(st.integers(1, 14))
    deps = [sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(i, 3)))) if i else [] for i in range(n)]
    return Case(
        deps=deps,
        priorities=draw(st.lists(st.sampled_from(list(StepPriority)), min_size=n, max_size=n)),
        pools=[sorted(draw(st.sets(st.sampled_from(POOLS), max_size=2))) for _ in range(n)],
        durations=draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.5]), min_size=n, max_size=n)),
        fail=draw(st.lists(st.booleans().map(lambda b: b and draw(st.integers(0, 4)) == 0), min_size=n, max_size=n)),
        timeout=draw(st.lists(st.integers(0, 6).map(lambda k: k == 0), min_size=n, max_size=n)),
        retries=draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)),
        capacities={p: draw(st.integers(1, 3)) for p in POOLS},
        max_concurrent=draw(st.integers(1, 4)),
        cancel_at=draw(st.one_of(st.none(), st.sampled_from([0.0, 0.7, 2.2, 5.0]))),
    )


def run_case(case: Case):
    clock = VirtualClock()
    rm = ResourceManager(case.capacities)
    engine = WorkflowEngine(resource_manager=rm, max_concurrent_steps=case.max_concurrent, clock=clock, seed=1)
    names = [f"s{i}" for i in range(len(case.deps))]
    steps = [
        WorkflowStepDefinition(
            name=names[i],
            display_name=f"ステップ{i}",
            dependencies=[names[d] for d in case.deps[i]],
            priority=case.priorities[i],
            required_resources=set(case.pools[i]),
            estimated_duration=case.durations[i],
            timeout_seconds=(case.durations[i] / 2 if case.durations[i] else None) if case.timeout[i] else None,
            retry_policy=RetryPolicy(max_retries=case.retries[i], retry_delay=0.25),
        )
        for i in range(len(names))
    ]
    graph = engine.register_workflow("prop", steps)
    running: set[str] = set()
    completed: set[str] = set()
    violations: list[str] = []
    inputs: dict[str, dict] = {}
    starts: dict[str, int] = {}

    def make(i: int):
        name = names[i]

        async def process(context, data):
            starts[name] = starts.get(name, 0) + 1
            missing = [d for d in steps[i].dependencies if d not in completed]
            if missing:
                violations.append(f"{name} started before {missing}")
            running.add(name)
            if len(running) > engine.max_concurrent_steps:
                violations.append(f"{len(running)} running > limit {engine.max_concurrent_steps}")
            for pool in POOLS:
                holders = [r for r in running if pool in steps[names.index(r)].required_resources]
                if len(holders) > case.capacities[pool]:
                    violations.append(f"pool {pool} has {holders} > {case.capacities[pool]}")
                if rm.in_use(pool) > case.capacities[pool]:
                    violations.append(f"pool {pool} in_use {rm.in_use(pool)} > capacity")
            inputs[name] = dict(data)
            try:
                await asyncio.sleep(case.durations[i])
            finally:
                running.discard(name)
            if case.fail[i]:
                raise RuntimeError(f"{name} fails on purpose")
            completed.add(name)
            return {f"k{i}": i, "shared": name}

        return process

    for i, name in enumerate(names):
        engine.register_step_processor(name, make(i))

    async def main():
        if case.cancel_at is not None:
            asyncio.get_running_loop().call_later(case.cancel_at, engine.cancel_workflow, "p", "property cancel")
        result = await engine.execute_workflow("prop", "p", {"seed_key": "初期値", "shared": "initial"})
        await asyncio.sleep(0)  # let cancelled step tasks unwind
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return result, leftovers

    result, leftovers = clock.run(main())
    return engine, graph, names, steps, result, leftovers, violations, inputs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_engine_invariants(case: Case):
    engine, graph, names, steps, result, leftovers, violations, inputs = run_case(case)
    assert violations == []
    assert leftovers == []
    assert all(s.in_use == 0 for s in engine.resource_statistics().values())

    statuses = {n: r.status for n, r in result.step_results.items()}
    assert set(statuses) == set(names)
    assert all(s.is_terminal for s in statuses.values()), statuses

    terminal = {EventKind.STEP_COMPLETED, EventKind.STEP_FAILED, EventKind.STEP_SKIPPED, EventKind.STEP_CANCELLED}
    events = engine.events("p")
    ends = [e.step for e in events if e.kind in terminal]
    assert sorted(ends) == sorted(names), "each step has exactly one terminal event"
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert events[0].kind is EventKind.RUN_STARTED and events[-1].kind is EventKind.RUN_FINISHED

    counts = {s: sum(1 for v in statuses.values() if v is s) for s in StepStatus}
    assert result.completed_steps == counts[StepStatus.COMPLETED]
    assert result.failed_steps == counts[StepStatus.FAILED]
    state = engine.get_execution_status("p")
    assert state.completed_steps + state.failed_steps + state.skipped_steps + state.cancelled_steps == len(names)
    assert state.running_steps == 0 and state.pending_steps == 0

    cancelled = case.cancel_at is not None and result.status is StepStatus.CANCELLED
    if not cancelled:
        assert result.status is (StepStatus.COMPLETED if counts[StepStatus.COMPLETED] == len(names) else StepStatus.FAILED)
        for name in names:
            failed_above = any(statuses[a] is StepStatus.FAILED for a in graph.ancestors(name))
            if failed_above:
                assert statuses[name] is StepStatus.SKIPPED
            else:
                assert statuses[name] in (StepStatus.COMPLETED, StepStatus.FAILED)
    else:
        assert result.cancel_reason == "property cancel"
        assert counts[StepStatus.CANCELLED] + counts[StepStatus.COMPLETED] + counts[StepStatus.FAILED] + counts[StepStatus.SKIPPED] == len(names)

    # Retries: a failing step ran 1 + max_retries times unless cancelled first.
    for i, name in enumerate(names):
        r = result.step_results[name]
        if r.status is StepStatus.FAILED:
            assert r.attempts == len(r.attempt_history) >= 1
            if not cancelled:
                assert r.attempts == 1 + case.retries[i]

    # Data flow: every ancestor's key, the latest ancestor in topological order wins "shared".
    for name, data in inputs.items():
        ancestors = graph.ancestors(name)
        assert data["seed_key"] == "初期値"
        for a in ancestors:
            assert data[f"k{names.index(a)}"] == names.index(a)
        own = {k for k in data if k.startswith("k")}
        assert own == {f"k{names.index(a)}" for a in ancestors}
        if ancestors:
            nearest = max(ancestors, key=lambda a: graph.position[graph.index[a]])
            assert data["shared"] == nearest
        else:
            assert data["shared"] == "initial"


def test_a_higher_ranked_waiter_is_not_starved_by_lower_steps():
    """Many low-priority steps need pool A; one high step needs A and B (B is busy at first).

    Without claims, low steps would keep taking A whenever it frees and the high
    step would wait for all of them.  With claims it starts as soon as B frees.
    """
    clock = VirtualClock()
    rm = ResourceManager({"A": 1, "B": 1})
    engine = WorkflowEngine(resource_manager=rm, max_concurrent_steps=4, clock=clock)
    steps = [WorkflowStepDefinition(name="hold_b", required_resources={"B"}, estimated_duration=1, priority=StepPriority.CRITICAL)]
    steps += [WorkflowStepDefinition(name=f"low{i}", required_resources={"A"}, estimated_duration=2, priority=StepPriority.LOW) for i in range(6)]
    steps += [WorkflowStepDefinition(name="high", required_resources={"A", "B"}, estimated_duration=1, priority=StepPriority.HIGH)]
    engine.register_workflow("w", steps)
    for s in steps:
        async def p(ctx, d, s=s):
            await asyncio.sleep(s.estimated_duration)
        engine.register_step_processor(s.name, p)
    result = clock.run(engine.execute_workflow("w", "p"))
    assert result.is_successful
    starts = {e.step: e.time for e in engine.events("p") if e.kind is EventKind.STEP_STARTED}
    # high cannot start at 0 (B is held) but claims A, so no low step takes A;
    # at t=1 B frees and high starts at once.  Without claims low0 would hold A
    # until t=2 and high would wait for it.
    assert starts["hold_b"] == 0
    assert starts["high"] == 1.0
    assert all(starts[f"low{i}"] >= 2.0 for i in range(6))


def test_a_blocked_step_does_not_block_steps_needing_other_pools():
    clock = VirtualClock()
    engine = WorkflowEngine(resource_manager=ResourceManager({"enc": 1}), max_concurrent_steps=3, clock=clock)
    steps = [
        WorkflowStepDefinition(name="enc1", required_resources={"enc"}, estimated_duration=5, priority=StepPriority.CRITICAL),
        WorkflowStepDefinition(name="enc2", required_resources={"enc"}, estimated_duration=5, priority=StepPriority.CRITICAL),
        WorkflowStepDefinition(name="free", estimated_duration=1, priority=StepPriority.LOW),
    ]
    engine.register_workflow("w", steps)
    for s in steps:
        async def p(ctx, d, s=s):
            await asyncio.sleep(s.estimated_duration)
        engine.register_step_processor(s.name, p)
    clock.run(engine.execute_workflow("w", "p"))
    starts = {e.step: e.time for e in engine.events("p") if e.kind is EventKind.STEP_STARTED}
    assert starts == {"enc1": 0.0, "free": 0.0, "enc2": 5.0}
