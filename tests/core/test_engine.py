"""Engine behaviour a user relies on, with error messages pinned."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading

import pytest

from yukkuri_nb.core import (
    CycleError,
    DependencyError,
    EventKind,
    MissingProcessorError,
    ProjectAlreadyRunningError,
    ResourceLimitError,
    UnknownWorkflowError,
    VirtualClock,
    WorkflowDefinitionError,
    WorkflowEngine,
    WorkflowEngineError,
)
from yukkuri_nb.core import TimeoutError as EngineTimeoutError
from yukkuri_nb.core.workflow_step import (
    ProcessProcessor,
    ResourceManager,
    RetryPolicy,
    StepPriority,
    StepProcessor,
    StepResult,
    StepStatus,
    WorkflowStepDefinition as W,
)


def sleeper(seconds: float, out: dict | None = None):
    async def process(context, data):
        await asyncio.sleep(seconds)
        return dict(out or {})

    return process


def engine_with(steps, processors=None, **kwargs):
    engine = WorkflowEngine(**kwargs)
    engine.register_workflow("wf", steps)
    for step in steps:
        engine.register_step_processor(step.name, (processors or {}).get(step.name, sleeper(step.estimated_duration)))
    return engine


# -- registration ------------------------------------------------------------

def test_duplicate_step_names_are_refused():
    with pytest.raises(WorkflowDefinitionError, match=r"^workflow 'wf' defines step 'a' twice \(positions 0 and 1\); give each step a unique name$"):
        WorkflowEngine().register_workflow("wf", [W(name="a"), W(name="a")])


def test_unknown_dependency_names_both_steps():
    with pytest.raises(DependencyError, match=r"^workflow 'wf': step 'b' depends on unknown step 'x'; define 'x' or remove it from 'b'.dependencies$"):
        WorkflowEngine().register_workflow("wf", [W(name="a"), W(name="b", dependencies=["x"])])


def test_cycle_is_named():
    steps = [W(name="a", dependencies=["c"]), W(name="b", dependencies=["a"]), W(name="c", dependencies=["b"]), W(name="d")]
    with pytest.raises(CycleError) as info:
        WorkflowEngine().register_workflow("wf", steps)
    assert info.value.cycle == ["a", "b", "c", "a"]
    assert str(info.value) == (
        "workflow 'wf' has a dependency cycle: a -> b -> c -> a (x -> y means y depends on x); "
        "remove one of these dependencies"
    )
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"timeout_seconds": 0}, "step 'a': timeout_seconds: Input should be greater than 0 (got 0); use a positive number of seconds, or None for the engine's default_timeout_seconds"),
        ({"timeout_seconds": -5}, "step 'a': timeout_seconds: Input should be greater than 0 (got -5)"),
        ({"estimated_duration": -1.0}, "step 'a': estimated_duration: Input should be greater than or equal to 0 (got -1.0); use an estimate in seconds >= 0"),
        ({"dependencies": "b"}, "dependencies must be a list of step names, not the string 'b'; write ['b']"),
        ({"colour": "red"}, "step 'a': unknown field 'colour'"),
    ],
)
def test_bad_definitions_name_the_step_field_and_fix(kwargs, message):
    with pytest.raises(ValueError) as info:
        W(name="a", **kwargs)
    assert message in str(info.value)


def test_dict_definitions_are_validated_with_position():
    with pytest.raises(WorkflowDefinitionError, match=r"^workflow 'wf', step #1: step 'b': timeout_seconds"):
        WorkflowEngine().register_workflow("wf", [{"name": "a"}, {"name": "b", "timeout_seconds": -1}])


def test_reregistering_replaces_the_workflow():
    engine = WorkflowEngine()
    engine.register_workflow("wf", [W(name="a")])
    graph = engine.register_workflow("wf", [W(name="b"), W(name="c", dependencies=["b"])])
    assert engine.get_workflow("wf") is graph and graph.names == ["b", "c"]


def test_processor_class_instead_of_instance_is_refused():
    class P(StepProcessor):
        async def execute(self, context, input_data):
            return StepResult.success("a", {})

    with pytest.raises(TypeError, match=r"^register_step_processor\('a', \.\.\.\) got the class P; pass an instance: P\(\)$"):
        WorkflowEngine().register_step_processor("a", P)


# -- misuse of execute_workflow ------------------------------------------------

def test_unknown_workflow():
    engine = WorkflowEngine()
    engine.register_workflow("known", [])
    with pytest.raises(UnknownWorkflowError, match=r"^no workflow named 'nope' is registered \(registered: 'known'\); call engine.register_workflow\('nope', steps\) first$"):
        asyncio.run(engine.execute_workflow("nope", "p"))


def test_missing_processors_fail_before_any_step_runs():
    ran = []
    engine = WorkflowEngine()
    engine.register_workflow("wf", [W(name="a"), W(name="b"), W(name="c")])
    engine.register_step_processor("a", lambda c, d: ran.append("a"))
    with pytest.raises(MissingProcessorError, match=r"^workflow 'wf' has steps without a processor: b, c; call engine.register_step_processor\(step_name, processor\) for each$") as info:
        asyncio.run(engine.execute_workflow("wf", "p"))
    assert info.value.missing == ["b", "c"] and ran == []


def test_same_project_twice_at_once_is_refused_but_again_after_is_fine():
    engine = engine_with([W(name="a", estimated_duration=0.05)])

    async def main():
        first = asyncio.create_task(engine.execute_workflow("wf", "p"))
        await asyncio.sleep(0)
        with pytest.raises(ProjectAlreadyRunningError, match=r"^project 'p' is already running \(workflow 'wf'\); wait for it, cancel it, or use another project_id$"):
            await engine.execute_workflow("wf", "p")
        assert (await first).is_successful
        assert (await engine.execute_workflow("wf", "p")).is_successful

    asyncio.run(main())


def test_one_engine_serves_successive_event_loops():
    engine = engine_with([W(name="a", estimated_duration=0.01, required_resources={"pool"}), W(name="b", dependencies=["a"])])
    for _ in range(3):
        assert asyncio.run(engine.execute_workflow("wf", "p")).is_successful


# -- processors --------------------------------------------------------------------

def test_sync_processors_run_off_the_loop_thread_and_results_are_coerced():
    seen = {}

    def sync(context, data):
        seen["thread"] = threading.get_ident()
        return {"x": 1}

    class Proc(StepProcessor):
        async def execute(self, context, input_data):
            seen["loop"] = threading.get_ident()
            return StepResult.success("wrong-name-is-fixed", {"y": input_data["x"] + 1})

    engine = engine_with([W(name="a"), W(name="b", dependencies=["a"]), W(name="c", dependencies=["b"])],
                         {"a": sync, "b": Proc(), "c": lambda ctx, d: None})
    result = asyncio.run(engine.execute_workflow("wf", "p"))
    assert result.is_successful
    assert seen["thread"] != seen["loop"]
    assert result.step_results["b"].output_data == {"y": 2} and result.step_results["b"].step_name == "b"
    assert result.step_results["c"].output_data == {}


def test_wrong_return_type_fails_the_step_with_a_clear_message():
    engine = engine_with([W(name="a")], {"a": lambda ctx, d: 42})
    result = asyncio.run(engine.execute_workflow("wf", "p"))
    assert result.error_summary == {"a": "the processor of step 'a' returned int; return a StepResult or a dict of outputs"}


def test_context_offers_upstream_outputs_and_providers():
    engine = WorkflowEngine()
    engine.register_workflow("wf", [W(name="a"), W(name="b", dependencies=["a"])])
    engine.register_resource("voice", {"speaker": "霊夢"})
    engine.register_step_processor("a", lambda ctx, d: {"text": "ゆっくりしていってね"})

    async def b(ctx, d):
        with pytest.raises(ResourceLimitError, match=r"^no resource provider named 'llm' is registered \(registered: 'voice'\); call engine.register_resource\('llm', provider\) before running$"):
            ctx.get_resource("llm")
        return {"line": f"{ctx.get_resource('voice')['speaker']}「{ctx.outputs['a']['text']}」", "deps": ctx.dependency_outputs}

    engine.register_step_processor("b", b)
    result = asyncio.run(engine.execute_workflow("wf", "p"))
    assert result.step_results["b"].output_data["line"] == "霊夢「ゆっくりしていってね」"
    assert result.step_results["b"].output_data["deps"] == {"a": {"text": "ゆっくりしていってね"}}


def test_process_processor_is_killed_on_timeout():
    engine = WorkflowEngine()
    engine.register_workflow("wf", [W(name="spin", timeout_seconds=1.0), W(name="ok")])
    engine.register_step_processor("spin", ProcessProcessor(_spin_forever))
    engine.register_step_processor("ok", ProcessProcessor(_square))
    result = asyncio.run(engine.execute_workflow("wf", "p", {"n": 12}))
    assert result.step_results["ok"].output_data == {"square": 144}
    assert result.step_results["spin"].error_type == "TimeoutError"
    assert "timed out after 1s" in result.error_summary["spin"]


def _spin_forever(data):
    while True:
        pass


def _square(data):
    return {"square": data["n"] ** 2}


# -- timeouts, retries, failures -------------------------------------------------

def test_timeout_fails_the_step_naming_step_and_limit():
    clock = VirtualClock()
    engine = engine_with([W(name="slow", estimated_duration=500), W(name="after", dependencies=["slow"])], clock=clock, default_timeout_seconds=300)
    result = clock.run(engine.execute_workflow("wf", "p"))
    assert result.error_summary == {"slow": "step 'slow' timed out after 300s (timeout_seconds=None, engine default 300s); raise its timeout_seconds or make it faster"}
    assert result.step_results["slow"].error_type == "TimeoutError"
    assert issubclass(EngineTimeoutError, TimeoutError) and issubclass(EngineTimeoutError, WorkflowEngineError)
    assert result.step_results["after"].status is StepStatus.SKIPPED
    assert result.step_results["after"].error_message == "upstream step 'slow' failed"
    assert clock.now() == pytest.approx(300)


def test_retry_policy_with_exponential_backoff_records_each_attempt():
    clock = VirtualClock()
    calls = []

    async def flaky(ctx, d):
        calls.append(clock.now())
        if ctx.attempt < 4:
            raise ConnectionError(f"try {ctx.attempt}")
        return {"ok": True}

    step = W(name="a", retry_policy=RetryPolicy(max_retries=3, retry_delay=1.0, backoff_factor=2.0))
    engine = engine_with([step], {"a": flaky}, clock=clock)
    result = clock.run(engine.execute_workflow("wf", "p"))
    assert result.is_successful
    assert calls == [0.0, 1.0, 3.0, 7.0]
    r = result.step_results["a"]
    assert r.attempts == 4
    assert [a.status for a in r.attempt_history] == [StepStatus.FAILED] * 3 + [StepStatus.COMPLETED]
    assert r.attempt_history[0].error_message == "ConnectionError: try 1"
    delays = [e.data["delay"] for e in engine.events("p") if e.kind is EventKind.STEP_RETRYING]
    assert delays == [1.0, 2.0, 4.0]


def test_retry_only_listed_exceptions_and_jitter_is_seeded():
    policy = RetryPolicy(max_retries=5, retry_on=(ConnectionError,), jitter=0.5, retry_delay=2, exponential_backoff=False)
    assert policy.should_retry(1, ConnectionError()) and not policy.should_retry(1, ValueError())
    assert not policy.should_retry(6, ConnectionError())
    import random

    a = [policy.delay_for(1, random.Random(7)) for _ in range(3)]
    b = [policy.delay_for(1, random.Random(7)) for _ in range(3)]
    assert a == b and all(1.0 <= x <= 3.0 for x in a)


def test_failure_skips_descendants_and_independent_branches_go_on():
    async def boom(ctx, d):
        raise ValueError("壊れた")

    steps = [W(name="a"), W(name="b", dependencies=["a"]), W(name="c", dependencies=["b"]), W(name="x"), W(name="y", dependencies=["x"])]
    engine = engine_with(steps, {"a": boom})
    result = asyncio.run(engine.execute_workflow("wf", "p"))
    statuses = {n: r.status.value for n, r in result.step_results.items()}
    assert statuses == {"a": "failed", "b": "skipped", "c": "skipped", "x": "completed", "y": "completed"}
    assert result.status is StepStatus.FAILED
    assert result.error_summary == {"a": "ValueError: 壊れた"}
    assert result.success_rate == pytest.approx(2 / 3)
    assert result.completion_percentage == pytest.approx(40.0)


def test_fail_fast_cancels_the_rest():
    clock = VirtualClock()

    async def boom(ctx, d):
        await asyncio.sleep(1)
        raise ValueError("boom")

    steps = [W(name="a", estimated_duration=1), W(name="long", estimated_duration=100), W(name="later", dependencies=["long"])]
    engine = engine_with(steps, {"a": boom}, clock=clock, max_concurrent_steps=2)
    result = clock.run(engine.execute_workflow("wf", "p", fail_fast=True))
    assert result.status is StepStatus.FAILED
    assert result.step_results["long"].status is StepStatus.CANCELLED
    assert result.step_results["later"].status is StepStatus.CANCELLED
    assert result.cancel_reason == "fail-fast: step 'a' failed"
    assert clock.now() == pytest.approx(1.0)


# -- control ---------------------------------------------------------------------

def test_pause_from_another_thread_stops_new_steps_and_resume_continues():
    engine = engine_with([W(name=f"s{i}", estimated_duration=0.05) for i in range(6)], max_concurrent_steps=1)

    async def main():
        handle = engine.start("wf", "p")
        await asyncio.sleep(0.02)
        result = {}
        t = threading.Thread(target=lambda: result.update(paused=engine.pause_workflow("p"), state=engine.get_execution_status("p").is_paused))
        t.start()
        t.join()
        assert result == {"paused": True, "state": True}
        assert engine.pause_workflow("p") is False  # already paused
        started_at_pause = engine.get_execution_status("p").completed_steps + engine.get_execution_status("p").running_steps
        await asyncio.sleep(0.3)
        state = engine.get_execution_status("p")
        assert state.completed_steps + state.running_steps == started_at_pause and state.running_steps == 0
        assert engine.resume_workflow("p") is True
        return await handle

    result = asyncio.run(main())
    assert result.is_successful
    kinds = [e.kind for e in engine.events("p")]
    assert EventKind.PAUSED in kinds and EventKind.RESUMED in kinds


def test_cancel_runs_finally_blocks_releases_units_and_reports_reason():
    finals = []

    async def long(ctx, d):
        try:
            await asyncio.sleep(60)
        finally:
            finals.append(ctx.step_name)

    steps = [W(name="a", required_resources={"enc"}), W(name="b", required_resources={"gpu"}), W(name="c", dependencies=["a"])]
    engine = engine_with(steps, {"a": long, "b": long})

    async def main():
        handle = engine.start("wf", "p")
        await asyncio.sleep(0.05)
        assert engine.resource_statistics()["enc"].in_use == 1
        assert handle.cancel("ユーザーによるキャンセル")
        assert not engine.cancel_workflow("p", "again")  # a second cancel is a no-op
        return await handle

    result = asyncio.run(main())
    assert result.status is StepStatus.CANCELLED and result.cancel_reason == "ユーザーによるキャンセル"
    assert sorted(finals) == ["a", "b"]
    assert {n: r.status.value for n, r in result.step_results.items()} == {"a": "cancelled", "b": "cancelled", "c": "cancelled"}
    assert all(s.in_use == 0 for s in engine.resource_statistics().values())
    assert engine.pause_workflow("p") is False and engine.resume_workflow("p") is False


def test_control_calls_from_a_progress_callback():
    engine = engine_with([W(name=f"s{i}") for i in range(5)], max_concurrent_steps=1)

    def callback(state):
        if state.completed_steps == 2:
            engine.cancel_workflow(state.project_id, "from callback")

    result = asyncio.run(engine.execute_workflow("wf", "p", progress_callback=callback))
    assert result.status is StepStatus.CANCELLED and result.completed_steps == 2


def test_cancelling_the_caller_cancels_the_run():
    engine = engine_with([W(name="a", estimated_duration=60)])

    async def main():
        task = asyncio.create_task(engine.execute_workflow("wf", "p"))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert engine.get_execution_status("p").status is StepStatus.CANCELLED
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

    asyncio.run(main())


def test_concurrency_limit_changes_while_running():
    clock = VirtualClock()
    engine = engine_with([W(name=f"s{i}", estimated_duration=1) for i in range(8)], clock=clock, max_concurrent_steps=1)

    async def main():
        asyncio.get_running_loop().call_later(2.5, setattr, engine, "max_concurrent_steps", 4)
        return await engine.execute_workflow("wf", "p")

    clock.run(main())
    starts = sorted(e.time for e in engine.events("p") if e.kind is EventKind.STEP_STARTED)
    assert starts == [0, 1, 2, 2.5, 2.5, 2.5, 3, 3.5]
    with pytest.raises(WorkflowEngineError, match=r"^max_concurrent_steps must be an int >= 1, got 0$"):
        engine.max_concurrent_steps = 0


def test_several_projects_share_the_engine_limit_and_pools():
    clock = VirtualClock()
    rm = ResourceManager({"enc": 1})
    engine = engine_with([W(name="a", estimated_duration=1), W(name="b", dependencies=["a"], estimated_duration=2, required_resources={"enc"})],
                         clock=clock, resource_manager=rm, max_concurrent_steps=2)

    async def main():
        return await asyncio.gather(*[engine.execute_workflow("wf", f"p{k}") for k in range(3)])

    results = clock.run(main())
    assert all(r.is_successful for r in results)
    # a: two at once (limit 2); b: one at a time (enc has 1 unit) -> 1 + 2 + 2 + 2
    assert clock.now() == pytest.approx(7.0)
    assert engine.plan_execution("wf").estimated_total_time == pytest.approx(3.0)


def test_progress_callback_errors_are_counted_not_fatal_and_async_callbacks_run():
    seen = []

    def bad(state):
        raise RuntimeError("callback bug")

    async def good(state):
        seen.append(state.completion_percentage)

    engine = engine_with([W(name="a"), W(name="b", dependencies=["a"])])
    result = asyncio.run(engine.execute_workflow("wf", "p", progress_callback=bad))
    assert result.is_successful and engine.get_execution_status("p").callback_errors > 0
    result = asyncio.run(engine.execute_workflow("wf", "p", progress_callback=good))
    assert result.is_successful and seen[-1] == 100.0


# -- state, ETA, plan ----------------------------------------------------------

def test_eta_accounts_for_parallelism_pools_and_learned_speed():
    clock = VirtualClock()
    steps = [W(name=f"s{i}", estimated_duration=10) for i in range(4)] + [W(name="enc", estimated_duration=10, required_resources={"e"}, dependencies=["s0"])]
    etas = {}

    def cb(state):
        etas.setdefault(state.completed_steps, state.estimate_remaining_time())

    processors = {f"s{i}": sleeper(5) for i in range(4)}  # twice as fast as estimated
    engine = engine_with(steps, processors, clock=clock, max_concurrent_steps=4)
    clock.run(engine.execute_workflow("wf", "p", progress_callback=cb))
    assert etas[0] == pytest.approx(20)  # critical path s0 -> enc, not the 50 s sum
    assert etas[4] == pytest.approx(5)  # enc alone, learned speed 0.5
    summary = engine.get_execution_status("p").get_status_summary()
    json.dumps(summary)
    assert summary["status"] == "completed" and summary["completion_percentage"] == 100.0


def test_plan_phases_makespan_and_requirements():
    engine = WorkflowEngine(resource_manager=ResourceManager({"llm_api": 1}), max_concurrent_steps=3)
    engine.register_workflow("wf", [
        W(name="theme", estimated_duration=30, required_resources={"llm_api"}),
        W(name="script", dependencies=["theme"], estimated_duration=120, required_resources={"llm_api"}, priority=StepPriority.HIGH),
        W(name="title", dependencies=["theme"], estimated_duration=60, required_resources={"llm_api"}),
        W(name="video", dependencies=["script", "title"], estimated_duration=10),
    ])
    plan = engine.plan_execution("wf", "p1")
    assert plan.phases == [["theme"], ["script", "title"], ["video"]] and plan.total_phases == 3
    assert plan.estimated_total_time == pytest.approx(220)  # llm_api serialises script and title
    assert plan.critical_path == ["theme", "script", "video"]
    assert plan.resource_requirements == {"llm_api": {"theme", "script", "title"}}
    assert plan.get_step_phase("title") == 1
    with pytest.raises(IndexError, match=r"^plan of 'wf' has phases 0..2, not 5$"):
        plan.get_phase_steps(5)
    assert engine.check_resource_availability("wf", "p1")
    engine.resource_manager.resource_pool["llm_api"] = 0
    assert not engine.check_resource_availability("wf", "p1")


def test_resource_manager_seed_compatibility():
    class Smart(ResourceManager):
        def __init__(self):
            super().__init__()
            self.resource_pool = {"llm_api": 3}

    rm = Smart()
    assert rm.capacity("llm_api") == 3 and rm.capacity("undeclared") == 1
    rm.resource_pool["llm_api"] += 1
    assert rm.capacity("llm_api") == 4
    with pytest.raises(ResourceLimitError, match=r"^release of pool 'x' without a matching acquire \(0 units in use\); release only what acquire_resource\(\) returned True for$"):
        rm.release_resource("x")

    async def waits():
        assert await rm.acquire_resource("undeclared")
        assert await rm.acquire_resource("undeclared", timeout=0.01) is False
        rm.release_resource("undeclared")
        assert rm.statistics()["undeclared"].in_use == 0

    asyncio.run(waits())


def test_core_imports_no_notebook_libraries():
    code = (
        "import sys, yukkuri_nb.core, yukkuri_nb.core.workflow_step, yukkuri_nb.core.workflow_exceptions, yukkuri_nb;"
        "bad = [m for m in ('ipywidgets', 'IPython', 'pandas', 'graphviz', 'matplotlib', 'numpy', 'nest_asyncio2', 'dask') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
