"""Bad input everywhere: each gets a clear error or a documented no-op, and the engine stays usable.

After every test, the autouse fixture checks every engine the test made:
all pool units are back, no run is live, and a small workflow (an async and
a sync step, a pooled step) still runs to completion.  Runs go through
:func:`drive`, which also asserts that no asyncio task is left pending when
the run's coroutine returns or raises.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from yukkuri_nb.core import (
    CycleError,
    ResourceManager,
    StepStatus,
    WorkflowEngine,
    WorkflowEngineError,
)
from yukkuri_nb.core.workflow_step import StepResult, WorkflowStepDefinition as W

from .helpers import assert_engine_idle, assert_no_pending_tasks

_ENGINES: list[WorkflowEngine] = []


def make_engine(**kwargs: Any) -> WorkflowEngine:
    """An engine with pool ``gpu`` (1 unit) that the autouse fixture checks after the test."""
    kwargs.setdefault("resource_manager", ResourceManager({"gpu": 1}))
    kwargs.setdefault("default_timeout_seconds", 60)  # a hang guard, never reached by a passing test
    engine = WorkflowEngine(**kwargs)
    _ENGINES.append(engine)
    return engine


def drive(coro_fn: Callable[[], Any]) -> Any:
    """``asyncio.run`` of ``coro_fn()``; asserts no task is pending afterwards, whether it returned or raised."""

    async def main():
        try:
            return await coro_fn()
        finally:
            await assert_no_pending_tasks()

    return asyncio.run(main())


def assert_usable(engine: WorkflowEngine) -> None:
    assert_engine_idle(engine)

    async def a(context, data):
        return {"a": 1}

    engine.register_workflow("probe", [W(name="probe_a", required_resources={"gpu"}), W(name="probe_b", dependencies=["probe_a"])])
    engine.register_step_processor("probe_a", a)
    engine.register_step_processor("probe_b", lambda context, data: {"b": data["a"] + 1})
    result = drive(lambda: engine.execute_workflow("probe", "probe-project", {}))
    assert result.status is StepStatus.COMPLETED and result.step_results["probe_b"].output_data == {"b": 2}
    assert_engine_idle(engine)


@pytest.fixture(autouse=True)
def _engines_stay_usable():
    _ENGINES.clear()
    yield
    engines = list(_ENGINES)
    _ENGINES.clear()
    for engine in engines:
        assert_usable(engine)
        engine.close()


def abc_engine(processor_a: Any, **kwargs: Any) -> WorkflowEngine:
    """a (pool gpu) -> b; c independent (pool gpu)."""
    engine = make_engine(**kwargs)
    engine.register_workflow("abc", [W(name="a", required_resources={"gpu"}), W(name="b", dependencies=["a"]),
                                     W(name="c", required_resources={"gpu"})])
    engine.register_step_processor("a", processor_a)
    for name in "bc":
        engine.register_step_processor(name, lambda context, data: {})
    return engine


# -- malformed definitions -----------------------------------------------------

_junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=4),
                  st.lists(st.text(max_size=2), max_size=3), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))
_names = st.sampled_from(["a", "b", "c", "d"])
_field = {
    "name": st.one_of(_names, _junk),
    "display_name": st.one_of(st.text(max_size=5), _junk),
    "dependencies": st.one_of(st.lists(_names, max_size=3), _junk),
    "priority": st.one_of(st.sampled_from([1, 2, 3, 4]), _junk),
    "timeout_seconds": st.one_of(st.none(), st.floats(0.5, 60), _junk),
    "estimated_duration": st.one_of(st.floats(0, 10), _junk),
    "required_resources": st.one_of(st.sets(st.sampled_from(["gpu", "llm"]), max_size=2), _junk),
    "bogus_field": _junk,
}


@st.composite
def definitions(draw) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(_junk)  # not even a list
    steps = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.integers(0, 9)) == 0:
            steps.append(draw(_junk))
            continue
        keys = draw(st.sets(st.sampled_from(sorted(_field)), max_size=4)) | {"name"}
        steps.append({k: draw(_field[k]) for k in keys if k != "bogus_field" or draw(st.integers(0, 4)) == 0})
    return steps


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=definitions())
# Found by this test in a CI run (the unknown-dependency message did not
# name the workflow first); always checked since.
@example(steps=[{"estimated_duration": 0.0, "dependencies": [""], "name": "a"}])
@example(steps=[{"name": "a", "dependencies": ["b"]}])
def test_malformed_definitions_are_refused_clearly_or_run(steps: Any) -> None:
    engine = make_engine()
    try:
        graph = engine.register_workflow("wf", steps)
    except WorkflowEngineError as exc:
        message = str(exc)
        assert message.startswith("workflow 'wf'"), message
        assert "Traceback" not in message and len(message) < 2000
        assert "wf" not in engine.workflows
        _ENGINES.remove(engine)  # nothing ran: the usability check of a later example covers it
        assert_engine_idle(engine)
        return
    # Accepted: it runs, every step completes, in dependency order.
    order: list[str] = []

    async def step(context, data):
        order.append(context.step_name)
        return {context.step_name: True}

    for s in graph.steps:
        engine.register_step_processor(s.name, step)
    result = drive(lambda: engine.execute_workflow("wf", "p", {}))
    assert result.status is StepStatus.COMPLETED and result.completed_steps == len(graph.steps)
    for s in graph.steps:
        assert all(order.index(d) < order.index(s.name) for d in s.dependencies)
    _ENGINES.remove(engine)
    assert_usable(engine)


_wrong = st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=3), st.binary(max_size=3),
                   st.lists(st.integers(), max_size=2), st.tuples(st.integers()))


@settings(max_examples=60, deadline=None)
@given(workflow=_wrong, project=_wrong, initial=_wrong, callback=_wrong)
def test_wrong_argument_types_raise_before_any_step_runs(workflow: Any, project: Any, initial: Any, callback: Any) -> None:
    engine = abc_engine(lambda context, data: {})
    calls = []
    engine.register_step_processor("c", lambda context, data: calls.append(1))
    args = [("abc", workflow), ("p", project), ({}, initial), (None, callback)]
    for k in range(4):  # one wrong argument at a time
        call = [good for good, _ in args]
        call[k] = args[k][1]
        if call == [good for good, _ in args]:
            continue  # the "wrong" value happens to be a right one (None input / callback)
        if (k == 2 and call[2] is None) or (k == 1 and isinstance(call[1], str) and call[1]):
            continue  # no input is {}; any non-empty string is a project id
        with pytest.raises((WorkflowEngineError, TypeError)) as info:
            drive(lambda: engine.execute_workflow(*call))
        assert "must be" in str(info.value) or "no workflow named" in str(info.value), str(info.value)
    assert calls == []
    _ENGINES.remove(engine)
    assert_usable(engine)


@pytest.mark.parametrize("bad", [42, "not callable", None, object()])
def test_registering_a_non_processor_names_the_step(bad: Any) -> None:
    engine = make_engine()
    with pytest.raises(TypeError, match=r"^register_step_processor\('tts', \.\.\.\) needs a StepProcessor or a function"):
        engine.register_step_processor("tts", bad)


@pytest.mark.parametrize("limit", [0, -1, 1.5, "3", True, None])
def test_bad_limits_are_refused(limit: Any) -> None:
    with pytest.raises(WorkflowEngineError, match=r"^max_concurrent_steps must be an int >= 1, got "):
        WorkflowEngine(max_concurrent_steps=limit)
    engine = make_engine()
    with pytest.raises(WorkflowEngineError, match=r"^max_concurrent_steps must be an int >= 1, got "):
        engine.max_concurrent_steps = limit
    assert engine.max_concurrent_steps == 3


# -- huge graphs ---------------------------------------------------------------

def test_a_100000_step_graph_registers_plans_and_names_a_long_cycle_briefly() -> None:
    n = 100_000
    # 1,000 chains of 100 steps, each chain starting after the previous one's head.
    steps = [W(name=f"s{i}", dependencies=[f"s{i - 1}"] if i % 100 else ([f"s{i - 100}"] if i else []),
               estimated_duration=1.0) for i in range(n)]
    engine = make_engine()
    graph = engine.register_workflow("big", steps)
    assert len(graph.steps) == n
    plan = engine.plan_execution("big")
    assert plan.total_phases == 99 + 1000  # the head of chain k is in phase k; its chain adds 99
    assert len(plan.critical_path) == plan.total_phases and plan.critical_path_time == 1099.0

    cyclic = [*steps[:-1], steps[-1].model_copy(update={"dependencies": ["s99998"]})]
    cyclic[0] = cyclic[0].model_copy(update={"dependencies": ["s99999"]})
    with pytest.raises(CycleError) as info:
        engine.register_workflow("loop", cyclic)
    assert len(info.value.cycle) > 1000  # the error carries the whole cycle ...
    assert len(str(info.value)) < 500  # ... but its message stays readable
    assert "steps in all" in str(info.value) and "remove one of these dependencies" in str(info.value)
    assert "loop" not in engine.workflows


# -- processors that misbehave ---------------------------------------------------

class CustomBaseException(BaseException):
    """Not an Exception: escapes ``except Exception`` in naive code."""


def _raise(exc: BaseException) -> Callable[[], None]:
    def go() -> None:
        raise exc

    return go


# (what the processor does, what the step's error says)
_BAD_PROCESSORS: dict[str, tuple[Callable[[], Any], str]] = {
    "returns int": (lambda: 7, "the processor of step 'a' returned int; return a StepResult or a dict of outputs"),
    "returns str": (lambda: "done", "the processor of step 'a' returned str; return a StepResult or a dict of outputs"),
    "returns list": (lambda: [1, 2], "the processor of step 'a' returned list; return a StepResult or a dict of outputs"),
    "returns set": (lambda: {"x"}, "the processor of step 'a' returned set; return a StepResult or a dict of outputs"),
    "returns generator": (lambda: (x for x in ()), "the processor of step 'a' returned generator; return a StepResult"),
    "returns bad status": (lambda: StepResult("a", "bogus"), "the processor of step 'a' returned a StepResult with status 'bogus'"),
    "returns running": (lambda: StepResult("a", StepStatus.RUNNING), "returned a StepResult with status 'running'"),
    "returns list output": (lambda: StepResult("a", StepStatus.COMPLETED, output_data=[1]),
                            "returned a StepResult whose output_data is list"),
    "returns str metadata": (lambda: StepResult("a", StepStatus.COMPLETED, metadata="m"),
                             "returned a StepResult whose metadata is str"),
    "raises custom BaseException": (_raise(CustomBaseException("自作")), "CustomBaseException: 自作"),
    "raises GeneratorExit": (_raise(GeneratorExit()), "GeneratorExit"),
    "raises StopIteration": (_raise(StopIteration()), "raised StopIteration"),
    "raises StopAsyncIteration": (_raise(StopAsyncIteration()), "StopAsyncIteration"),
    "raises CancelledError": (_raise(asyncio.CancelledError()), "step 'a' raised CancelledError although neither the step nor its run was cancelled"),
    "raises MemoryError": (_raise(MemoryError()), "MemoryError"),
}


@settings(max_examples=60, deadline=None)
@given(behaviour=st.sampled_from(sorted(_BAD_PROCESSORS)), is_async=st.booleans(), executor=st.sampled_from([None, "thread"]))
def test_misbehaving_processors_fail_their_step_only(behaviour: str, is_async: bool, executor: str | None) -> None:
    act, message = _BAD_PROCESSORS[behaviour]

    async def async_processor(context, data):
        return act()

    def sync_processor(context, data):
        return act()

    engine = abc_engine(async_processor if is_async else sync_processor, executor=executor)
    result = drive(lambda: engine.execute_workflow("abc", "p", {}))
    a = result.step_results["a"]
    assert a.status is StepStatus.FAILED
    assert message in a.error_message
    assert result.step_results["b"].status is StepStatus.SKIPPED
    assert result.step_results["c"].status is StepStatus.COMPLETED  # the rest of the run goes on
    assert result.status is StepStatus.FAILED
    _ENGINES.remove(engine)
    assert_usable(engine)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3)], ids=["KeyboardInterrupt", "SystemExit"])
@pytest.mark.parametrize("is_async", [True, False], ids=["async", "sync"])
def test_keyboard_interrupt_or_exit_in_a_step_cancels_its_run(exc: BaseException, is_async: bool) -> None:
    """Documented: the step fails and its run is cancelled (as Ctrl-C would); the process goes on."""
    act = _raise(exc)

    async def async_processor(context, data):
        act()

    def sync_processor(context, data):
        act()

    engine = abc_engine(async_processor if is_async else sync_processor, max_concurrent_steps=1)
    result = drive(lambda: engine.execute_workflow("abc", "p", {}))
    assert result.status is StepStatus.CANCELLED
    assert result.step_results["a"].status is StepStatus.FAILED
    assert result.cancel_reason == f"{type(exc).__name__} in step 'a'"
    assert {result.step_results[s].status for s in "bc"} == {StepStatus.CANCELLED}


# -- callbacks that raise or block -------------------------------------------------

@pytest.mark.parametrize("exc", [ValueError("壊れた"), CustomBaseException()], ids=["Exception", "BaseException"])
def test_a_raising_progress_callback_is_counted_and_the_run_goes_on(exc: BaseException) -> None:
    engine = abc_engine(lambda context, data: {})

    def callback(state):
        raise exc

    result = drive(lambda: engine.execute_workflow("abc", "p", {}, callback))
    assert result.status is StepStatus.COMPLETED
    assert engine.get_execution_status("p").callback_errors > 0


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_in_a_callback_cancels_the_run(exc: type[BaseException]) -> None:
    """Documented: as in a step, KeyboardInterrupt / SystemExit in a progress callback cancels the run."""
    engine = abc_engine(lambda context, data: {}, max_concurrent_steps=1)

    def callback(state):
        if state.completed_steps:
            raise exc

    result = drive(lambda: engine.execute_workflow("abc", "p", {}, callback))
    assert result.status is StepStatus.CANCELLED
    assert result.cancel_reason == f"{exc.__name__} in the progress callback"
    assert result.completed_steps == 1 and engine.get_execution_status("p").callback_errors >= 1


def test_a_blocking_sync_callback_delays_but_does_not_break_the_run() -> None:
    """Documented: a sync callback runs on the loop thread, so while it blocks no step starts or ends."""
    engine = abc_engine(lambda context, data: {})
    calls = []

    def callback(state):
        calls.append(state.completed_steps)
        time.sleep(0.01)

    result = drive(lambda: engine.execute_workflow("abc", "p", {}, callback))
    assert result.status is StepStatus.COMPLETED and calls[-1] == 3


def test_an_async_callback_that_never_returns_is_cancelled_after_the_grace_period() -> None:
    engine = abc_engine(lambda context, data: {})
    engine.callback_grace_seconds = 0.05
    started = []

    async def callback(state):
        started.append(1)
        await asyncio.Event().wait()  # never set

    result = drive(lambda: engine.execute_workflow("abc", "p", {}, callback))
    assert result.status is StepStatus.COMPLETED and started


# -- control calls at the wrong time ----------------------------------------------

def test_cancelling_twice_pausing_a_finished_run_and_unknown_projects_are_no_ops() -> None:
    engine = make_engine()
    engine.register_workflow("slow", [W(name="wait"), W(name="after", dependencies=["wait"])])
    answers: list[Any] = []

    async def wait(context, data):
        answers.append(engine.cancel_workflow("p", "一回目"))
        answers.append(engine.cancel_workflow("p", "二回目"))  # twice: no-op
        await asyncio.sleep(30)  # cancelled long before

    engine.register_step_processor("wait", wait)
    engine.register_step_processor("after", lambda context, data: {})
    result = drive(lambda: engine.execute_workflow("slow", "p", {}))
    assert answers == [True, False]
    assert result.status is StepStatus.CANCELLED and result.cancel_reason == "一回目"

    # After the end, every control call is a no-op returning False.
    assert engine.cancel_workflow("p") is False
    assert engine.pause_workflow("p") is False
    assert engine.resume_workflow("p") is False
    # Unknown project ids: no-ops and empty answers, never an exception.
    for unknown in ("nope", "", "../../etc"):
        assert engine.cancel_workflow(unknown) is False
        assert engine.pause_workflow(unknown) is False
        assert engine.resume_workflow(unknown) is False
        assert engine.get_execution_status(unknown) is None
        assert engine.get_step_result(unknown, "wait") is None
        assert engine.get_result(unknown) is None
        assert engine.events(unknown) == []
    assert engine.get_step_result("p", "no-such-step") is None


def test_pause_then_cancel_then_resume_a_paused_run() -> None:
    engine = abc_engine(lambda context, data: {}, max_concurrent_steps=1)
    answers: list[bool] = []
    done = []

    def callback(state):
        if state.step_statuses["a"] is StepStatus.COMPLETED and not done:
            done.append(1)  # first: these calls emit events, which call back here
            answers.append(engine.pause_workflow("p"))
            answers.append(engine.pause_workflow("p"))  # pausing twice: no-op
            answers.append(engine.cancel_workflow("p", "止める"))
            answers.append(engine.resume_workflow("p"))  # resuming a cancelled run: no-op

    result = drive(lambda: engine.execute_workflow("abc", "p", {}, callback))
    assert answers == [True, False, True, False]
    assert result.status is StepStatus.CANCELLED
