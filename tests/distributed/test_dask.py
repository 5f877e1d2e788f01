"""DaskExecutor on a real LocalCluster: two worker processes (with nannies), real pipeline steps.

One cluster serves the module.  Tests that kill a worker run last and wait
for the nanny to bring it back, so every test starts with two workers.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import threading

import pytest

distributed = pytest.importorskip("distributed", reason="the dask extra is part of dev: pip install -e '.[dev]'")

from yukkuri_nb.core import EventKind, WorkflowEngine
from yukkuri_nb.core.workflow_step import RetryPolicy, StepStatus, WorkflowStepDefinition as W
from yukkuri_nb.distributed import DaskExecutor

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # a free port: other clusters may be running
        resources={"ENCODER": 1},
        silence_logs=40,  # the kill tests make the nanny log warnings
    ) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture
def client(cluster):
    cluster.wait_for_workers(2, timeout=60)
    return cluster


def worker_pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


# -- processors (module level: the workers import this module) ---------------

def count_primes(context, data):
    """CPU-bound pure Python: the primes below ``data['n']``, reporting progress."""
    n = data["n"]
    found = 0
    for k in range(2, n):
        if all(k % d for d in range(2, int(k**0.5) + 1)):
            found += 1
        if k % 2000 == 0:
            context.report_progress(k / n, f"{k} / {n}")
    return {"primes": found, "pid": os.getpid(), "worker": distributed.get_worker().address}


def add_up(context, data):
    return {"total": sum(out["primes"] for out in context.dependency_outputs.values()), "pid": os.getpid()}


def spin_until_cancelled(context, data):
    """Loop until the engine's cancel reaches this worker, then leave a marker."""
    try:
        while True:
            sum(range(20_000))
            context.report_progress(0.5, "spinning")
    finally:
        pathlib.Path(data["marker"]).write_text(str(os.getpid()))


def die_once(context, data):
    """The first attempt kills its own worker process; later ones return."""
    marker = pathlib.Path(data["marker"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return {"pid": os.getpid(), "attempt": context.attempt}


def own_restrictions(context, data):
    worker = distributed.get_worker()
    return {"restrictions": dict(worker.state.tasks[worker.get_current_task()].resource_restrictions)}


def wait_for(predicate, what: str, seconds: float = 30.0) -> None:
    """Poll ``predicate`` (a hang guard, not a timing assertion)."""
    import time

    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def dask_engine(client, steps, processors, **kwargs) -> WorkflowEngine:
    engine = WorkflowEngine(executor=DaskExecutor(client, resources=kwargs.pop("resources", None)), **kwargs)
    engine.register_workflow("wf", steps)
    for name, fn in processors.items():
        engine.register_step_processor(name, fn)
    return engine


# -- tests -------------------------------------------------------------------

def test_cpu_bound_steps_run_in_the_worker_processes_and_results_come_back(client):
    steps = [W(name=f"p{i}") for i in range(4)] + [W(name="sum", dependencies=[f"p{i}" for i in range(4)])]
    engine = dask_engine(client, steps, {**{f"p{i}": count_primes for i in range(4)}, "sum": add_up}, max_concurrent_steps=4)

    result = engine.execute_workflow_sync("wf", "cpu", {"n": 20_000})

    assert result.status is StepStatus.COMPLETED, result.error_summary
    outputs = {name: r.output_data for name, r in result.step_results.items()}
    assert all(outputs[f"p{i}"]["primes"] == 2262 for i in range(4))  # pi(20000)
    assert outputs["sum"]["total"] == 4 * 2262
    pids = {out["pid"] for out in outputs.values()}
    assert os.getpid() not in pids and pids <= worker_pids(client)
    # Both workers took part, and the history says where each step ran.
    assert len({outputs[f"p{i}"]["worker"] for i in range(4)}) == 2
    logs = [e.data["message"] for e in engine.events("cpu") if e.kind is EventKind.LOG]
    assert sum(m.startswith("running on Dask worker tcp://") for m in logs) == 5


def test_sub_progress_from_a_worker_reaches_the_engine_state(client):
    engine = dask_engine(client, [W(name="primes")], {"primes": count_primes})
    seen: list[tuple[float, str]] = []

    def observe(event):  # what the dashboard does: read the live state on each event
        if event.kind is EventKind.STEP_PROGRESS:
            state = engine.get_execution_status("progress")
            seen.append((state.step_progress["primes"], state.step_messages["primes"]))

    engine.subscribe(observe)
    result = engine.execute_workflow_sync("wf", "progress", {"n": 12_001})

    assert result.status is StepStatus.COMPLETED
    # Every report made before the processor returned is in the state,
    # whatever the throttle let through in between.
    assert seen and seen[-1] == (12_000 / 12_001, "12000 / 12001")
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)


def test_the_real_yukkuri_pipeline_runs_on_the_cluster(client, tmp_path):
    from yukkuri_nb.pipeline.workflow import register_yukkuri_workflow

    engine = WorkflowEngine(executor=DaskExecutor(client))
    register_yukkuri_workflow(engine, output_dir=tmp_path)
    result = engine.execute_workflow_sync("yukkuri_video", "dask-video", {
        "user_preferences": {"preferred_genres": ["歴史"], "target_audience": "初心者", "content_style": "ゆるい"},
        "target_length_minutes": 0.2,
        "video_settings": {"resolution": "320x180", "title_card_seconds": 0.5},
        "seed": 3,
    })

    assert result.status is StepStatus.COMPLETED, result.error_summary
    video = result.step_results["video_composition"].output_data
    assert pathlib.Path(video["video_path"]).stat().st_size > 10_000 and video["video"]["resolution"] == "320x180"
    track = result.step_results["tts_generation"].output_data
    assert track["audio_duration"] > 1.0 and pathlib.Path(track["audio_path"]).exists()
    events = engine.events("dask-video")
    ran_on = {e.step: e.data["message"] for e in events if e.kind is EventKind.LOG}
    assert len(ran_on) == 7 and all(m.startswith("running on Dask worker") for m in ran_on.values())
    assert {str(p) for p in worker_pids(client)} >= {m.rsplit("pid ", 1)[1].rstrip(")") for m in ran_on.values()}
    assert any(e.kind is EventKind.STEP_PROGRESS and e.step == "tts_generation" for e in events)


def test_per_step_override_sends_only_that_step_to_the_cluster(client):
    engine = WorkflowEngine()  # in-process by default
    engine.register_executor("cluster", DaskExecutor(client))
    engine.register_workflow("wf", [W(name="here"), W(name="there", executor="cluster")])
    engine.register_step_processor("here", lambda ctx, data: {"pid": os.getpid()})
    engine.register_step_processor("there", count_primes)

    result = engine.execute_workflow_sync("wf", "mixed", {"n": 100})

    assert result.step_results["here"].output_data["pid"] == os.getpid()
    assert result.step_results["there"].output_data["pid"] in worker_pids(client)


def test_cancel_reaches_the_worker_and_stops_the_step(client, tmp_path):
    marker = tmp_path / "stopped"
    engine = dask_engine(client, [W(name="spin")], {"spin": spin_until_cancelled})

    async def go():
        handle = engine.start("wf", "cancel", {"marker": str(marker)})
        while engine.get_execution_status("cancel").step_messages.get("spin") != "spinning":
            await asyncio.sleep(0.02)
        assert engine.cancel_workflow("cancel", "enough")
        return await handle

    result = asyncio.run(go())

    assert result.status is StepStatus.CANCELLED
    assert result.step_results["spin"].status is StepStatus.CANCELLED
    # exists() can be true before write_text() wrote the pid: wait for the content.
    wait_for(lambda: marker.exists() and marker.read_text(), "the worker to stop the cancelled step")
    assert int(marker.read_text()) in worker_pids(client)
    wait_for(lambda: not any(client.processing().values()), "the scheduler to drop the task")


def test_a_timeout_cancels_the_dask_task(client, tmp_path):
    marker = tmp_path / "stopped"
    engine = dask_engine(client, [W(name="spin", timeout_seconds=1)], {"spin": spin_until_cancelled})

    result = engine.execute_workflow_sync("wf", "timeout", {"marker": str(marker)})

    assert result.status is StepStatus.FAILED
    assert result.step_results["spin"].error_type == "TimeoutError"
    wait_for(marker.exists, "the worker to stop the timed-out step")


def test_pools_map_to_dask_worker_resources(client):
    engine = dask_engine(
        client,
        [W(name="encode", required_resources={"video_encoder"}), W(name="gpu", required_resources={"gpu"})],
        {"encode": own_restrictions, "gpu": own_restrictions},
        resources={"video_encoder": "ENCODER", "gpu": {"GPU": 1}},
    )
    engine.register_resource("video_encoder", capacity=2)
    engine.register_resource("gpu", capacity=1)

    result = engine.execute_workflow_sync("wf", "resources")

    assert result.step_results["encode"].output_data == {"restrictions": {"ENCODER": 1.0}}
    gpu = result.step_results["gpu"]
    assert gpu.status is StepStatus.FAILED
    assert gpu.error_message == (
        "step 'gpu' needs Dask worker resources {'GPU': 1.0} (executor 'dask', resources={'video_encoder': "
        "{'ENCODER': 1.0}, 'gpu': {'GPU': 1.0}}), which no worker of the cluster has; start workers with e.g. "
        "dask worker --resources \"GPU=1\" or LocalCluster(resources={...}), or drop the pool from "
        "DaskExecutor(resources=...)"
    )


def test_unpicklable_input_fails_the_step_with_a_fix(client):
    engine = dask_engine(client, [W(name="a")], {"a": count_primes})

    result = engine.execute_workflow_sync("wf", "pickle", {"n": 10, "lock": threading.Lock()})

    message = result.step_results["a"].error_message
    assert message.startswith("step 'a' cannot be sent to Dask (executor 'dask'): its processor or input data could not be pickled")
    assert message.endswith("or run the step with executor='inprocess'")


def raises(context, data):
    if data["kind"] == "stop":
        raise StopIteration("no more")
    raise KeyError(data["kind"])


def test_a_processor_error_on_a_worker_fails_the_step_with_that_error(client):
    engine = dask_engine(client, [W(name="a")], {"a": raises})
    key_error = engine.execute_workflow_sync("wf", "key", {"kind": "missing"}).step_results["a"]
    stop = engine.execute_workflow_sync("wf", "stop", {"kind": "stop"}).step_results["a"]
    assert (key_error.status, key_error.error_type) == (StepStatus.FAILED, "KeyError")
    assert stop.error_type == "RuntimeError" and stop.error_message == "RuntimeError: " + (
        "the processor of step 'a' raised StopIteration; raise an ordinary exception to fail a step"
    )


def test_bad_resource_mapping_and_client_are_refused(client):
    with pytest.raises(ValueError, match=r"^DaskExecutor\(resources=\.\.\.\): pool 'video_encoder' maps to 3; map it to a Dask worker resource name"):
        DaskExecutor(client, resources={"video_encoder": 3})
    with pytest.raises(TypeError, match=r"^DaskExecutor\(client\) needs a distributed\.Client, got str; "):
        DaskExecutor("tcp://scheduler:8786")


def test_missing_dask_is_reported_with_the_install_command():
    code = "import sys; sys.modules['distributed'] = None\nimport yukkuri_nb.core, yukkuri_nb.distributed"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert 'install it with: pip install "yukkuri_nb[dask]"' in done.stderr.splitlines()[-1]


# The two tests below kill a worker process; the nanny restarts it and the
# ``client`` fixture waits for it, so they stay independent.

def test_a_worker_killed_mid_step_is_retried_per_the_policy(client, tmp_path):
    marker = tmp_path / "died"
    policy = RetryPolicy(max_retries=1, retry_delay=0)
    engine = dask_engine(client, [W(name="fragile", retry_policy=policy)], {"fragile": die_once})

    result = engine.execute_workflow_sync("wf", "killed-retry", {"marker": str(marker)})

    step = result.step_results["fragile"]
    assert result.status is StepStatus.COMPLETED, result.error_summary
    assert step.output_data["attempt"] == 2 and step.output_data["pid"] != int(marker.read_text())
    first, second = step.attempt_history
    assert (first.status, first.error_type) == (StepStatus.FAILED, "WorkerLostError")
    assert first.error_message.endswith(
        "left the cluster while running it (executor 'dask'); give the step a RetryPolicy(max_retries=...) "
        "to run it again on another worker"
    )
    assert second.status is StepStatus.COMPLETED


def test_a_worker_killed_mid_step_fails_the_step_without_retries(client, tmp_path):
    engine = dask_engine(client, [W(name="fragile")], {"fragile": die_once})

    result = engine.execute_workflow_sync("wf", "killed", {"marker": str(tmp_path / "died")})

    step = result.step_results["fragile"]
    assert result.status is StepStatus.FAILED
    assert step.error_type == "WorkerLostError" and step.attempts == 1
    assert step.error_message.startswith("step 'fragile': Dask worker tcp://")
