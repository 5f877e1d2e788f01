"""The choice of the next step to start: a ready queue with pool-aware claims.

Policy (shared by the live engine and the planner's simulation):

1. A step is *ready* once all of its dependencies completed.
2. Whenever a slot frees, ready steps are considered in key order:
   higher :class:`StepPriority` first, then the longer remaining critical path
   (upward rank, by estimated duration), then the run that started first,
   then definition order.  Keys end in unique integers, so the order is total
   and deterministic.
3. A step starts only if it can take one unit of every pool it needs, all at
   once.  If it cannot, it keeps a *claim* on those pools for the rest of the
   pass: lower-ranked steps that need any of them are held back, so units
   freed later go to the higher-ranked waiter (no starvation), while steps
   needing other pools, or none, still start (no head-of-line blocking).

Ready steps are grouped by their exact set of pools; within a group the head
has the best key, so a blocked head blocks its whole group and a pass costs
``O(groups)`` per started step rather than ``O(ready steps)``.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, Iterator

__all__ = ["ReadyQueue"]

_NO_POOLS: frozenset[str] = frozenset()


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

    def pop_startable(self, slots: int, try_acquire: Callable[[frozenset[str]], bool]) -> Iterator[tuple]:
        """Yield up to ``slots`` entries that may start now, best first.

        ``try_acquire(pools)`` must take one unit of every pool in ``pools``
        (all or nothing) and say whether it did; it is only called for
        non-empty pool sets.  Yielded entries are removed from the queue.
        """
        groups = self._groups
        blocked_groups: set[frozenset[str]] = set()
        claimed: set[str] = set()
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
            if best_pools and (not claimed.isdisjoint(best_pools) or not try_acquire(best_pools)):
                blocked_groups.add(best_pools)
                claimed.update(best_pools)
                continue
            heap = groups[best_pools]
            entry = heapq.heappop(heap)
            if not heap:
                del groups[best_pools]
            self._size -= 1
            slots -= 1
            yield entry

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
