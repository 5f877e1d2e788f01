"""Workflow graphs: validation, topological order, phases and critical paths.

:class:`DependencyResolver` turns a list of step definitions into a
:class:`WorkflowGraph`, an immutable, index-based view that the scheduler uses
on its hot path.  Everything here is ``O(steps + dependencies)``.

Invariants of a :class:`WorkflowGraph`:

* steps are numbered in definition order; ``parents[i]`` / ``children[i]`` are
  tuples of indices, each sorted ascending;
* ``order`` is a topological order that breaks ties by definition order, and
  ``position[i]`` is the place of step ``i`` in it;
* ``levels[i]`` is the length of the longest dependency chain ending at ``i``
  (the phase of ``i``); steps of one phase never depend on each other;
* ``rank[i]`` (the upward rank) is ``estimated_duration[i]`` plus the largest
  rank among its children: the longest estimated path from the start of ``i``
  to the end of the workflow;
* ``urgency[i]`` (the effective priority) is the highest ``priority`` among
  ``i`` and all of its descendants: a step cannot start before its ancestors
  end, so an ancestor is as urgent as the most urgent step waiting on it
  (priority inheritance; without it a LOW step would hold back a CRITICAL one
  below it, the classic priority inversion).
"""

from __future__ import annotations


import difflib
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

from pydantic import ValidationError

from .definitions import WorkflowStepDefinition
from .workflow_exceptions import CycleError, DependencyError, WorkflowDefinitionError

__all__ = ["DependencyResolver", "WorkflowGraph", "complete_graph", "effective_priorities"]


@dataclass(frozen=True, slots=True, eq=False)
class WorkflowGraph:
    """A validated workflow: its steps and their precomputed relations (read-only)."""

    name: str
    steps: tuple[WorkflowStepDefinition, ...]
    index: Mapping[str, int]
    parents: tuple[tuple[int, ...], ...]
    children: tuple[tuple[int, ...], ...]
    order: tuple[int, ...]
    position: tuple[int, ...]
    levels: tuple[int, ...]
    rank: tuple[float, ...]
    pools: tuple[frozenset[str], ...]
    #: ``tuple(sorted(pools[i]))`` per step, computed once per graph (event
    #: data of every run's ``step_started``; a tuple of str, so the event's
    #: data dict holds only atomic values and is not tracked by the GC).
    pool_lists: tuple[tuple[str, ...], ...] = ()
    #: effective priority per step (see the module docstring); empty in a
    #: graph built by hand, which the engine then completes with
    #: :func:`effective_priorities`.
    urgency: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    @property
    def phases(self) -> list[list[str]]:
        """Steps grouped by level; each inner list is in definition order."""
        if not self.steps:
            return []
        out: list[list[str]] = [[] for _ in range(max(self.levels) + 1)]
        for i, level in enumerate(self.levels):
            out[level].append(self.steps[i].name)
        return out

    @property
    def critical_path(self) -> list[str]:
        """The chain of steps with the longest total estimated duration."""
        if not self.steps:
            return []
        roots = [i for i in range(len(self.steps)) if not self.parents[i]]
        node = max(roots, key=lambda i: (self.rank[i], -i))
        path = [node]
        while self.children[node]:
            node = max(self.children[node], key=lambda c: (self.rank[c], -c))
            path.append(node)
        return [self.steps[i].name for i in path]

    @property
    def critical_path_length(self) -> float:
        return max(self.rank, default=0.0)

    @property
    def resource_requirements(self) -> dict[str, set[str]]:
        """Pool name -> names of the steps that need it."""
        req: dict[str, set[str]] = {}
        for step in self.steps:
            for pool in step.required_resources:
                req.setdefault(pool, set()).add(step.name)
        return req

    def ancestors(self, name: str) -> set[str]:
        """Names of every step ``name`` transitively depends on."""
        seen: set[int] = set()
        stack = [self.index[name]]
        while stack:
            for p in self.parents[stack.pop()]:
                if p not in seen:
                    seen.add(p)
                    stack.append(p)
        return {self.steps[i].name for i in seen}

    def descendants(self, name: str) -> set[str]:
        """Names of every step that transitively depends on ``name``."""
        seen: set[int] = set()
        stack = [self.index[name]]
        while stack:
            for c in self.children[stack.pop()]:
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
        return {self.steps[i].name for i in seen}


class DependencyResolver:
    """Validates step definitions and resolves their order.

    The engine calls :meth:`resolve` from ``register_workflow``; the resolver is
    replaceable (pass your own to ``WorkflowEngine(dependency_resolver=...)``)
    as long as it returns a :class:`WorkflowGraph`.
    """

    def resolve(self, workflow_name: str, steps: Iterable[WorkflowStepDefinition | Mapping[str, Any]]) -> WorkflowGraph:
        """Validate ``steps`` and build the graph of workflow ``workflow_name``.

        Raises :class:`WorkflowDefinitionError` for a bad definition or a
        duplicate name, :class:`DependencyError` for an unknown dependency and
        :class:`CycleError` (a ``DependencyError``) for a cycle.
        """
        defs = self._coerce(workflow_name, steps)
        index: dict[str, int] = {}
        for i, step in enumerate(defs):
            if step.name in index:
                raise WorkflowDefinitionError(
                    f"workflow {workflow_name!r} defines step {step.name!r} twice "
                    f"(positions {index[step.name]} and {i}); give each step a unique name"
                )
            index[step.name] = i
            # Definitions built with model_construct() skip pydantic; recheck
            # the two numeric rules the engine relies on.
            if step.timeout_seconds is not None and not step.timeout_seconds > 0:
                raise WorkflowDefinitionError(
                    f"workflow {workflow_name!r}, step {step.name!r}: timeout_seconds must be > 0 (got {step.timeout_seconds!r}); "
                    "use a positive number of seconds, or None for the engine's default"
                )
            if not step.estimated_duration >= 0:
                raise WorkflowDefinitionError(
                    f"workflow {workflow_name!r}, step {step.name!r}: estimated_duration must be >= 0 (got {step.estimated_duration!r})"
                )
        parents: list[tuple[int, ...]] = []
        children: list[list[int]] = [[] for _ in defs]
        for i, step in enumerate(defs):
            ps = []
            for dep in step.dependencies:
                j = index.get(dep)
                if j is None:
                    close = difflib.get_close_matches(dep, list(index), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise DependencyError(
                        f"workflow {workflow_name!r}: step {step.name!r} depends on unknown step {dep!r}{hint}; "
                        f"define {dep!r} or remove it from {step.name!r}.dependencies"
                    )
                ps.append(j)
                children[j].append(i)
            parents.append(tuple(sorted(ps)))
        order = self._toposort(workflow_name, defs, parents, children)
        position = [0] * len(defs)
        for pos, i in enumerate(order):
            position[i] = pos
        levels = [0] * len(defs)
        for i in order:
            if parents[i]:
                levels[i] = 1 + max(levels[p] for p in parents[i])
        rank = [0.0] * len(defs)
        for i in reversed(order):
            below = max((rank[c] for c in children[i]), default=0.0)
            rank[i] = defs[i].estimated_duration + below
        urgency = effective_priorities(defs, children, order)
        return WorkflowGraph(
            name=workflow_name,
            steps=tuple(defs),
            index=index,
            parents=tuple(parents),
            children=tuple(tuple(c) for c in children),
            order=tuple(order),
            position=tuple(position),
            levels=tuple(levels),
            rank=tuple(rank),
            pools=tuple(s.required_resources for s in defs),
            pool_lists=tuple(tuple(sorted(s.required_resources)) for s in defs),
            urgency=urgency,
        )

    @staticmethod
    def _coerce(workflow_name: str, steps: Any) -> list[WorkflowStepDefinition]:
        if isinstance(steps, (str, bytes)) or not isinstance(steps, Iterable):
            raise WorkflowDefinitionError(
                f"workflow {workflow_name!r}: steps must be a list of WorkflowStepDefinition, "
                f"got {type(steps).__name__}"
            )
        out = []
        for k, step in enumerate(steps):
            if isinstance(step, WorkflowStepDefinition):
                out.append(step)
            elif isinstance(step, Mapping):
                try:
                    out.append(WorkflowStepDefinition(**step))
                except ValidationError as exc:
                    raise WorkflowDefinitionError(
                        f"workflow {workflow_name!r}, step #{k}: "
                        + "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
                    ) from None
            else:
                raise WorkflowDefinitionError(
                    f"workflow {workflow_name!r}, step #{k}: expected a WorkflowStepDefinition "
                    f"(or a dict of its fields), got {type(step).__name__} {step!r:.60}"
                )
        return out

    @staticmethod
    def _toposort(
        workflow_name: str,
        defs: Sequence[WorkflowStepDefinition],
        parents: Sequence[tuple[int, ...]],
        children: Sequence[list[int]],
    ) -> list[int]:
        # Kahn's algorithm with a FIFO over definition order: deterministic,
        # and linear.  Nodes never released belong to (or hang below) a cycle.
        missing = [len(p) for p in parents]
        queue = [i for i, m in enumerate(missing) if m == 0]
        order: list[int] = []
        head = 0
        while head < len(queue):
            i = queue[head]
            head += 1
            order.append(i)
            for c in children[i]:
                missing[c] -= 1
                if missing[c] == 0:
                    queue.append(c)
        if len(order) == len(defs):
            return order
        cycle = _find_cycle(parents, {i for i, m in enumerate(missing) if m > 0})
        names = [defs[i].name for i in cycle]
        # A long cycle is shown by its ends (the error carries every name).
        shown = names if len(names) <= 12 else [*names[:5], f"... ({len(names) - 1} steps in all) ...", *names[-5:]]
        text = " -> ".join(shown)
        raise CycleError(
            f"workflow {workflow_name!r} has a dependency cycle: {text} "
            f"(x -> y means y depends on x); remove one of these dependencies",
            names,
        )


def complete_graph(graph: WorkflowGraph) -> WorkflowGraph:
    """``graph`` with the derived per-step fields a hand-built graph (a custom resolver's) may lack.

    Those are ``urgency`` (:func:`effective_priorities`) and ``pool_lists``;
    a graph that has them is returned as it is.
    """
    if len(graph.urgency) == len(graph) and len(graph.pool_lists) == len(graph):
        return graph
    return replace(
        graph,
        urgency=effective_priorities(graph.steps, graph.children, graph.order),
        pool_lists=tuple(tuple(sorted(p)) for p in graph.pools),
    )


def effective_priorities(
    steps: Sequence[WorkflowStepDefinition], children: Sequence[Sequence[int]], order: Sequence[int]
) -> tuple[int, ...]:
    """Per step, the highest ``int(priority)`` among it and its descendants (``O(steps + edges)``)."""
    urgency = [int(s.priority) for s in steps]
    for i in reversed(order):
        for c in children[i]:
            if urgency[c] > urgency[i]:
                urgency[i] = urgency[c]
    return tuple(urgency)


def _find_cycle(parents: Sequence[tuple[int, ...]], blocked: set[int]) -> list[int]:
    """A cycle among ``blocked`` nodes, in execution direction, first node repeated last."""
    # Every blocked node has a blocked parent, so walking parents from any
    # blocked node must revisit a node: the walk from that node is a cycle.
    start = min(blocked)
    seen: dict[int, int] = {}
    walk: list[int] = []
    node = start
    while node not in seen:
        seen[node] = len(walk)
        walk.append(node)
        node = next(p for p in parents[node] if p in blocked)
    cycle = walk[seen[node]:]
    cycle.reverse()  # parents-walk goes against execution order
    # Start the cycle at its smallest index so messages are stable.
    k = cycle.index(min(cycle))
    cycle = cycle[k:] + cycle[:k]
    return cycle + [cycle[0]]
