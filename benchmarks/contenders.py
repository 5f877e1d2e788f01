"""The engine and the baselines, each running a :class:`~benchmarks.spec.Workload`.

Wall-clock contenders (A-E, H) return the seconds the run took, measured
inside the event loop (or around ``dask.threaded.get``), with graph
construction and processor registration outside the timed region for
everyone.  Virtual-time contenders (F, G) return a makespan in virtual
seconds.
"""

from __future__ import annotations

import asyncio
import gc
import graphlib
import heapq
import time
from typing import Any, Callable

from .spec import Task, Workload


# ---------------------------------------------------------------- the engine
def build_engine(w: Workload, *, processor: Callable | None = None, clock: Any = None, **engine_kwargs: Any):
    """A fresh engine with ``w`` registered as workflow ``"bench"`` and one processor per step."""
    from yukkuri_nb.core import WorkflowEngine
    from yukkuri_nb.core.workflow_step import ResourceManager, StepPriority, WorkflowStepDefinition

    steps = [
        WorkflowStepDefinition(
            name=t.name, display_name=t.name, dependencies=list(t.deps), priority=StepPriority(t.priority),
            required_resources=set(t.pools), estimated_duration=t.duration,
        )
        for t in w.tasks
    ]
    engine = WorkflowEngine(
        resource_manager=ResourceManager(dict(w.capacities)), max_concurrent_steps=w.max_concurrent,
        default_timeout_seconds=3600, clock=clock, **engine_kwargs,
    )
    engine.register_workflow("bench", steps)
    if processor is None:
        processor = _noop
    for t in w.tasks:
        engine.register_step_processor(t.name, processor(t) if _is_factory(processor) else processor)
    return engine


async def _noop(context: Any, data: Any) -> None:
    return None


def _is_factory(fn: Callable) -> bool:
    return getattr(fn, "is_factory", False)


def sleeper(task: Task) -> Callable:
    """A processor factory: each step sleeps its own duration."""
    duration = task.duration

    async def step(context: Any, data: Any) -> None:
        await asyncio.sleep(duration)

    return step


sleeper.is_factory = True  # type: ignore[attr-defined]


def time_engine(engine: Any, project_id: str = "p") -> float:
    """Seconds of one ``execute_workflow`` of ``"bench"`` on a fresh loop (raises if it did not complete)."""

    async def main() -> float:
        t0 = time.perf_counter()
        result = await engine.execute_workflow("bench", project_id, {})
        elapsed = time.perf_counter() - t0
        if not result.is_successful:
            raise RuntimeError(f"engine run {project_id!r} ended {result.status.value}: {result.error_summary}")
        return elapsed

    # Collect the garbage of building the engine and its graph (10,000
    # pydantic step definitions) before the timed region, as the harness
    # does before every contender: otherwise the run pays the GC's full
    # collection for objects the registration made.
    gc.collect()
    return asyncio.run(main())


# ---------------------------------------------------------------- the floor
async def floor(w: Workload, step: Callable[[Task], Any] | None = None) -> None:
    """Hand-written asyncio: graphlib.TopologicalSorter + TaskGroup + semaphores.

    One task per ready step; a global semaphore for the concurrency limit and
    one per pool (taken in sorted order, so no deadlock).  No events, no
    history, no data flow: the least a correct scheduler must do.
    """
    by_name = {t.name: t for t in w.tasks}
    sorter = graphlib.TopologicalSorter({t.name: t.deps for t in w.tasks})
    sorter.prepare()
    limit = asyncio.Semaphore(w.max_concurrent)
    pools = {p: asyncio.Semaphore(c) for p, c in w.capacities.items()}
    for t in w.tasks:
        for p in t.pools:
            pools.setdefault(p, asyncio.Semaphore(1))

    async with asyncio.TaskGroup() as group:

        async def run(name: str) -> None:
            task = by_name[name]
            async with limit:
                held = [pools[p] for p in sorted(task.pools)]
                for sem in held:
                    await sem.acquire()
                try:
                    if step is not None:
                        await step(task)
                finally:
                    for sem in held:
                        sem.release()
            sorter.done(name)
            for ready in sorter.get_ready():
                group.create_task(run(ready))

        for ready in sorter.get_ready():
            group.create_task(run(ready))


def time_floor(w: Workload, step: Callable[[Task], Any] | None = None) -> float:
    async def main() -> float:
        t0 = time.perf_counter()
        await floor(w, step)
        return time.perf_counter() - t0

    return asyncio.run(main())


async def sleep_step(task: Task) -> None:
    await asyncio.sleep(task.duration)


def time_sleep_chains(w: Workload) -> float:
    """D without any scheduler: each pool unit a task sleeping its share of the steps back to back.

    The ideal schedule, executed by the loop's timers alone: how far this
    lands above the ideal makespan is what the event loop and the OS's
    wake-up latency cost, which no asyncio scheduler can get under.
    """
    (pool, cap), = w.capacities.items()
    shares = [w.tasks[k::cap] for k in range(cap)]

    async def chain(tasks: tuple[Task, ...]) -> None:
        for t in tasks:
            await asyncio.sleep(t.duration)

    async def main() -> float:
        t0 = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for share in shares:
                group.create_task(chain(share))
        return time.perf_counter() - t0

    return asyncio.run(main())


# ---------------------------------------------------------------- dask
def dask_available() -> bool:
    try:
        import dask.threaded  # noqa: F401
    except ImportError:
        return False
    return True


def dask_graph(w: Workload, fn: Callable) -> dict:
    return {t.name: (fn, *t.deps) for t in w.tasks}


def _dask_noop(*args: Any) -> None:
    return None


def time_dask(w: Workload, fn: Callable = _dask_noop) -> float:
    """Dask's threaded scheduler on the same graph, ``num_workers`` = the concurrency limit."""
    import dask.threaded

    dsk = dask_graph(w, fn)
    keys = [t.name for t in w.tasks]
    t0 = time.perf_counter()
    dask.threaded.get(dsk, keys, num_workers=w.max_concurrent)
    return time.perf_counter() - t0


def dask_pooled_sleep(w: Workload) -> Callable:
    """A dask task function for D: the pool is a ``threading.Semaphore`` held while sleeping."""
    import threading

    (pool, cap), = w.capacities.items()
    sem = threading.BoundedSemaphore(cap)
    duration = w.tasks[0].duration

    def fn(*args: Any) -> None:
        with sem:
            time.sleep(duration)

    return fn


# ---------------------------------------------------------------- virtual time
def engine_makespan(w: Workload, schedule: str = "priority") -> float:
    """The real engine on a :class:`VirtualClock`, each step sleeping its duration."""
    from yukkuri_nb.core import VirtualClock

    clock = VirtualClock()
    engine = build_engine(w, processor=sleeper, clock=clock)
    result = clock.run(engine.execute_workflow("bench", "p", {}, schedule=schedule))
    if not result.is_successful:
        raise RuntimeError(f"virtual engine run ended {result.status.value}: {result.error_summary}")
    return result.execution_time_seconds


def list_schedule(w: Workload, tasks: list[Task] | None = None, start: float = 0.0) -> float:
    """FIFO list scheduling: whenever something ends, start ready steps in the order they became
    ready (ties by definition order) if a slot and all their pools are free; returns the end time.

    Greedy and claim-free (a blocked step does not hold back later ones).
    """
    tasks = list(w.tasks) if tasks is None else tasks
    names = {t.name for t in tasks}
    index = {t.name: k for k, t in enumerate(tasks)}
    children: dict[str, list[str]] = {t.name: [] for t in tasks}
    missing = {}
    for t in tasks:
        inside = [d for d in t.deps if d in names]
        missing[t.name] = len(inside)
        for d in inside:
            children[d].append(t.name)
    in_use: dict[str, int] = {}
    cap = w.capacities
    ready: list[tuple[float, int, str]] = [(start, index[t.name], t.name) for t in tasks if missing[t.name] == 0]
    ready.sort()
    running: list[tuple[float, int, str]] = []
    by_name = {t.name: t for t in tasks}
    now = start
    end = start
    while ready or running:
        still = []
        for entry in ready:
            t = by_name[entry[2]]
            if len(running) < w.max_concurrent and all(in_use.get(p, 0) < cap.get(p, 1) for p in t.pools):
                for p in t.pools:
                    in_use[p] = in_use.get(p, 0) + 1
                heapq.heappush(running, (now + t.duration, index[t.name], t.name))
            else:
                still.append(entry)
        ready = still
        if not running:
            raise RuntimeError("list_schedule: nothing can run (a pool of capacity 0?)")
        now = running[0][0]
        newly = []
        while running and running[0][0] <= now:
            _, _, name = heapq.heappop(running)
            end = max(end, now)
            for p in by_name[name].pools:
                in_use[p] -= 1
            for c in children[name]:
                missing[c] -= 1
                if missing[c] == 0:
                    newly.append((now, index[c], c))
        ready.extend(sorted(newly))
    return end


def phase_barrier(w: Workload) -> float:
    """Phase by phase: every step of topological level k (FIFO list-scheduled) before any of level k+1."""
    level: dict[str, int] = {}
    for t in w.tasks:
        level[t.name] = 1 + max((level[d] for d in t.deps), default=-1)
    phases: dict[int, list[Task]] = {}
    for t in w.tasks:
        phases.setdefault(level[t.name], []).append(t)
    now = 0.0
    for k in sorted(phases):
        now = list_schedule(w, phases[k], now)
    return now
