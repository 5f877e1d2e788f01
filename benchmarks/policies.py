"""Scheduling-policy experiments for F and G (benchmark-only; the engine's policy is untouched).

``python -m benchmarks.policies`` replays the planner's
:func:`~yukkuri_nb.core.plan.simulate_schedule` (the engine's own
:class:`~yukkuri_nb.core.scheduler.ReadyQueue`, so the same decisions the live
engine makes on the virtual clock) with variants of the policy, on F's 200
random DAGs and on G's batch, and prints how each compares with the lower
bound and with FIFO list scheduling:

* ``claims``: the engine today: every blocked group claims all its pools for
  the rest of the pass;
* ``first-claim``: only the best-ranked blocked step claims its pools (it
  still cannot be starved: it is the one that gets the units as they free);
* ``no-claims``: greedy list scheduling by key (can starve a multi-pool step);
* ``inherit``: a step's priority is raised to the highest priority among its
  descendants before ranking (a HIGH step cannot start before its ancestors,
  so holding the ancestors back at LOW defeats the HIGH);
* ``run-first``: across runs, the run that started first goes first (within a
  run: priority, rank, definition order); only matters for G.
"""

from __future__ import annotations

import heapq
import statistics
import sys
from typing import Iterator

from . import contenders as C
from . import spec


def _queue_classes() -> dict[str, type]:
    from yukkuri_nb.core.scheduler import ReadyQueue

    class FirstClaim(ReadyQueue):
        def pop_startable(self, slots, try_acquire) -> Iterator[tuple]:  # type: ignore[override]
            groups = self._groups
            blocked: set = set()
            claimed: set = set()
            have_claim = False
            while slots > 0 and self._size:
                best_pools = best_head = None
                for pools, heap in groups.items():
                    if pools not in blocked and (best_head is None or heap[0] < best_head):
                        best_head, best_pools = heap[0], pools
                if best_pools is None:
                    return
                if best_pools and (not claimed.isdisjoint(best_pools) or not try_acquire(best_pools)):
                    blocked.add(best_pools)
                    if not have_claim:
                        claimed.update(best_pools)
                        have_claim = True
                    continue
                heap = groups[best_pools]
                entry = heapq.heappop(heap)
                if not heap:
                    del groups[best_pools]
                self._size -= 1
                slots -= 1
                yield entry

    class NoClaims(ReadyQueue):
        def pop_startable(self, slots, try_acquire) -> Iterator[tuple]:  # type: ignore[override]
            groups = self._groups
            blocked: set = set()
            while slots > 0 and self._size:
                best_pools = best_head = None
                for pools, heap in groups.items():
                    if pools not in blocked and (best_head is None or heap[0] < best_head):
                        best_head, best_pools = heap[0], pools
                if best_pools is None:
                    return
                if best_pools and not try_acquire(best_pools):
                    blocked.add(best_pools)
                    continue
                heap = groups[best_pools]
                entry = heapq.heappop(heap)
                if not heap:
                    del groups[best_pools]
                self._size -= 1
                slots -= 1
                yield entry

    def run_first(base: type) -> type:
        class RunFirst(base):  # keys (prio, rank, run, index) -> (run, prio, rank, index) inside the queue
            def push(self, entry, pools):  # type: ignore[override]
                super().push((entry[2], entry[0], entry[1], entry[3]), pools)

            def pop_startable(self, slots, try_acquire):  # type: ignore[override]
                for e in super().pop_startable(slots, try_acquire):
                    yield (e[1], e[2], e[0], e[3])

        return RunFirst

    return {
        "claims": ReadyQueue, "first-claim": FirstClaim, "no-claims": NoClaims,
        "claims+run-first": run_first(ReadyQueue), "first-claim+run-first": run_first(FirstClaim),
    }


def _graph(w: spec.Workload, inherit: bool, name: str = "x"):
    from yukkuri_nb.core.graph import DependencyResolver
    from yukkuri_nb.core.workflow_step import StepPriority, WorkflowStepDefinition

    priority = {t.name: t.priority for t in w.tasks}
    if inherit:
        children: dict[str, list[str]] = {t.name: [] for t in w.tasks}
        for t in w.tasks:
            for d in t.deps:
                children[d].append(t.name)
        for t in reversed(w.tasks):  # tasks are in topological order
            priority[t.name] = max([priority[t.name], *(priority[c] for c in children[t.name])])
    steps = [
        WorkflowStepDefinition(name=t.name, display_name=t.name, dependencies=list(t.deps), priority=StepPriority(priority[t.name]),
                               required_resources=set(t.pools), estimated_duration=t.duration)
        for t in w.tasks
    ]
    return DependencyResolver().resolve(name, steps)


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
    for inherit in (False, True):
        graphs = [_graph(w, inherit) for w in dags]
        for qname in ("claims", "first-claim", "no-claims"):
            ratios = [(_simulate([g], w, queues[qname]), lb, fifo) for g, w, (lb, fifo) in zip(graphs, dags, base)]
            med = statistics.median(m / lb for m, lb, _ in ratios)
            worst = max(m / fifo for m, _, fifo in ratios)
            bad = sum(m / fifo > 1.02 for m, _, fifo in ratios)
            print(f"| {qname}{' + inherit' if inherit else ''} | {med:.4f} | {worst:.3f} | {bad} |")
    steps, w = spec.seed_batch(20)
    bound = spec.lower_bound(w)
    single = spec.Workload(w.tasks[: len(steps)], w.max_concurrent, w.capacities)
    print(f"\nG: seed workflow x 20, bound {bound:.0f} s, FIFO {bound / C.list_schedule(w):.3f} of the bound")
    print("| policy | makespan | throughput / bound |")
    print("|---|---|---|")
    for inherit in (False, True):
        g = _graph(single, inherit, "seed")
        for qname, queue in queues.items():
            m = _simulate([g] * 20, w, queue)
            print(f"| {qname}{' + inherit' if inherit else ''} | {m:.0f} | {bound / m:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
