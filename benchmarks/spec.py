"""Workload graphs as plain data, shared by the engine and every baseline.

A :class:`Task` names its dependencies, its duration (seconds; 0 for no-op
steps), its priority (``StepPriority`` value) and the pools it needs (one
unit each).  Every generator is seeded, so each contender sees the same graph.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    deps: tuple[str, ...] = ()
    duration: float = 0.0
    priority: int = 2
    pools: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Workload:
    """One graph plus the limits it runs under."""

    tasks: tuple[Task, ...]
    max_concurrent: int
    capacities: dict[str, int] = field(default_factory=dict)


def independent(n: int, max_concurrent: int = 16) -> Workload:
    """A and E: ``n`` independent no-op steps."""
    return Workload(tuple(Task(f"s{i}") for i in range(n)), max_concurrent)


def layered(layers: int = 100, width: int = 100, fan_in: int = 3, seed: int = 0, max_concurrent: int = 16) -> Workload:
    """B: ``layers`` x ``width`` no-op steps, each needing ``fan_in`` random steps of the previous layer."""
    rng = random.Random(seed)
    tasks = []
    for layer in range(layers):
        for j in range(width):
            deps = () if layer == 0 else tuple(f"l{layer - 1}_{k}" for k in sorted(rng.sample(range(width), fan_in)))
            tasks.append(Task(f"l{layer}_{j}", deps))
    return Workload(tuple(tasks), max_concurrent)


def chain(n: int = 2000, max_concurrent: int = 16) -> Workload:
    """C: a chain of ``n`` no-op steps."""
    return Workload(tuple(Task(f"c{i}", (f"c{i - 1}",) if i else ()) for i in range(n)), max_concurrent)


def pooled_sleeps(n: int = 200, duration: float = 0.010, capacity: int = 8, max_concurrent: int = 16) -> Workload:
    """D: ``n`` independent sleeps, each holding one unit of a pool of ``capacity``."""
    pool = frozenset({"pool"})
    return Workload(tuple(Task(f"d{i}", (), duration, 2, pool) for i in range(n)), max_concurrent, {"pool": capacity})


_PRIORITY_MIX = (2,) * 14 + (3,) * 3 + (1,) * 2 + (4,)  # mostly NORMAL, some HIGH / LOW / CRITICAL


def random_dag(seed: int) -> Workload:
    """F: a seeded random DAG of 20-200 steps with durations, priorities and 3-4 pools.

    Steps are generated in topological order; each depends on 0-3 earlier
    steps (preferring recent ones, so graphs have both depth and width).
    Durations are log-uniform in [1, 30] s; each step needs 0-2 pools.
    """
    rng = random.Random(seed)
    n = rng.randint(20, 200)
    pools = [f"pool{k}" for k in range(rng.randint(3, 4))]
    capacities = {p: rng.randint(1, 4) for p in pools}
    max_concurrent = rng.randint(3, 8)
    tasks = []
    for i in range(n):
        deps: set[str] = set()
        if i:
            for _ in range(rng.choice((0, 1, 1, 2, 2, 3))):
                lo = max(0, i - rng.choice((5, 20, i)))
                deps.add(f"t{rng.randrange(lo, i)}")
        duration = round(10 ** rng.uniform(0, 1.477), 3)
        needs = frozenset(rng.sample(pools, rng.choice((0, 1, 1, 1, 2))))
        tasks.append(Task(f"t{i}", tuple(sorted(deps, key=lambda s: int(s[1:]))), duration, rng.choice(_PRIORITY_MIX), needs))
    return Workload(tuple(tasks), max_concurrent, capacities)


def seed_batch(projects: int = 20, max_concurrent: int = 6) -> tuple[list, Workload]:
    """G: the seed's complete workflow, once per project, as one combined graph (for the baselines)."""
    from yukkuri_nb.demo import seed_steps

    steps = seed_steps()
    tasks = []
    for p in range(projects):
        for s in steps:
            tasks.append(
                Task(f"p{p}.{s.name}", tuple(f"p{p}.{d}" for d in s.dependencies), s.estimated_duration,
                     int(s.priority), frozenset(s.required_resources))
            )
    caps = {"llm_api": 3, "tts_api": 2, "video_encoder": 1, "storage": 5}
    return steps, Workload(tuple(tasks), max_concurrent, caps)


def lower_bound(w: Workload, default_capacity: int = 1) -> float:
    """max(critical path, each pool's work / capacity, total work / max concurrency)."""
    finish: dict[str, float] = {}
    for t in w.tasks:  # tasks are listed in topological order
        finish[t.name] = t.duration + max((finish[d] for d in t.deps), default=0.0)
    bound = max(finish.values(), default=0.0)
    bound = max(bound, sum(t.duration for t in w.tasks) / w.max_concurrent)
    pool_work: dict[str, float] = {}
    for t in w.tasks:
        for p in t.pools:
            pool_work[p] = pool_work.get(p, 0.0) + t.duration
    for p, work in pool_work.items():
        bound = max(bound, work / w.capacities.get(p, default_capacity))
    return bound
