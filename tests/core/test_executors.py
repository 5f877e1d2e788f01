"""Executors: where steps run (thread pool, killable child processes), chosen per engine or per step."""

from __future__ import annotations

import asyncio
import os
import pathlib
import threading
import time

import pytest

from yukkuri_nb.core import EventKind, WorkflowEngine
from yukkuri_nb.core.executors import ProcessExecutor, ThreadExecutor, UnknownExecutorError
from yukkuri_nb.core.workflow_step import RetryPolicy, StepStatus, WorkflowStepDefinition as W

pytestmark = pytest.mark.timeout(60)


# Module level: the process executor's children import them (spawn).
def where(context, data):
    return {"pid": os.getpid(), "thread": threading.current_thread().name, "x2": data.get("x", 0) * 2}


def spin_then_mark(context, data):
    """Never returns by itself: only a kill stops it (the marker would say otherwise)."""
    pathlib.Path(data["pidfile"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sum(range(10_000))
    pathlib.Path(data["pidfile"] + ".finished").write_text("not killed")
    return {}


def report(context, data):
    for i in range(1, 4):
        context.report_progress(i / 4, f"part {i}")  # a new message each time: never throttled
    context.log("done in a child")
    return {"pid": os.getpid()}


def die(context, data):
    os._exit(3)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose (its parent reaps it soon).
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def engine_for(steps, processors, **kwargs) -> WorkflowEngine:
    engine = WorkflowEngine(**kwargs)
    engine.register_workflow("wf", steps)
    for name, fn in processors.items():
        engine.register_step_processor(name, fn)
    return engine


def test_thread_executor_runs_sync_steps_in_its_own_threads():
    engine = engine_for([W(name="a")], {"a": where}, executor=ThreadExecutor(2, name="io"))
    out = engine.execute_workflow_sync("wf", "p", {"x": 21}).step_results["a"].output_data
    assert out["x2"] == 42 and out["pid"] == os.getpid() and out["thread"].startswith("yukkuri_nb-io")
    engine.close()


def test_process_executor_returns_results_from_a_child_process():
    engine = engine_for([W(name="a"), W(name="b", dependencies=["a"])], {"a": where, "b": where}, executor="process")
    result = engine.execute_workflow_sync("wf", "p", {"x": 5})
    engine.close()
    assert result.status is StepStatus.COMPLETED
    a, b = (result.step_results[n].output_data for n in "ab")
    assert a["x2"] == b["x2"] == 10 and a["pid"] != os.getpid() and b["pid"] != os.getpid()


def test_a_step_overrides_the_engine_executor():
    engine = engine_for(
        [W(name="local"), W(name="child", executor="process")], {"local": where, "child": where}
    )
    result = engine.execute_workflow_sync("wf", "p")
    engine.close()
    assert result.step_results["local"].output_data["pid"] == os.getpid()
    assert result.step_results["child"].output_data["pid"] != os.getpid()


def test_a_registered_executor_is_used_by_name_and_unknown_names_are_refused():
    engine = engine_for([W(name="a", executor="encoders")], {"a": where})
    with pytest.raises(UnknownExecutorError, match=r"^step 'a' asks for executor 'encoders', which is not registered \(known: 'inprocess', 'process', 'thread'\); call engine.register_executor\('encoders', executor\) first$"):
        engine.execute_workflow_sync("wf", "p")
    engine.register_executor("encoders", ThreadExecutor(1, name="encoders"))
    out = engine.execute_workflow_sync("wf", "p2").step_results["a"].output_data
    engine.close()
    assert out["thread"].startswith("yukkuri_nb-encoders")


def test_a_process_step_that_times_out_is_killed(tmp_path):
    pidfile = str(tmp_path / "pid")
    engine = engine_for([W(name="spin", timeout_seconds=1.5)], {"spin": spin_then_mark}, executor=ProcessExecutor(1))
    result = engine.execute_workflow_sync("wf", "p", {"pidfile": pidfile})
    engine.close()
    assert result.step_results["spin"].error_type == "TimeoutError"
    pid = int(pathlib.Path(pidfile).read_text())
    assert pid != os.getpid() and not process_alive(pid)
    assert not pathlib.Path(pidfile + ".finished").exists()


def test_a_cancelled_process_step_is_killed(tmp_path):
    pidfile = tmp_path / "pid"
    engine = engine_for([W(name="spin")], {"spin": spin_then_mark}, executor="process")

    async def go():
        handle = engine.start("wf", "p", {"pidfile": str(pidfile)})
        while not pidfile.exists() or not pidfile.read_text():
            await asyncio.sleep(0.02)
        engine.cancel_workflow("p", "stop")
        return await handle

    result = asyncio.run(go())
    engine.close()
    assert result.status is StepStatus.CANCELLED
    assert not process_alive(int(pidfile.read_text()))


def test_progress_and_logs_from_a_child_reach_the_engine_state():
    engine = engine_for([W(name="r")], {"r": report}, executor="process")
    seen: list[tuple[float, str]] = []

    def observe(event):
        if event.kind is EventKind.STEP_PROGRESS:
            state = engine.get_execution_status("p")
            seen.append((state.step_progress["r"], state.step_messages["r"]))

    engine.subscribe(observe)
    result = engine.execute_workflow_sync("wf", "p")
    engine.close()
    assert result.status is StepStatus.COMPLETED
    assert seen == [(0.25, "part 1"), (0.5, "part 2"), (0.75, "part 3")]
    assert [e.data["message"] for e in engine.events("p") if e.kind is EventKind.LOG] == ["done in a child"]


def test_a_dead_child_is_a_worker_lost_error_and_is_retried_per_the_policy():
    engine = engine_for(
        [W(name="d", retry_policy=RetryPolicy(max_retries=1, retry_delay=0))], {"d": die}, executor="process"
    )
    result = engine.execute_workflow_sync("wf", "p")
    engine.close()
    step = result.step_results["d"]
    assert step.status is StepStatus.FAILED and step.attempts == 2
    assert [a.error_type for a in step.attempt_history] == ["WorkerLostError", "WorkerLostError"]
    assert "died with exit code 3 before returning a result (executor 'process')" in step.error_message
