"""Resource pools: named capacities that steps hold units of while they run.

``resource_pool`` is a plain public dict (pool name -> capacity), read afresh
at every decision, so a subclass that assigns ``self.resource_pool = {...}``
after ``super().__init__()``, or grows a pool with ``resource_pool[name] += 1``
(the seed's ``SmartResourceManager``), takes effect at the next scheduling
decision.  A pool nobody declared has ``default_capacity`` units.

Invariants (all methods run on the event loop's thread):

* ``0 <= in_use(name)``; a unit is only taken when ``in_use < capacity`` (a
  capacity lowered below ``in_use`` drains as units are released);
* the engine takes all of a step's pools at once with :meth:`try_acquire_all`
  or none of them, so two steps never hold halves of each other's needs;
* a unit released while someone awaits :meth:`acquire_resource` goes to the
  oldest waiter first; a cancelled waiter that was already granted a unit
  gives it back, so cancellation never leaks units.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from .workflow_exceptions import ResourceLimitError

__all__ = ["ResourceManager", "PoolStatistics"]


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of one pool: capacity, units in use, and steps or callers waiting for it."""

    name: str
    capacity: int
    in_use: int
    waiting: int

    @property
    def available(self) -> int:
        return max(0, self.capacity - self.in_use)

    @property
    def utilisation(self) -> float:
        return self.in_use / self.capacity if self.capacity else 0.0


class ResourceManager:
    """Capacities of resource pools, their current use, and registered service providers.

    Parameters:
        pools: initial capacities, pool name -> units (int >= 0).
        default_capacity: units of a pool that was never declared.
    """

    def __init__(self, pools: Mapping[str, int] | None = None, *, default_capacity: int = 1) -> None:
        if not isinstance(default_capacity, int) or default_capacity < 1:
            raise ResourceLimitError(f"default_capacity must be an int >= 1, got {default_capacity!r}")
        self.resource_pool: dict[str, int] = {}
        self.default_capacity = default_capacity
        self._in_use: dict[str, int] = {}
        self._waiters: dict[str, deque[asyncio.Future[bool]]] = {}
        self._providers: dict[str, Any] = {}
        self._listeners: list[Callable[[], None]] = []
        self._waiting_probes: list[Callable[[], Mapping[str, int]]] = []
        self._usage_counts: dict[str, int] = {}
        for name, capacity in (pools or {}).items():
            self.set_capacity(name, capacity, notify=False)

    # -- capacities -----------------------------------------------------
    def capacity(self, name: str) -> int:
        """Units of pool ``name`` (``default_capacity`` if it was never declared)."""
        return self.resource_pool.get(name, self.default_capacity)

    def in_use(self, name: str) -> int:
        return self._in_use.get(name, 0)

    def set_capacity(self, name: str, capacity: int, *, notify: bool = True) -> None:
        """Set the units of pool ``name``; waiting steps are reconsidered at once."""
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise ResourceLimitError(
                f"capacity of pool {name!r} must be an int >= 0, got {capacity!r}; e.g. set_capacity({name!r}, 2)"
            )
        self.resource_pool[name] = capacity
        if notify:
            self._wake_waiters(name)
            self._notify()

    def register_resource(self, name: str, provider: Any = None, *, capacity: int | None = None) -> None:
        """Register a service object under ``name`` and/or set the pool's capacity.

        Processors reach the provider with ``context.get_resource(name)``.
        """
        if provider is not None:
            self._providers[name] = provider
        if capacity is not None:
            self.set_capacity(name, capacity)

    def get_resource(self, name: str) -> Any:
        """The provider registered as ``name``; raises :class:`ResourceLimitError` listing the known names."""
        try:
            return self._providers[name]
        except KeyError:
            known = ", ".join(repr(n) for n in sorted(self._providers)) or "none"
            raise ResourceLimitError(
                f"no resource provider named {name!r} is registered (registered: {known}); "
                f"call engine.register_resource({name!r}, provider) before running"
            ) from None

    @property
    def providers(self) -> dict[str, Any]:
        return dict(self._providers)

    # -- atomic acquisition used by the engine ------------------------------
    def can_acquire_all(self, names: Iterable[str]) -> bool:
        for name in names:
            if self._in_use.get(name, 0) >= self.resource_pool.get(name, self.default_capacity):
                return False
            if self._waiters.get(name):
                return False
        return True

    def try_acquire_all(self, names: Iterable[str]) -> bool:
        """Take one unit of every pool in ``names`` if all are free, else take nothing."""
        names = tuple(names)
        if not self.can_acquire_all(names):
            return False
        in_use = self._in_use
        for name in names:
            in_use[name] = in_use.get(name, 0) + 1
        return True

    def release_all(self, names: Iterable[str]) -> None:
        """Give back one unit of every pool in ``names`` (taken by :meth:`try_acquire_all`)."""
        for name in names:
            self._release(name)
        self._notify()

    # -- single units, the seed's public API ---------------------------------
    async def acquire_resource(self, resource_name: str, timeout: float | None = None) -> bool:
        """Wait for one unit of ``resource_name`` and take it.

        Returns ``True`` once taken, ``False`` if ``timeout`` seconds passed first.
        """
        if not self._waiters.get(resource_name) and self.in_use(resource_name) < self.capacity(resource_name):
            self._in_use[resource_name] = self.in_use(resource_name) + 1
            return True
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(resource_name, deque()).append(fut)
        try:
            if timeout is None:
                return await fut
            async with asyncio.timeout(timeout):
                return await fut
        except (asyncio.CancelledError, TimeoutError) as exc:
            if fut.done() and not fut.cancelled() and fut.result():
                self._release(resource_name)  # granted while we were cancelled: hand it on
                self._notify()
            else:
                try:
                    self._waiters[resource_name].remove(fut)
                except ValueError:
                    pass
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False

    def release_resource(self, resource_name: str) -> None:
        """Give back one unit of ``resource_name``."""
        self._release(resource_name)
        self._notify()

    def _release(self, name: str) -> None:
        used = self._in_use.get(name, 0)
        if used <= 0:
            raise ResourceLimitError(
                f"release of pool {name!r} without a matching acquire (0 units in use); "
                "release only what acquire_resource() returned True for"
            )
        self._in_use[name] = used - 1
        self._wake_waiters(name)

    def _wake_waiters(self, name: str) -> None:
        waiters = self._waiters.get(name)
        while waiters and self._in_use.get(name, 0) < self.capacity(name):
            fut = waiters.popleft()
            if fut.done():
                continue
            self._in_use[name] = self._in_use.get(name, 0) + 1
            fut.set_result(True)

    # -- observers and statistics ---------------------------------------
    def add_listener(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` whenever units are released or a capacity changes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def add_waiting_probe(self, probe: Callable[[], Mapping[str, int]]) -> Callable[[], None]:
        """Register ``probe() -> {pool: steps waiting}`` counted into :meth:`statistics`."""
        self._waiting_probes.append(probe)
        return lambda: self._waiting_probes.remove(probe) if probe in self._waiting_probes else None

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    def statistics(self) -> dict[str, PoolStatistics]:
        """A frozen snapshot of every known pool (declared, in use, or waited for)."""
        waiting: dict[str, int] = {n: len(q) for n, q in self._waiters.items() if q}
        for probe in self._waiting_probes:
            for name, count in probe().items():
                waiting[name] = waiting.get(name, 0) + count
        names = set(self.resource_pool) | set(self._in_use) | set(waiting)
        return {
            n: PoolStatistics(n, self.capacity(n), self.in_use(n), waiting.get(n, 0)) for n in sorted(names)
        }

    # -- hooks the seed's SmartResourceManager calls ------------------------
    def _get_resource_usage_rate(self, resource_name: str) -> float:
        """Fraction of ``resource_name``'s units in use now (seed compatibility)."""
        cap = self.capacity(resource_name)
        return self.in_use(resource_name) / cap if cap else 1.0

    def _record_resource_usage(self, resource_name: str, step_name: str) -> None:
        """Count one use of ``resource_name`` (seed compatibility hook; override freely)."""
        self._usage_counts[resource_name] = self._usage_counts.get(resource_name, 0) + 1

    def __repr__(self) -> str:
        pools = ", ".join(f"{n}={self.in_use(n)}/{self.capacity(n)}" for n in sorted(self.resource_pool))
        return f"{type(self).__name__}({pools})"
