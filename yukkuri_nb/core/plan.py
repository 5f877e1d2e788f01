"""Execution plans: phases, predicted makespan, pool requirements.

:func:`simulate_schedule` replays the engine's scheduling policy
(:mod:`~yukkuri_nb.core.scheduler`) on estimated durations, without asyncio,
to predict when each step would start and end under a concurrency limit and
pool capacities.  ``plan_execution`` uses it for ``estimated_total_time``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from .graph import complete_graph
from .scheduler import SCHEDULES, ReadyQueue, claim_horizon, claims_units, step_key

if TYPE_CHECKING:  # pragma: no cover
    from .graph import WorkflowGraph
    from .state import WorkflowExecutionState

__all__ = ["WorkflowExecutionPlan", "simulate_schedule", "ScheduledStep"]


@dataclass(frozen=True, slots=True)
class ScheduledStep:
    """One step of a simulated schedule."""

    name: str
    start: float
    end: float
    slot: int
    project: int = 0


@dataclass
class WorkflowExecutionPlan:
    """How a workflow will run: its phases, predicted makespan and pool needs.

    ``phases[i]`` lists steps that can run in parallel (topological levels);
    ``estimated_total_time`` is the makespan predicted under the engine's
    concurrency and pool limits.  The seed builds plans by keyword with the
    first six fields; the rest are filled in by ``plan_execution``.
    """

    project_id: str
    workflow_name: str
    phases: list[list[str]]
    total_phases: int
    estimated_total_time: float
    resource_requirements: dict[str, set[str]]
    critical_path: list[str] = field(default_factory=list)
    critical_path_time: float = 0.0
    total_work: float = 0.0
    max_concurrent_steps: int | None = None
    pool_capacities: dict[str, int] = field(default_factory=dict)
    schedule: list[ScheduledStep] = field(default_factory=list)
    graph: "WorkflowGraph | None" = field(default=None, repr=False, compare=False)

    def get_phase_steps(self, phase_index: int) -> list[str]:
        """Steps of phase ``phase_index`` (0-based); raises ``IndexError`` naming the valid range."""
        if not 0 <= phase_index < len(self.phases):
            raise IndexError(
                f"plan of {self.workflow_name!r} has phases 0..{len(self.phases) - 1}, not {phase_index}"
            )
        return list(self.phases[phase_index])

    def get_step_phase(self, step_name: str) -> int:
        """Phase index (0-based) of ``step_name``; raises ``KeyError`` if the step is not in the plan."""
        for i, phase in enumerate(self.phases):
            if step_name in phase:
                return i
        raise KeyError(f"step {step_name!r} is not in the plan of {self.workflow_name!r}")

    @property
    def lower_bound(self) -> float:
        """No schedule can beat this: max(critical path, work / concurrency, pool work / capacity)."""
        if self.graph is None:
            return self.critical_path_time
        return makespan_lower_bound([self.graph], self.max_concurrent_steps or 1, self.pool_capacities.get, 1)

    def schedule_makespans(self) -> dict[str, float]:
        """The predicted makespan of this workflow alone under each schedule, on its estimates.

        ``{"priority": ..., "critical-path": ..., "fifo": ...}`` under the
        plan's limits: what ``execute_workflow(..., schedule="makespan")``
        chooses from, and what following the step priorities costs here
        (``"priority"`` against the smallest).  ``inf`` for every schedule
        when a pool the workflow needs has capacity 0; a plan built by hand
        (no graph) gives its ``estimated_total_time`` for each.
        """
        if self.graph is None or not self.graph.steps:
            return dict.fromkeys(SCHEDULES, 0.0 if self.graph is not None else self.estimated_total_time)
        if any(c <= 0 for c in self.pool_capacities.values()):
            return dict.fromkeys(SCHEDULES, float("inf"))
        runs = simulate_each_schedule(self.graph, self.max_concurrent_steps or 1, self.pool_capacities, SCHEDULES)
        return {kind: max(s.end for s in steps) for kind, steps in runs.items()}

    def to_graphviz(self, state: "WorkflowExecutionState | None" = None, **kwargs: Any) -> Any:
        """A ``graphviz.Digraph`` of the plan, coloured by ``state`` if given (needs ``yukkuri_nb.viz``)."""
        from importlib import import_module

        return import_module("yukkuri_nb.viz.plan").plan_to_graphviz(self, state=state, **kwargs)

    def to_dot(self, state: "WorkflowExecutionState | None" = None, **kwargs: Any) -> str:
        """The DOT source of :meth:`to_graphviz`."""
        return self.to_graphviz(state=state, **kwargs).source

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        try:
            return self.to_graphviz()._repr_mimebundle_(include, exclude)
        except Exception:
            return {"text/plain": self.describe()}

    def describe(self) -> str:
        """A plain-text description (phases, makespan, critical path)."""
        lines = [
            f"plan {self.workflow_name!r} for {self.project_id!r}: {self.total_phases} phases, "
            f"~{self.estimated_total_time:.1f}s"
        ]
        for i, phase in enumerate(self.phases):
            lines.append(f"  phase {i + 1}: {', '.join(phase)}")
        if self.critical_path:
            lines.append(f"  critical path: {' -> '.join(self.critical_path)} ({self.critical_path_time:.1f}s)")
        return "\n".join(lines)


def makespan_lower_bound(
    graphs: Sequence["WorkflowGraph"],
    max_concurrent_steps: int,
    capacity: Callable[[str], int | None],
    default_capacity: int = 1,
) -> float:
    """max(longest critical path, total work / concurrency, each pool's work / its capacity)."""
    chain = max((g.critical_path_length for g in graphs), default=0.0)
    work = 0.0
    pool_work: dict[str, float] = {}
    for g in graphs:
        for step in g.steps:
            work += step.estimated_duration
            for p in step.required_resources:
                pool_work[p] = pool_work.get(p, 0.0) + step.estimated_duration
    bound = max(chain, work / max(1, max_concurrent_steps))
    for p, w in pool_work.items():
        cap = capacity(p)
        cap = default_capacity if cap is None else cap
        if cap > 0:
            bound = max(bound, w / cap)
    return bound


def simulate_each_schedule(
    graph: "WorkflowGraph", max_concurrent_steps: int, capacities: Mapping[str, int], schedules: Iterable[str],
) -> dict[str, list[ScheduledStep]]:
    """:func:`simulate_schedule` of ``graph`` alone once per schedule, in the order given."""
    return {kind: simulate_schedule([graph], max_concurrent_steps, capacities, schedules=[kind]) for kind in schedules}


def simulate_schedule(
    graphs: Sequence["WorkflowGraph"],
    max_concurrent_steps: int,
    capacities: Mapping[str, int] | None = None,
    *,
    default_capacity: int = 1,
    durations: Callable[[int, int], float] | None = None,
    priorities: Sequence[int] | None = None,
    schedules: Sequence[str] | None = None,
) -> list[ScheduledStep]:
    """Schedule several runs (one per graph) with the engine's policy on estimated durations.

    Runs start in list order, so earlier graphs are served first (as runs
    started earlier are); ``priorities`` gives each run's priority (default
    NORMAL) and ``schedules`` the order each run's steps are taken in (one of
    :data:`~yukkuri_nb.core.scheduler.SCHEDULES`, default ``"priority"``).
    ``durations(project, index)`` overrides a step's duration
    (backfilling still plans with the estimates, as the engine does).  Returns one
    :class:`ScheduledStep` per step, in start order.  Raises ``ValueError``
    if a pool some step needs has capacity 0 (the run could never finish).
    """
    caps = dict(capacities or {})
    in_use: dict[str, int] = {}

    def cap(p: str) -> int:
        return caps.get(p, default_capacity)

    for g in graphs:
        for pools in g.pools:
            for p in pools:
                if cap(p) <= 0:
                    raise ValueError(f"pool {p!r} has capacity 0; a step of {g.name!r} needs it")

    def try_acquire(pools: frozenset[str]) -> bool:
        if any(in_use.get(p, 0) >= cap(p) for p in pools):
            return False
        for p in pools:
            in_use[p] = in_use.get(p, 0) + 1
        return True

    ready = ReadyQueue()
    missing = [[len(ps) for ps in g.parents] for g in graphs]
    orders = [(-int(p), r) for r, p in enumerate(priorities or [2] * len(graphs))]
    graphs = [complete_graph(g) for g in graphs]
    urgencies = [g.urgency for g in graphs]

    kinds = list(schedules or ["priority"] * len(graphs))
    for kind in kinds:
        if kind not in SCHEDULES:
            raise ValueError(f"schedule {kind!r} is not one of {', '.join(SCHEDULES)}")

    def push(r: int, i: int) -> None:
        # The engine's key (Dispatcher._queue), with the run's index for the run.
        k1, k2 = step_key(kinds[r], urgencies[r][i], graphs[r].rank[i], now)
        ready.push((orders[r], k1, k2, i, r), graphs[r].pools[i])

    def claims(entry: tuple) -> bool:
        return claims_units(kinds[entry[4]])

    def horizon(pools: frozenset[str]) -> float:
        holders = [(graphs[r].pools[i], end) for (r, i), end in est_ends.items()]
        return claim_horizon(now, pools, lambda p: in_use.get(p, 0) - cap(p) + 1, holders)

    def fits(entry: tuple, until: float) -> bool:
        est = graphs[entry[4]].steps[entry[3]].estimated_duration
        return est > 0 and now + est <= until

    now = 0.0
    for r, g in enumerate(graphs):
        for i in range(len(g)):
            if not g.parents[i]:
                push(r, i)
    free_slots = list(range(max(1, max_concurrent_steps)))
    heapq.heapify(free_slots)
    running: list[tuple[float, int, int, int]] = []  # (end, r, i, slot)
    est_ends: dict[tuple[int, int], float | None] = {}  # pooled running steps -> estimated end
    out: list[ScheduledStep] = []
    while True:
        # Consumed lazily, as the engine does: a step started early in a pass
        # counts in the backfilling horizon of later decisions of that pass.
        for entry in ready.pop_startable(len(free_slots), try_acquire, horizon, fits, claims):
            i, r = entry[3], entry[4]
            g = graphs[r]
            d = durations(r, i) if durations else g.steps[i].estimated_duration
            slot = heapq.heappop(free_slots)
            heapq.heappush(running, (now + d, r, i, slot))
            if g.pools[i]:
                est = g.steps[i].estimated_duration
                est_ends[r, i] = now + est if est > 0 else None
            out.append(ScheduledStep(g.steps[i].name, now, now + d, slot, r))
        if not running:
            break
        end, r, i, slot = heapq.heappop(running)
        now = end
        finished = [(r, i, slot)]
        while running and running[0][0] <= now:
            _, r2, i2, s2 = heapq.heappop(running)
            finished.append((r2, i2, s2))
        for r, i, slot in finished:
            g = graphs[r]
            heapq.heappush(free_slots, slot)
            est_ends.pop((r, i), None)
            for p in g.pools[i]:
                in_use[p] -= 1
            for c in g.children[i]:
                missing[r][c] -= 1
                if missing[r][c] == 0:
                    push(r, c)
    return out
