"""The choice of the next step to start: a ready queue with pool-aware claims.

Policy (shared by the live engine and the planner's simulation):

1. A step is *ready* once all of its dependencies completed.
2. Whenever a slot frees, ready steps are considered in key order:

   * the run's order: runs of a higher run priority first, then the run that
     started first (first come, first served across runs);
   * within a run, the higher *effective* priority: a step's own
     :class:`StepPriority` raised to the highest among its descendants
     (``WorkflowGraph.urgency``; priority inheritance, so a LOW ancestor
     cannot hold back the CRITICAL step waiting on it);
   * then the longer remaining critical path (upward rank, by estimated
     duration);
   * then definition order.

   Keys end in unique integers, so the order is total and deterministic.
3. A step starts only if it can take one unit of every pool it needs, all at
   once.  If it cannot, it keeps a *claim* on those pools for the rest of the
   pass: lower-ranked steps that need any of them are held back, so units
   freed later go to the higher-ranked waiter (no starvation), while steps
   needing other pools, or none, still start (no head-of-line blocking).
4. Backfilling (EASY backfilling, as batch schedulers do it): a held-back
   step may still start if its estimated duration ends before the earliest
   time a claimant could start, predicted from the estimated ends of the
   steps holding the units it waits for.  It uses units that would otherwise
   idle and, when the estimates hold, delays no claimant.  Every held-back
   step that fits (looked for among the first 32 of its group's heap) may
   start, as long as units and slots last.  Steps without an
   estimate (``estimated_duration == 0``) never backfill, and a claimant
   waiting on a unit whose holder has no estimate (or is held outside the
   engine) admits no backfilling.

Why these rules, measured in ``benchmarks/`` (F: 200 random DAGs with pools,
makespan over a lower bound; G: a batch of 20 seed workflows): strict own
priority gave 1.133 and 0.924 of the bound; inheritance, backfilling and
first-come-first-served runs give about 1.04 and 0.964 (the optimum for G).

Ready steps are grouped by their exact set of pools; within a group the head
has the best key, so a blocked head blocks its whole group and a pass costs
``O(groups)`` per started step rather than ``O(ready steps)``.
"""

from __future__ import annotations

import heapq
import math
from typing import Callable, Iterable, Iterator

__all__ = ["ReadyQueue", "SCHEDULES", "step_key", "claims_units", "claim_horizon"]

#: The orders a run's ready steps can be taken in (``execute_workflow(schedule=...)``):
#:
#: * ``"priority"`` (the default, the policy above): effective priority, then
#:   upward rank, then definition order; blocked steps claim their pools.
#: * ``"critical-path"``: upward rank, then definition order (priorities
#:   ignored); claims as above.
#: * ``"fifo"``: the order the steps became ready, then definition order;
#:   no claims (greedy list scheduling).
#:
#: ``"makespan"`` is not an order of its own: the engine simulates these
#: three on the estimates when the run starts and follows the one that
#: finishes first (ties go to ``"priority"``).
SCHEDULES = ("priority", "critical-path", "fifo")

#: entries of a held-back group looked at for backfilling per pass (the heap's
#: first entries: the best-ranked ones roughly), so a pass stays O(groups)
_BACKFILL_SCAN = 32


def step_key(schedule: str, urgency: int, rank: float, ready_at: float) -> tuple[float, float]:
    """The middle of a ready entry's key under ``schedule``: ``(run order, *this, index, item)``.

    Keys of different runs never compare past the run order (it is unique
    per run), so runs following different schedules share one queue.
    """
    if schedule == "priority":
        return (-urgency, -rank)
    if schedule == "critical-path":
        return (-rank, 0)
    return (ready_at, 0)  # "fifo"


def claim_horizon(
    now: float,
    pools: frozenset[str],
    shortfall: Callable[[str], int],
    holders: Iterable[tuple[frozenset[str], float | None]],
) -> float:
    """When a step blocked on ``pools`` could start, by the estimates (rule 4); ``-inf`` if unknown.

    ``shortfall(pool)`` is how many units of ``pool`` must free before one is
    available; ``holders`` are the running steps holding pool units, as
    ``(their pools, estimated end or None)``.  Unknown when a holder the
    claimant waits for has no estimate, or when units are held outside the
    holders.  The engine and the planner both decide backfilling with this.
    """
    holders = list(holders)
    t = now
    for p in pools:
        short = shortfall(p)
        if short <= 0:
            continue
        ends = []
        for held, end in holders:
            if p in held:
                if end is None:
                    return -math.inf
                ends.append(end)
        if len(ends) < short:
            return -math.inf
        ends.sort()
        t = max(t, ends[short - 1])
    return t


def claims_units(schedule: str) -> bool:
    """Whether a blocked step of a run following ``schedule`` claims its pools (rule 3)."""
    return schedule != "fifo"


class ReadyQueue:
    """Ready steps grouped by pool set, each group a heap of ``(key..., item)`` tuples."""

    __slots__ = ("_groups", "_size")

    def __init__(self) -> None:
        self._groups: dict[frozenset[str], list[tuple]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, entry: tuple, pools: frozenset[str]) -> None:
        """Add ``entry`` (a tuple whose leading fields are the sort key, item last)."""
        heap = self._groups.get(pools)
        if heap is None:
            self._groups[pools] = [entry]
        else:
            heapq.heappush(heap, entry)
        self._size += 1

    def pop_startable(
        self,
        slots: int,
        try_acquire: Callable[[frozenset[str]], bool],
        horizon: Callable[[frozenset[str]], float] | None = None,
        fits: Callable[[tuple, float], bool] | None = None,
        claims: Callable[[tuple], bool] | None = None,
    ) -> Iterator[tuple]:
        """Yield up to ``slots`` entries that may start now, best first.

        ``try_acquire(pools)`` must take one unit of every pool in ``pools``
        (all or nothing) and say whether it did; it is only called for
        non-empty pool sets.  Yielded entries are removed from the queue.

        For backfilling (rule 4), ``horizon(pools)`` is the estimated time at
        which a step blocked on ``pools`` could start (``-inf`` if unknown),
        and ``fits(entry, t)`` says whether ``entry``, started now, is
        estimated to end by ``t``.  Without them claims are never backfilled.
        ``claims(entry)`` says whether a blocked ``entry`` claims its pools
        (default: every one does); one that does not only blocks its group.
        """
        groups = self._groups
        blocked_groups: set[frozenset[str]] = set()
        claimed: set[str] = set()
        # Earliest predicted start of any claimant this pass: a held-back
        # step ending by then takes nothing a claimant will need.  Computed
        # when first needed (most passes never backfill): the claimants'
        # horizons cannot change in between, because every step started in
        # between holds none of the claimed pools (one that does is held back,
        # which is the first need).
        until = math.inf
        unpriced: list[frozenset[str]] = []
        while slots > 0 and self._size:
            best_pools = None
            best_head = None
            for pools, heap in groups.items():
                if pools in blocked_groups:
                    continue
                if best_head is None or heap[0] < best_head:
                    best_head = heap[0]
                    best_pools = pools
            if best_pools is None:
                return
            if best_pools:
                if not claimed.isdisjoint(best_pools):
                    # Held back by a better waiter's claim: backfill the best
                    # entry of the group that ends in time, if any, and look
                    # at the group again (another may fit in the units left).
                    # Backfilling as many as fit, not one per group, keeps a
                    # pass's decisions the same however the steps ending at
                    # one instant are split across passes (the engine's
                    # passes follow loop iterations, the planner's instants).
                    if unpriced:
                        for claimant in unpriced:
                            until = min(until, horizon(claimant))  # type: ignore[misc]
                            if until == -math.inf:
                                break
                        unpriced.clear()
                    entry = None if fits is None else self._take_fitting(best_pools, until, fits, try_acquire)
                    if entry is None:
                        blocked_groups.add(best_pools)
                        continue
                    slots -= 1
                    yield entry
                    continue
                elif not try_acquire(best_pools):
                    blocked_groups.add(best_pools)
                    if claims is None or claims(best_head):
                        claimed.update(best_pools)
                        if horizon is not None and until > -math.inf:
                            unpriced.append(best_pools)
                    continue
            heap = groups[best_pools]
            entry = heapq.heappop(heap)
            if not heap:
                del groups[best_pools]
            self._size -= 1
            slots -= 1
            yield entry

    def _take_fitting(
        self,
        pools: frozenset[str],
        until: float,
        fits: Callable[[tuple, float], bool],
        try_acquire: Callable[[frozenset[str]], bool],
    ) -> tuple | None:
        """Remove and return the best of the first ``_BACKFILL_SCAN`` entries of a group that fits."""
        heap = self._groups[pools]
        best_k = -1
        for k in range(min(len(heap), _BACKFILL_SCAN)):
            if (best_k < 0 or heap[k] < heap[best_k]) and fits(heap[k], until):
                best_k = k
        if best_k < 0 or not try_acquire(pools):
            return None
        entry = heap[best_k]
        last = heap.pop()
        if best_k < len(heap):
            # Remove heap[best_k] in O(log n): put the last entry there and
            # restore the heap invariant in both directions.
            heap[best_k] = last
            heapq._siftup(heap, best_k)  # type: ignore[attr-defined]
            heapq._siftdown(heap, 0, best_k)  # type: ignore[attr-defined]
        if not heap:
            del self._groups[pools]
        self._size -= 1
        return entry

    def remove_where(self, predicate: Callable[[tuple], bool]) -> list[tuple]:
        """Remove and return every entry for which ``predicate(entry)`` is true (O(n))."""
        removed: list[tuple] = []
        for pools in list(self._groups):
            heap = self._groups[pools]
            keep = []
            for e in heap:
                (removed if predicate(e) else keep).append(e)
            if len(keep) != len(heap):
                if keep:
                    heapq.heapify(keep)
                    self._groups[pools] = keep
                else:
                    del self._groups[pools]
        self._size -= len(removed)
        return removed

    def waiting_by_pool(self) -> dict[str, int]:
        """Pool name -> ready steps that need it and have not started."""
        out: dict[str, int] = {}
        for pools, heap in self._groups.items():
            for p in pools:
                out[p] = out.get(p, 0) + len(heap)
        return out

    def entries(self) -> Iterator[tuple]:
        for heap in self._groups.values():
            yield from heap
