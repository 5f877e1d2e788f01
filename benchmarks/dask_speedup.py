"""Dask speed-up: 8 CPU-bound pure-Python steps, one machine's threads vs a 2-worker LocalCluster.

``python -m benchmarks.dask_speedup [--runs 5] [--steps 8] [--n 60000] [--json PATH]``

Both contenders are the same engine and workflow (``steps`` independent
steps, ``max_concurrent_steps=steps``), only the executor differs:

* ``threads``: ``ThreadExecutor(workers)`` in the engine's process; the GIL
  lets one step compute at a time;
* ``dask``: ``DaskExecutor`` on ``LocalCluster(n_workers=workers,
  threads_per_worker=1, processes=True)``; each worker process has its own GIL.

Each step counts the primes below ``n`` by trial division (pure Python, no
I/O).  Runs alternate between the contenders after one warm-up each; the
cluster's start-up is timed apart and not part of a run.  Reported: medians of
the wall times and the speed-up ``threads / dask`` (close to ``workers`` on a
machine with that many idle cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from yukkuri_nb.core import WorkflowEngine
from yukkuri_nb.core.executors import ThreadExecutor
from yukkuri_nb.core.workflow_step import StepStatus, WorkflowStepDefinition


def count_primes(context, data):
    """The CPU-bound step: primes below ``data['n']`` by trial division."""
    n = data["n"]
    found = 0
    for k in range(2, n):
        if all(k % d for d in range(2, int(k**0.5) + 1)):
            found += 1
    return {"primes": found, "pid": os.getpid()}


def build(executor, steps: int) -> WorkflowEngine:
    engine = WorkflowEngine(max_concurrent_steps=steps, executor=executor)
    engine.register_workflow("cpu", [WorkflowStepDefinition(name=f"s{i}") for i in range(steps)])
    for i in range(steps):
        engine.register_step_processor(f"s{i}", count_primes)
    return engine


def timed_run(engine: WorkflowEngine, n: int, tag: str) -> tuple[float, set[int]]:
    t0 = time.perf_counter()
    result = engine.execute_workflow_sync("cpu", tag, {"n": n})
    elapsed = time.perf_counter() - t0
    if result.status is not StepStatus.COMPLETED:
        raise RuntimeError(f"benchmark run {tag!r} did not complete: {result.error_summary}")
    return elapsed, {r.output_data["pid"] for r in result.step_results.values()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dask_speedup", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per contender (median reported)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes, and threads of the baseline")
    parser.add_argument("--n", type=int, default=200_000, help="primes below n, per step")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    from distributed import Client, LocalCluster

    from yukkuri_nb.distributed import DaskExecutor

    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = Client(cluster)
    startup = time.perf_counter() - t0
    engines = {"threads": build(ThreadExecutor(args.workers), args.steps), "dask": build(DaskExecutor(client), args.steps)}
    times: dict[str, list[float]] = {name: [] for name in engines}
    pids: dict[str, set[int]] = {name: set() for name in engines}
    try:
        for name, engine in engines.items():  # warm-up: imports in the workers, thread start
            timed_run(engine, args.n, f"warm-{name}")
        for run in range(args.runs):
            for name, engine in engines.items():
                elapsed, used = timed_run(engine, args.n, f"{name}-{run}")
                times[name].append(elapsed)
                pids[name] |= used
    finally:
        for engine in engines.values():
            engine.close()
        client.close()
        cluster.close()

    medians = {name: statistics.median(values) for name, values in times.items()}
    figures = {
        "steps": args.steps,
        "workers": args.workers,
        "n": args.n,
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "cluster_startup_seconds": round(startup, 3),
        "times": {name: [round(t, 3) for t in values] for name, values in times.items()},
        "medians": {name: round(t, 3) for name, t in medians.items()},
        "speedup": round(medians["threads"] / medians["dask"], 2),
        "processes_used": {name: len(p) for name, p in pids.items()},
    }
    print(f"{args.steps} CPU-bound steps (primes below {args.n}), {args.workers} workers, {os.cpu_count()} CPUs, "
          f"medians of {args.runs} runs (cluster start-up {startup:.2f} s, not included)")
    print("| contender | median s | runs s |")
    print("|---|---|---|")
    for name in engines:
        print(f"| {name} | {medians[name]:.2f} | {', '.join(f'{t:.2f}' for t in times[name])} |")
    print(f"speed-up threads / dask: {figures['speedup']:.2f}x "
          f"(steps ran in {figures['processes_used']['dask']} worker processes)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
