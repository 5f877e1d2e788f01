"""Scheduling-policy experiments for F and G (benchmark-only).

``python -m benchmarks.policies`` replays the planner's
:func:`~yukkuri_nb.core.plan.simulate_schedule` (the engine's own
:class:`~yukkuri_nb.core.scheduler.ReadyQueue`, so the same decisions the live
engine makes on the virtual clock) with parts of the policy switched off, on
F's 200 random DAGs and on G's batch, and prints how each compares with the
lower bound and with FIFO list scheduling:

* ``engine``: the policy of ``scheduler.py`` (run order, inherited priority,
  rank; claims with backfilling);
* ``no-backfill``: claims hold back every lower-ranked step needing the pool;
* ``no-claims``: greedy list scheduling by key (can starve a multi-pool step);
* ``own-priority``: each step's own priority, not inherited from descendants;
* ``priority-across-runs`` (G): step priority compared across runs before the
  run order (the policy before run ordering was introduced);
* ``schedule=...`` (F): the other orders a run can ask for, and
  ``"makespan"``, the best of them by simulation.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
from typing import Iterator

from . import contenders as C
from . import spec


def _queue_classes() -> dict[str, type]:
    from yukkuri_nb.core.scheduler import ReadyQueue

    class NoBackfill(ReadyQueue):
        def pop_startable(self, slots, try_acquire, horizon=None, fits=None, claims=None) -> Iterator[tuple]:  # type: ignore[override]
            return super().pop_startable(slots, try_acquire, claims=claims)

    class NoClaims(ReadyQueue):
        def pop_startable(self, slots, try_acquire, horizon=None, fits=None, claims=None) -> Iterator[tuple]:  # type: ignore[override]
            return super().pop_startable(slots, try_acquire, claims=lambda entry: False)

    class PriorityAcrossRuns(ReadyQueue):
        # keys (run order, -urgency, -rank, i, r) -> (-urgency, -rank, run order, i, r) inside the queue
        def push(self, entry, pools):  # type: ignore[override]
            super().push((entry[1], entry[2], entry[0], entry[3], entry[4]), pools)

        def pop_startable(self, *args) -> Iterator[tuple]:  # type: ignore[override]
            for e in super().pop_startable(*args):
                yield (e[2], e[0], e[1], e[3], e[4])

    return {"engine": ReadyQueue, "no-backfill": NoBackfill, "no-claims": NoClaims, "priority-across-runs": PriorityAcrossRuns}


def _graph(w: spec.Workload, inherit: bool, name: str = "x"):
    from yukkuri_nb.core.graph import DependencyResolver
    from yukkuri_nb.core.workflow_step import StepPriority, WorkflowStepDefinition

    steps = [
        WorkflowStepDefinition(name=t.name, display_name=t.name, dependencies=list(t.deps), priority=StepPriority(t.priority),
                               required_resources=set(t.pools), estimated_duration=t.duration)
        for t in w.tasks
    ]
    graph = DependencyResolver().resolve(name, steps)
    if not inherit:
        graph = dataclasses.replace(graph, urgency=tuple(int(s.priority) for s in graph.steps))
    return graph


def _simulate(graphs: list, w: spec.Workload, queue: type) -> float:
    import yukkuri_nb.core.plan as plan

    original = plan.ReadyQueue
    plan.ReadyQueue = queue
    try:
        return max(s.end for s in plan.simulate_schedule(graphs, w.max_concurrent, w.capacities))
    finally:
        plan.ReadyQueue = original


def main(argv: list[str] | None = None) -> int:
    instances = int((argv or sys.argv[1:] or ["200"])[0])
    queues = _queue_classes()
    print(f"F: {instances} random DAGs (simulate_schedule = the engine's decisions on estimated durations)")
    print("| policy | median makespan / LB | worst / FIFO | instances > 2% worse than FIFO |")
    print("|---|---|---|---|")
    dags = [spec.random_dag(seed) for seed in range(instances)]
    base = [(spec.lower_bound(w), C.list_schedule(w)) for w in dags]
    variants = [("engine", True), ("no-backfill", True), ("no-claims", True), ("engine", False)]
    for qname, inherit in variants:
        graphs = [_graph(w, inherit) for w in dags]
        ratios = [(_simulate([g], w, queues[qname]), lb, fifo) for g, w, (lb, fifo) in zip(graphs, dags, base)]
        med = statistics.median(m / lb for m, lb, _ in ratios)
        worst = max(m / fifo for m, _, fifo in ratios)
        bad = sum(m / fifo > 1.02 for m, _, fifo in ratios)
        print(f"| {qname if inherit else 'own-priority'} | {med:.4f} | {worst:.3f} | {bad} |")
    # The schedules a run can ask for (execute_workflow(schedule=...)), and
    # "makespan": the best of them by simulation, which the engine follows.
    import yukkuri_nb.core.plan as plan

    graphs = [_graph(w, True) for w in dags]
    spans = {
        kind: [max(s.end for s in plan.simulate_schedule([g], w.max_concurrent, w.capacities, schedules=[kind]))
               for g, w in zip(graphs, dags)]
        for kind in ("critical-path", "fifo")
    }
    spans["makespan (best of the three)"] = [
        min(x, y, _simulate([g], w, queues["engine"])) for x, y, g, w in zip(spans["critical-path"], spans["fifo"], graphs, dags)
    ]
    for kind, ms in spans.items():
        med = statistics.median(m / lb for m, (lb, _) in zip(ms, base))
        worst = max(m / fifo for m, (_, fifo) in zip(ms, base))
        bad = sum(m / fifo > 1.02 for m, (_, fifo) in zip(ms, base))
        print(f"| schedule={kind} | {med:.4f} | {worst:.3f} | {bad} |")
    steps, w = spec.seed_batch(20)
    bound = spec.lower_bound(w)
    single = spec.Workload(w.tasks[: len(steps)], w.max_concurrent, w.capacities)
    print(f"\nG: seed workflow x 20, bound {bound:.0f} s, FIFO {bound / C.list_schedule(w):.3f} of the bound")
    print("| policy | makespan | throughput / bound |")
    print("|---|---|---|")
    for qname, inherit in [*variants, ("priority-across-runs", True), ("priority-across-runs", False)]:
        g = _graph(single, inherit, "seed")
        m = _simulate([g] * 20, w, queues[qname])
        label = qname if inherit else f"{qname} + own-priority" if qname != "engine" else "own-priority"
        print(f"| {label} | {m:.0f} | {bound / m:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
