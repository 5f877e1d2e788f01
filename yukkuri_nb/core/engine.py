"""The workflow engine: runs DAGs of steps under a concurrency limit and resource pools.

How a run goes (see :mod:`~yukkuri_nb.core.run` for the per-run fields and
:mod:`~yukkuri_nb.core.scheduler` for the choice of the next step):

1. ``execute_workflow`` validates (workflow known, processors present,
   ``project_id`` not running), then queues the steps without dependencies.
2. ``_dispatch`` starts ready steps while the engine has free slots
   (``max_concurrent_steps`` is shared by every run of the engine) and their
   pools have units, each as its own task.
3. When a step ends its units and slot are given back at once; a success
   queues the children whose dependencies are now all complete, a failure
   schedules a retry (per its :class:`RetryPolicy`) or marks every descendant
   ``SKIPPED``; then ``_dispatch`` runs again.
4. The run finishes when every step is in a terminal status.

Every change is an :class:`~yukkuri_nb.core.events.Event`.  The run's state,
its history, the progress callback and engine-wide subscribers (dashboard,
run store, ...) all consume the same stream.

Threading: everything runs on the event loop's thread except the control
calls (``pause_workflow``, ``resume_workflow``, ``cancel_workflow``, the
``max_concurrent_steps`` setter), which may come from any thread.  They set
flags under ``_lock``, which ``_dispatch`` also holds while it picks steps, so
once ``pause_workflow`` returns no new step of that run starts; the rest of
their work is handed to the loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
import math
import os
import random
import threading
import types
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Mapping

from .clock import Clock, RealClock
from .definitions import StepPriority, StepStatus, WorkflowStepDefinition
from .events import Event, EventBus, EventKind, Observer, new_event
from .executors import ExecutorRegistry, call_sync
from .graph import DependencyResolver, WorkflowGraph, effective_priorities
from .plan import WorkflowExecutionPlan, simulate_schedule
from .processors import FunctionProcessor, StepExecutionContext, StepProcessor, as_processor
from .resources import ResourceManager
from .results import StepAttempt, StepResult
from .run import _Run
from .scheduler import ReadyQueue
from .state import WorkflowExecutionResult, WorkflowExecutionState
from .workflow_exceptions import (
    MissingProcessorError,
    ProjectAlreadyRunningError,
    StepExecutionError,
    TimeoutError as StepTimeoutError,
    UnknownWorkflowError,
    WorkflowEngineError,
)

__all__ = ["WorkflowEngine"]

log = logging.getLogger("yukkuri_nb.engine")


class WorkflowEngine:
    """Runs registered workflows concurrently, under shared limits.

    Parameters:
        dependency_resolver: validates and orders step definitions
            (default :class:`DependencyResolver`).
        resource_manager: pool capacities and service providers
            (default: a :class:`ResourceManager` with capacity 1 per pool).
        max_concurrent_steps: steps running at once across all runs (>= 1);
            may be changed while runs go on.
        default_timeout_seconds: limit for steps without ``timeout_seconds``.
        clock: where time is read (default :class:`RealClock`; a
            :class:`VirtualClock` runs the same scheduler on virtual time).
        run_store: ``None`` (nothing written), a path of an SQLite file, or a
            store object; records runs so an unfinished run can resume.
        fail_fast: default for ``execute_workflow(fail_fast=...)``.
        history_limit: finished runs whose state and events are kept in memory.
        record_history: keep every event of a run for ``engine.events()`` and
            the history frames (default).  ``False`` saves the memory and time
            of that list; the live state, progress callbacks and subscribers
            (dashboard, run store) still see every event.
        seed: seeds the retry jitter.
        executor: where steps run by default: ``None`` / ``"inprocess"``
            (async on the loop, sync in threads), ``"thread"``, ``"process"``,
            or an executor object such as ``yukkuri_nb.distributed.DaskExecutor``;
            a step may name another (see :mod:`~yukkuri_nb.core.executors`).
    """

    #: Seconds ``execute_workflow`` waits, after the run ended, for async
    #: progress callbacks still running; then they are cancelled.
    callback_grace_seconds: float = 5.0

    def __init__(
        self,
        dependency_resolver: DependencyResolver | None = None,
        resource_manager: ResourceManager | None = None,
        max_concurrent_steps: int = 3,
        default_timeout_seconds: float = 300,
        *,
        clock: Clock | None = None,
        run_store: Any = None,
        fail_fast: bool = False,
        history_limit: int = 100,
        record_history: bool = True,
        seed: int | None = None,
        executor: Any = None,
    ) -> None:
        self.dependency_resolver = dependency_resolver or DependencyResolver()
        self.resource_manager = resource_manager if resource_manager is not None else ResourceManager()
        self._max_concurrent = _check_limit(max_concurrent_steps)
        if not (isinstance(default_timeout_seconds, (int, float)) and default_timeout_seconds > 0):
            raise WorkflowEngineError(
                f"default_timeout_seconds must be a positive number of seconds, got {default_timeout_seconds!r}"
            )
        self.default_timeout_seconds = float(default_timeout_seconds)
        self.clock: Clock = clock or RealClock()
        self.fail_fast = fail_fast
        self.history_limit = history_limit
        self.record_history = bool(record_history)
        self._rng = random.Random(seed)
        self._workflows: dict[str, WorkflowGraph] = {}
        self._processors: dict[str, StepProcessor] = {}
        self._bus = EventBus()
        self._wakers: list[Callable[[], None]] = []  # see call_on_next_event
        self._seq = itertools.count(1)
        self._run_seq = itertools.count(1)
        self._lock = threading.RLock()
        self._runs: dict[str, _Run] = {}
        self._finished: OrderedDict[str, _Run] = OrderedDict()
        self._ready = ReadyQueue()
        self._running = 0
        self._free_slots: list[int] = []
        self._next_slot = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._dispatch_pending = False
        self._threads: ThreadPoolExecutor | None = None
        self._threads_size = 0
        # Step timeouts: a heap of (deadline, seq, _Deadline) behind one loop
        # timer, armed for the earliest entry; see _Deadline.
        self._deadlines: list[tuple[float, int, _Deadline]] = []
        self._deadline_seq = itertools.count()
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._deadline_at = 0.0
        self._deadline_loop: asyncio.AbstractEventLoop | None = None
        self._executors = ExecutorRegistry(executor)
        self.resource_manager.add_listener(self._request_dispatch)
        self.resource_manager.add_waiting_probe(self._ready.waiting_by_pool)
        self.run_store = None
        if run_store is not None:
            self.run_store = _open_store(run_store)
            self.run_store.attach(self)

    # ------------------------------------------------------------------ registry
    def register_workflow(self, name: str, steps: Iterable[WorkflowStepDefinition]) -> WorkflowGraph:
        """Validate ``steps`` and register them as workflow ``name`` (replacing any previous one).

        Raises :class:`WorkflowDefinitionError` (bad or duplicate step),
        :class:`DependencyError` (unknown dependency) or :class:`CycleError`.
        """
        if not isinstance(name, str) or not name:
            raise WorkflowEngineError(f"a workflow name must be a non-empty string, got {name!r}")
        graph = self.dependency_resolver.resolve(name, steps)
        if len(graph.urgency) != len(graph) or len(graph.pool_lists) != len(graph):  # a custom resolver's graph
            graph = dataclasses.replace(
                graph,
                urgency=effective_priorities(graph.steps, graph.children, graph.order),
                pool_lists=tuple(tuple(sorted(p)) for p in graph.pools),
            )
        self._workflows[name] = graph
        return graph

    def register_step_processor(self, step_name: str, processor: Any) -> None:
        """Register the processor that runs every step called ``step_name``.

        ``processor`` is a :class:`StepProcessor` instance or a function
        ``(context, input_data)``, sync (run in a worker thread) or async.
        """
        self._processors[step_name] = as_processor(step_name, processor)

    def register_resource(self, name: str, provider: Any = None, *, capacity: int | None = None) -> None:
        """Register a service provider (``context.get_resource(name)``) and/or a pool capacity."""
        self.resource_manager.register_resource(name, provider, capacity=capacity)

    def register_executor(self, name: str, executor: Any) -> None:
        """Register ``executor`` under ``name`` for steps with ``WorkflowStepDefinition(executor=name)``.

        Built-in names ``"inprocess"``, ``"thread"`` and ``"process"`` need no
        registration.  Raises ``TypeError`` for an object without ``async run``.
        """
        self._executors.register(name, executor)

    def get_workflow(self, name: str) -> WorkflowGraph:
        """The validated graph of workflow ``name``."""
        try:
            return self._workflows[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name (a list, a dict)
            known = ", ".join(repr(n) for n in sorted(self._workflows)) or "none"
            raise UnknownWorkflowError(
                f"no workflow named {name!r} is registered (registered: {known}); "
                f"call engine.register_workflow({name!r}, steps) first"
            ) from None

    @property
    def workflows(self) -> list[str]:
        return list(self._workflows)

    # ------------------------------------------------------------------ limits
    @property
    def max_concurrent_steps(self) -> int:
        """Steps running at once across all runs; setting it takes effect at the next decision."""
        return self._max_concurrent

    @max_concurrent_steps.setter
    def max_concurrent_steps(self, value: int) -> None:
        value = _check_limit(value)
        with self._lock:
            old, self._max_concurrent = self._max_concurrent, value
        if old != value:
            self._post_engine_event(EventKind.LIMITS_CHANGED, {"max_concurrent_steps": value, "previous": old})
            self._request_dispatch()

    def set_pool_capacity(self, pool: str, capacity: int) -> None:
        """Change a pool's capacity (records a ``limits_changed`` event)."""
        old = self.resource_manager.capacity(pool)
        self.resource_manager.set_capacity(pool, capacity)
        self._post_engine_event(EventKind.LIMITS_CHANGED, {"pool": pool, "capacity": capacity, "previous": old})

    # ------------------------------------------------------------------ observers
    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(event)`` for every event of every run; returns an unsubscribe function."""
        return self._bus.subscribe(observer)

    def call_on_next_event(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` once, on the loop's thread, right after the next event of any run or of the engine.

        For observers that sample instead of following every event (the
        notebook dashboard): they re-arm after each redraw, so a busy run
        calls them a few times a second rather than three times per step,
        and an idle one not at all (no timer keeps a VirtualClock moving).
        Call it on the loop's thread.  An exception from ``fn`` is logged.
        """
        self._wakers.append(fn)

    def _wake(self) -> None:
        wakers, self._wakers = self._wakers, []
        for fn in wakers:
            try:
                fn()
            except Exception:  # a sampler must never break the run
                log.exception("call_on_next_event callback %r failed", fn)

    def events(self, project_id: str) -> list[Event]:
        """Events of the latest run of ``project_id`` (live or finished); ``[]`` if unknown."""
        run = self._runs.get(project_id) or self._finished.get(project_id)
        return run.events() if run else []

    def history(self, project_id: str | None = None) -> Any:
        """A pandas frame of events (needs ``yukkuri_nb.analysis``; see there)."""
        from importlib import import_module

        return import_module("yukkuri_nb.analysis").events_frame(self, project_id)

    @property
    def project_ids(self) -> list[str]:
        """Projects with a live or recently finished run."""
        return list(dict.fromkeys([*self._finished, *self._runs]))

    # ------------------------------------------------------------------ queries
    def get_execution_status(self, project_id: str) -> WorkflowExecutionState | None:
        """The live state of ``project_id``'s run (or of its last finished run); ``None`` if unknown."""
        run = self._runs.get(project_id) or self._finished.get(project_id)
        return run.state if run else None

    def get_step_result(self, project_id: str, step_name: str) -> StepResult | None:
        """The result of a finished step of ``project_id``'s latest run, if any."""
        run = self._runs.get(project_id) or self._finished.get(project_id)
        if run is None:
            return None
        i = run.graph.index.get(step_name)
        return None if i is None else run.results.get(i)

    def get_result(self, project_id: str) -> WorkflowExecutionResult | None:
        """The result of ``project_id``'s last finished run, if it is still in memory."""
        run = self._finished.get(project_id)
        return self._build_result(run) if run else None

    def check_resource_availability(self, workflow_name: str, project_id: str | None = None) -> bool:
        """Whether every pool the workflow needs has a capacity of at least 1."""
        graph = self.get_workflow(workflow_name)
        rm = self.resource_manager
        return all(rm.capacity(pool) >= 1 for pool in graph.resource_requirements)

    def resource_statistics(self) -> dict[str, Any]:
        """Per-pool snapshot (capacity, in use, waiting), see :meth:`ResourceManager.statistics`."""
        return self.resource_manager.statistics()

    def plan_execution(self, workflow_name: str, project_id: str = "") -> WorkflowExecutionPlan:
        """Phases, predicted makespan under the current limits, and pool needs of a workflow."""
        graph = self.get_workflow(workflow_name)
        rm = self.resource_manager
        caps = {p: rm.capacity(p) for p in graph.resource_requirements}
        if graph.steps and all(c > 0 for c in caps.values()):
            schedule = simulate_schedule([graph], self._max_concurrent, caps)
            makespan = max(s.end for s in schedule)
        else:
            schedule, makespan = [], (float("inf") if graph.steps else 0.0)
        phases = graph.phases
        return WorkflowExecutionPlan(
            project_id=project_id,
            workflow_name=workflow_name,
            phases=phases,
            total_phases=len(phases),
            estimated_total_time=makespan,
            resource_requirements=graph.resource_requirements,
            critical_path=graph.critical_path,
            critical_path_time=graph.critical_path_length,
            total_work=sum(s.estimated_duration for s in graph.steps),
            max_concurrent_steps=self._max_concurrent,
            pool_capacities=caps,
            schedule=schedule,
            graph=graph,
        )

    # ------------------------------------------------------------------ control
    def pause_workflow(self, project_id: str) -> bool:
        """Stop starting steps of ``project_id`` (running ones finish). True if it was running."""
        with self._lock:
            run = self._runs.get(project_id)
            if run is None or run.paused or run.cancelled or (run.done is not None and run.done.done()):
                return False
            run.paused = True
            run.state.is_paused = True
        self._on_loop(run, self._do_pause, run)
        return True

    def resume_workflow(self, project_id: str) -> bool:
        """Undo :meth:`pause_workflow`. True if the run was paused."""
        with self._lock:
            run = self._runs.get(project_id)
            if run is None or not run.paused or run.cancelled:
                return False
            run.paused = False
            run.state.is_paused = False
        self._on_loop(run, self._do_resume, run)
        return True

    def cancel_workflow(self, project_id: str, reason: str = "") -> bool:
        """Cancel ``project_id``: running steps are cancelled, pending ones marked cancelled.

        True if the run was going on; cancelling twice or after the end is a no-op returning False.
        """
        with self._lock:
            run = self._runs.get(project_id)
            if run is None or run.cancelled or (run.done is not None and run.done.done()):
                return False
            run.cancelled = True
            run.cancel_reason = reason or "cancelled"
            run.state.is_cancelled = True
            run.state.cancel_reason = run.cancel_reason
        self._on_loop(run, self._do_cancel, run)
        return True

    def start(self, workflow_name: str, project_id: str, initial_input: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        """Schedule a run on the running loop and return a :class:`RunHandle` at once.

        ``await handle`` gives the :class:`WorkflowExecutionResult`; in Jupyter
        the handle displays a live dashboard.  Misuse (unknown workflow,
        missing processors, project already running) raises here.
        """
        from .handle import RunHandle

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise WorkflowEngineError(
                "engine.start() needs a running event loop (a Jupyter cell, or inside async code); "
                "from a plain script use asyncio.run(engine.execute_workflow(...))"
            ) from None
        run = self._prepare(workflow_name, project_id, initial_input, kwargs.pop("progress_callback", None), **kwargs)
        task = loop.create_task(self._drive(run), name=f"yukkuri_nb run {project_id}")
        return RunHandle(self, run.project_id, task)

    # ------------------------------------------------------------------ execution
    async def execute_workflow(
        self,
        workflow_name: str,
        project_id: str,
        initial_input: Mapping[str, Any] | None = None,
        progress_callback: Callable[[WorkflowExecutionState], Any] | None = None,
        *,
        fail_fast: bool | None = None,
        fresh: bool = False,
        priority: StepPriority | int = StepPriority.NORMAL,
    ) -> WorkflowExecutionResult:
        """Run workflow ``workflow_name`` for ``project_id`` and return its result.

        Step failures do not raise (they are in the result).  Raises
        :class:`UnknownWorkflowError`, :class:`MissingProcessorError` or
        :class:`ProjectAlreadyRunningError` before any step runs.  With a run
        store, a previous unfinished run of ``project_id`` is resumed (its
        completed steps are not run again) unless ``fresh=True``.

        Runs sharing the engine are served in order of ``priority`` (the
        run's, default NORMAL), then first come, first served: a ready step of
        an earlier run goes before any of a later run of the same priority,
        so a batch finishes its videos one after another instead of all at
        the end.  Within a run, steps go by their effective priority (see
        :mod:`yukkuri_nb.core.scheduler`).

        Misbehaviour, and what it does: a processor returning anything but a
        dict, ``None`` or a well-formed :class:`StepResult`, or raising any
        exception (``BaseException`` subclasses and ``StopIteration``
        included), fails its step; ``KeyboardInterrupt`` / ``SystemExit`` in
        a processor or in ``progress_callback`` cancels the run.  Any other
        exception in the callback is logged and counted
        (``state.callback_errors``).  A sync callback runs on the loop thread:
        while it blocks, no step of the engine starts or ends.  An async
        callback still running :attr:`callback_grace_seconds` after the run
        ended is cancelled.
        """
        run = self._prepare(
            workflow_name, project_id, initial_input, progress_callback, fail_fast=fail_fast, fresh=fresh, priority=priority
        )
        return await self._drive(run)

    def execute_workflow_sync(self, workflow_name: str, project_id: str, initial_input: Mapping[str, Any] | None = None, **kwargs: Any) -> WorkflowExecutionResult:
        """Blocking form of :meth:`execute_workflow` (also inside Jupyter's running loop).

        Widgets do not update while it blocks; prefer ``engine.start`` or
        ``await engine.execute_workflow`` in notebooks.
        """
        coro = self.execute_workflow(workflow_name, project_id, initial_input, **kwargs)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            run = getattr(self.clock, "run", None)
            return run(coro) if run is not None else asyncio.run(coro)
        from importlib import import_module

        return import_module("yukkuri_nb.notebook.sync").run_sync(coro)

    def _prepare(
        self,
        workflow_name: str,
        project_id: str,
        initial_input: Mapping[str, Any] | None,
        progress_callback: Callable | None,
        *,
        fail_fast: bool | None = None,
        fresh: bool = False,
        priority: StepPriority | int = StepPriority.NORMAL,
    ) -> _Run:
        graph = self.get_workflow(workflow_name)
        if isinstance(priority, bool) or not isinstance(priority, int) or int(priority) not in StepPriority._value2member_map_:
            raise WorkflowEngineError(
                f"priority of project {project_id!r} must be a StepPriority "
                f"({', '.join(p.name for p in StepPriority)}), got {priority!r}"
            )
        if not isinstance(project_id, str) or not project_id:
            raise WorkflowEngineError(f"project_id must be a non-empty string, got {project_id!r}")
        if initial_input is None:
            initial_input = {}
        if not isinstance(initial_input, Mapping):
            raise WorkflowEngineError(
                f"initial_input of project {project_id!r} must be a dict, got {type(initial_input).__name__}"
            )
        self._executors.check(graph.steps)
        missing = [s.name for s in graph.steps if s.name not in self._processors]
        if missing:
            raise MissingProcessorError(
                f"workflow {workflow_name!r} has steps without a processor: {', '.join(missing)}; "
                "call engine.register_step_processor(step_name, processor) for each",
                missing,
            )
        if progress_callback is not None and not callable(progress_callback):
            raise WorkflowEngineError(f"progress_callback must be callable, got {type(progress_callback).__name__}")
        loop = asyncio.get_running_loop()
        with self._lock:
            if project_id in self._runs:
                raise ProjectAlreadyRunningError(
                    f"project {project_id!r} is already running (workflow {self._runs[project_id].workflow_name!r}); "
                    "wait for it, cancel it, or use another project_id"
                )
            if self._runs and self._loop is not loop:
                raise WorkflowEngineError(
                    "this engine has runs going on another event loop; "
                    "run workflows of one engine on one loop at a time"
                )
            if not self._runs:
                check_loop = getattr(self.clock, "check_loop", None)
                if check_loop is not None:
                    check_loop(loop)
                self._loop = loop
                self._loop_thread = threading.get_ident()
            state = WorkflowExecutionState(
                project_id, workflow_name, graph, self.clock.wall(), clock_now=self.clock.now, limits=self._limits
            )
            run = _Run(
                self, graph, project_id, uuid.uuid4().hex, next(self._run_seq), dict(initial_input), state,
                progress_callback, self.fail_fast if fail_fast is None else fail_fast,
            )
            run.loop = loop
            run.loop_thread = self._loop_thread
            run.done = loop.create_future()
            run.record_history = self.record_history
            run.fresh = fresh
            run.order = (-int(priority), run.seq)
            self._runs[project_id] = run
        return run

    async def _drive(self, run: _Run) -> WorkflowExecutionResult:
        try:
            run.t_start = self.clock.now()
            self._emit(run, EventKind.RUN_STARTED, None, {"run_id": run.run_id, "total_steps": len(run.graph), "fresh": run.fresh})
            restored = self._restore(run)
            graph = run.graph
            for i in range(len(graph)):
                if run.status[i] is StepStatus.PENDING and run.missing[i] == 0:
                    self._queue(run, i)
            if restored:
                self._finish_if_done(run)
            self._request_dispatch()
            if run.remaining == 0:
                self._finish_if_done(run)
            try:
                await asyncio.shield(run.done)
            except asyncio.CancelledError:
                # The caller's task was cancelled: no step may outlive the call.
                self.cancel_workflow(run.project_id, "execute_workflow() was cancelled")
                await asyncio.wait([run.done])
                for task in list(run.callback_tasks):
                    task.cancel()
                raise
            if run.callback_tasks:
                await self._settle_callbacks(run)
            return self._build_result(run)
        finally:
            self._release_run(run)

    async def _settle_callbacks(self, run: _Run) -> None:
        # Async progress callbacks still going when the run ends get
        # callback_grace_seconds, then are cancelled: no task of a run
        # outlives execute_workflow().
        _, late = await asyncio.wait(list(run.callback_tasks), timeout=self.callback_grace_seconds)
        if late:
            log.warning(
                "run %r: %d async progress callback(s) still running %gs after the run ended were cancelled; "
                "make the callback return sooner", run.project_id, len(late), self.callback_grace_seconds,
            )
            for task in late:
                task.cancel()
            await asyncio.wait(late, timeout=self.callback_grace_seconds)

    def _restore(self, run: _Run) -> bool:
        if self.run_store is None or run.fresh:
            return False
        done = self.run_store.load_completed(run.workflow_name, run.project_id, run.graph)
        if not done:
            return False
        now = self.clock.now()
        graph = run.graph
        # Topological order guarantees parents are restored before children
        # merge their data.
        for i in graph.order:
            name = graph.steps[i].name
            result = done.get(name)
            if result is None or any(run.status[p] is not StepStatus.COMPLETED for p in graph.parents[i]):
                continue
            run.attempts[i] = result.attempts
            run.results[i] = result
            run.outputs_view[name] = result.output_data
            run.store_output(i, result.output_data)
            run.status[i] = StepStatus.COMPLETED
            run.remaining -= 1
            run.resumed_steps.append(name)
            for c in graph.children[i]:
                run.missing[c] -= 1
            self._emit(run, EventKind.STEP_COMPLETED, name, {"attempt": result.attempts, "duration": 0.0, "restored": True, "time": now})
        return bool(run.resumed_steps)

    def _release_run(self, run: _Run) -> None:
        with self._lock:
            if self._runs.get(run.project_id) is run:
                del self._runs[run.project_id]
            self._finished[run.project_id] = run
            self._finished.move_to_end(run.project_id)
            while len(self._finished) > self.history_limit:
                self._finished.popitem(last=False)
            if not self._runs:
                self._loop = None
        run.merged.clear()
        run.acc = []

    # ------------------------------------------------------------------ events
    def _emit(self, run: _Run, kind: EventKind, step: str | None, data: dict) -> None:
        seq = next(self._seq)
        now = self.clock.now()
        run.record(seq, now, kind, step, data)
        # An Event object only for subscribers: the state and the history
        # take the fields (three events per step, most runs unobserved).
        if self._bus.active:
            self._bus.emit(new_event(seq, now, kind, run.project_id, run.workflow_name, step, data))
        if run.callback is not None:
            run.notify(kind)
        if self._wakers:
            self._wake()

    def _emit_if_active(self, run: _Run, kind: EventKind, step: str | None, data: dict) -> None:
        if run.done is not None and not run.done.done():
            self._emit(run, kind, step, data)

    def _post_engine_event(self, kind: EventKind, data: dict) -> None:
        def emit() -> None:
            self._bus.emit(Event(next(self._seq), self.clock.now(), kind, None, None, None, data))
            if self._wakers:
                self._wake()

        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            emit()
        else:
            loop.call_soon_threadsafe(emit)

    def _limits(self) -> tuple[int, Callable[[str], int]]:
        return self._max_concurrent, self.resource_manager.capacity

    # ------------------------------------------------------------------ scheduling
    def _on_loop(self, run: _Run, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn`` now if on the run's loop thread, else hand it to that loop."""
        if run.on_loop_thread():
            fn(*args)
        elif run.loop is not None and not run.loop.is_closed():
            run.loop.call_soon_threadsafe(fn, *args)

    def _request_dispatch(self) -> None:
        loop = self._loop
        if loop is None or self._dispatch_pending:
            return
        self._dispatch_pending = True
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(self._dispatch)
        else:
            loop.call_soon_threadsafe(self._dispatch)

    def _queue(self, run: _Run, i: int) -> None:
        step = run.graph.steps[i]
        run.status[i] = StepStatus.READY
        # The key of scheduler.py's policy; plan.simulate_schedule builds the same.
        entry = (run.order, -run.graph.urgency[i], -run.graph.rank[i], i, run)
        if run.paused:
            run.parked.append(entry)
        else:
            self._ready.push(entry, run.graph.pools[i])
        self._emit(run, EventKind.STEP_QUEUED, step.name, {})

    def _dispatch(self) -> None:
        self._dispatch_pending = False
        ready = self._ready
        if not ready:
            return
        rm = self.resource_manager
        started: list[tuple[_Run, int, int]] = []
        deferred: list[tuple] = []
        with self._lock:
            slots = self._max_concurrent - self._running
            if slots <= 0:
                return
            for entry in ready.pop_startable(slots, rm.try_acquire_all, self._claim_horizon, self._fits_before):
                run = entry[4]
                i = entry[3]
                if run.paused or run.cancelled:
                    # Paused or cancelled between queueing and now (another
                    # thread): give the units back and leave it to _do_pause /
                    # _do_cancel.
                    if run.graph.pools[i]:
                        rm.release_all(run.graph.pools[i])
                    deferred.append(entry)
                    continue
                slot = self._free_slots.pop() if self._free_slots else self._take_new_slot()
                self._running += 1
                run.status[i] = StepStatus.RUNNING
                if run.graph.pools[i]:
                    est = run.graph.steps[i].estimated_duration
                    run.pool_ends[i] = self.clock.now() + est if est > 0 else None
                started.append((run, i, slot))
        for entry in deferred:
            run = entry[4]
            if run.cancelled:
                self._finish_step_cancelled(run, entry[3])
            else:
                run.parked.append(entry)
        for run, i, slot in started:
            self._start(run, i, slot)

    def _claim_horizon(self, pools: frozenset[str]) -> float:
        """Estimated time at which a unit of each of ``pools`` is free (``-inf``: unknown).

        From the estimated ends of the running steps holding those pools
        (an overrunning one counts as ending now).  Called only when a
        ready step is blocked, over at most ``max_concurrent_steps`` steps.
        """
        rm = self.resource_manager
        now = self.clock.now()
        t = now
        for p in pools:
            short = rm.in_use(p) - rm.capacity(p) + 1  # units that must free first
            if short <= 0:
                continue
            ends = []
            for run in self._runs.values():
                for i, end in run.pool_ends.items():
                    if p in run.graph.pools[i]:
                        if end is None:
                            return -math.inf
                        ends.append(end)
            if len(ends) < short:  # units held outside the engine's steps
                return -math.inf
            ends.sort()
            t = max(t, ends[short - 1])
        return t

    def _fits_before(self, entry: tuple, until: float) -> bool:
        """Whether the step of ready ``entry``, started now, is estimated to end by ``until``."""
        est = entry[4].graph.steps[entry[3]].estimated_duration
        return est > 0 and self.clock.now() + est <= until

    def _take_new_slot(self) -> int:
        slot = self._next_slot
        self._next_slot += 1
        return slot

    def _start(self, run: _Run, i: int, slot: int) -> None:
        run.attempts[i] += 1
        attempt = run.attempts[i]
        step = run.graph.steps[i]
        self._emit(run, EventKind.STEP_STARTED, step.name, {"attempt": attempt, "slot": slot, "pools": run.pool_lists[i]})
        task = run.loop.create_task(self._run_step(run, i, slot, attempt))
        run.tasks[i] = task

    async def _run_step(self, run: _Run, i: int, slot: int, attempt: int) -> None:
        step = run.graph.steps[i]
        processor = self._processors.get(step.name)
        timeout = step.timeout_seconds or self.default_timeout_seconds
        t0 = self.clock.now()
        wall0 = self.clock.wall()
        raw: Any = None
        error: BaseException | None = None
        cancelled = False
        scope: _Deadline | None = None
        try:
            if processor is None:
                raise StepExecutionError(
                    f"step {step.name!r} has no processor (it was unregistered during the run); "
                    f"register one with engine.register_step_processor({step.name!r}, ...)",
                    step_name=step.name,
                )
            context = StepExecutionContext(run, step, attempt)
            data = run.input_data(i)
            with _Deadline(self, run.loop, timeout) as scope:
                executor = self._executors.default if step.executor is None else self._executors.get(step.executor, step.name)
                if executor is not None:
                    raw = await executor.run(processor, context, data)
                elif processor.runs_in_thread:
                    fn = processor.fn if isinstance(processor, FunctionProcessor) else processor.execute
                    raw = await run.loop.run_in_executor(self._thread_pool(), call_sync, fn, context, data)
                else:
                    # An async function processor: call it directly (one coroutine less).
                    execute = processor.fn if type(processor) is FunctionProcessor else processor.execute
                    raw = await execute(context, data)
                # asyncio.iscoroutine is also true of plain generators, which
                # cannot be awaited: those fail in _coerce as a wrong type.
                if (asyncio.iscoroutine(raw) and not isinstance(raw, types.GeneratorType)) or isinstance(raw, asyncio.Future):
                    raw = await raw
        except TimeoutError as exc:
            if scope is not None and scope.expired():
                error = StepTimeoutError(
                    f"step {step.name!r} timed out after {timeout:g}s (timeout_seconds="
                    f"{step.timeout_seconds!r}, engine default {self.default_timeout_seconds:g}s); "
                    "raise its timeout_seconds or make it faster",
                    step_name=step.name,
                    timeout_seconds=timeout,
                )
            else:
                error = exc
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if run.cancelled or (task is not None and task.cancelling()):
                cancelled = True
            else:
                # The processor raised CancelledError itself: a failure, or
                # the step would stay unfinished and its run would never end.
                error = StepExecutionError(
                    f"step {step.name!r} raised CancelledError although neither the step nor its run was "
                    "cancelled; raise an ordinary exception to fail a step",
                    step_name=step.name,
                )
        except (KeyboardInterrupt, SystemExit) as exc:
            error = exc
            self.cancel_workflow(run.project_id, f"{type(exc).__name__} in step {step.name!r}")
        except BaseException as exc:  # noqa: BLE001 - a step must never take the engine down
            error = exc
        finally:
            self._running -= 1
            self._free_slots.append(slot)
            run.tasks.pop(i, None)
            if run.graph.pools[i]:
                run.pool_ends.pop(i, None)
                self.resource_manager.release_all(run.graph.pools[i])
        t1 = self.clock.now()
        if cancelled:
            self._record_attempt(run, i, attempt, t0, t1, StepStatus.CANCELLED, None)
            self._finish_step_cancelled(run, i)
        else:
            result = error is None and self._coerce(step.name, raw)
            if isinstance(result, StepExecutionError):
                error, result = result, None
            if result and result.is_successful:
                if i in run.attempt_log:
                    self._record_attempt(run, i, attempt, t0, t1, StepStatus.COMPLETED, None)
                    result.attempt_history = run.attempt_log[i]
                else:  # first-try success: the compact record (see results.py)
                    result.attempt_history = (attempt, t0, t1)
                result.execution_time = t1 - t0
                result.started_at = wall0
                result.completed_at = self.clock.wall()
                self._complete(run, i, result)
            else:
                self._fail_attempt(run, i, attempt, t0, t1, wall0, error, result or None)
        if self._running or self._loop is not run.loop:
            self._request_dispatch()
        else:
            # No other step is running, so no other step can end in this
            # loop iteration: deciding now picks what the deferred dispatch
            # would, one loop iteration sooner (a chain's next step at once).
            self._dispatch()
            if not self._running:
                _drop_idle_deadline_timer(self)

    def _coerce(self, step_name: str, raw: Any) -> StepResult | StepExecutionError:
        if isinstance(raw, StepResult):
            return _check_result(step_name, raw)
        if raw is None:
            return StepResult(step_name, StepStatus.COMPLETED)  # = StepResult.success(step_name, {})
        if isinstance(raw, Mapping):
            return StepResult.success(step_name, dict(raw))
        return StepExecutionError(
            f"the processor of step {step_name!r} returned {type(raw).__name__}; "
            "return a StepResult or a dict of outputs",
            step_name=step_name,
        )

    def _record_attempt(
        self, run: _Run, i: int, attempt: int, t0: float, t1: float, status: StepStatus, error: BaseException | str | None
    ) -> None:
        message = error if isinstance(error, str) or error is None else _describe(error)
        error_type = None if error is None or isinstance(error, str) else type(error).__name__
        run.attempt_log.setdefault(i, []).append(StepAttempt(attempt, t0, t1, status, message, error_type))

    def _complete(self, run: _Run, i: int, result: StepResult) -> None:
        graph = run.graph
        name = graph.steps[i].name
        result.attempts = run.attempts[i]
        run.results[i] = result
        run.outputs_view[name] = result.output_data
        run.store_output(i, result.output_data)
        run.status[i] = StepStatus.COMPLETED
        run.remaining -= 1
        self._emit(run, EventKind.STEP_COMPLETED, name, {"attempt": run.attempts[i], "duration": result.execution_time})
        if not run.cancelled:
            missing = run.missing
            for c in graph.children[i]:
                missing[c] -= 1
                if missing[c] == 0 and run.status[c] is StepStatus.PENDING:
                    self._queue(run, c)
        self._finish_if_done(run)

    def _fail_attempt(
        self, run: _Run, i: int, attempt: int, t0: float, t1: float, wall0: Any,
        error: BaseException | None, result: StepResult | None,
    ) -> None:
        step = run.graph.steps[i]
        message = (result.error_message if result else None) or _describe(error) or "failed"
        policy = step.retry_policy
        self._record_attempt(run, i, attempt, t0, t1, StepStatus.FAILED, message)
        run.attempt_log[i][-1].error_type = _type_name(error, result)
        if not run.cancelled and policy.should_retry(attempt, error):
            delay = policy.delay_for(attempt, self._rng)
            run.status[i] = StepStatus.RETRYING
            self._emit(run, EventKind.STEP_RETRYING, step.name, {"attempt": attempt, "delay": delay, "error": message, "error_type": _type_name(error, result)})
            run.retry_handles[i] = run.loop.call_later(delay, self._retry_due, run, i)
            return
        final = result or StepResult.failure(step.name, message, getattr(error, "details", None) or {})
        final.status = StepStatus.FAILED
        final.error_type = _type_name(error, result)
        if error is not None and "error_type" not in final.error_details:
            final.error_details["error_type"] = type(error).__name__
        final.execution_time = t1 - t0
        final.started_at = wall0
        final.completed_at = self.clock.wall()
        final.attempts = attempt
        final.attempt_history = run.attempt_log.get(i, [])
        run.results[i] = final
        run.status[i] = StepStatus.FAILED
        run.remaining -= 1
        self._emit(run, EventKind.STEP_FAILED, step.name, {"attempt": attempt, "duration": t1 - t0, "error": message, "error_type": final.error_type})
        self._skip_descendants(run, i)
        if run.fail_fast and not run.cancelled:
            run.failed_fast = True
            self.cancel_workflow(run.project_id, f"fail-fast: step {step.name!r} failed")
        self._finish_if_done(run)

    def _retry_due(self, run: _Run, i: int) -> None:
        run.retry_handles.pop(i, None)
        if run.cancelled or run.status[i] is not StepStatus.RETRYING:
            return
        self._queue(run, i)
        self._request_dispatch()

    def _skip_descendants(self, run: _Run, i: int) -> None:
        graph = run.graph
        upstream = graph.steps[i].name
        stack = list(graph.children[i])
        while stack:
            c = stack.pop()
            if run.status[c] is not StepStatus.PENDING:
                continue
            run.status[c] = StepStatus.SKIPPED
            run.remaining -= 1
            reason = f"upstream step {upstream!r} failed"
            run.results[c] = StepResult(graph.steps[c].name, StepStatus.SKIPPED, error_message=reason, error_details={"upstream": upstream})
            self._emit(run, EventKind.STEP_SKIPPED, graph.steps[c].name, {"reason": reason, "upstream": upstream})
            stack.extend(graph.children[c])

    def _finish_step_cancelled(self, run: _Run, i: int) -> None:
        if run.status[i].is_terminal:
            return
        name = run.graph.steps[i].name
        run.status[i] = StepStatus.CANCELLED
        run.remaining -= 1
        run.results[i] = StepResult(
            name, StepStatus.CANCELLED, error_message=run.cancel_reason or "cancelled",
            attempts=run.attempts[i], attempt_history=run.attempt_log.get(i, []),
        )
        self._emit(run, EventKind.STEP_CANCELLED, name, {"reason": run.cancel_reason})
        self._finish_if_done(run)

    def _finish_if_done(self, run: _Run) -> None:
        if run.remaining or run.done is None or run.done.done():
            return
        if run.cancelled and not run.failed_fast:
            status = StepStatus.CANCELLED
        elif all(s is StepStatus.COMPLETED for s in run.status):
            status = StepStatus.COMPLETED
        else:
            status = StepStatus.FAILED
        run.state.completed_at = self.clock.wall()
        self._emit(run, EventKind.RUN_FINISHED, None, {"status": status.value, "reason": run.cancel_reason or None, "run_id": run.run_id})
        run.wake_checkpoints()
        run.done.set_result(status)

    # ------------------------------------------------------------------ control on the loop
    def _do_pause(self, run: _Run) -> None:
        if run.done.done():
            return
        removed = self._ready.remove_where(lambda e: e[4] is run)
        run.parked.extend(removed)
        self._emit(run, EventKind.PAUSED, None, {"parked": len(run.parked)})

    def _do_resume(self, run: _Run) -> None:
        if run.done.done():
            return
        parked, run.parked = run.parked, []
        for entry in parked:
            self._ready.push(entry, run.graph.pools[entry[3]])
        self._emit(run, EventKind.RESUMED, None, {})
        run.wake_checkpoints()
        self._request_dispatch()

    def _do_cancel(self, run: _Run) -> None:
        if run.done.done():
            return
        self._emit(run, EventKind.CANCEL_REQUESTED, None, {"reason": run.cancel_reason})
        waiting = self._ready.remove_where(lambda e: e[4] is run) + run.parked
        run.parked = []
        for entry in sorted(waiting, key=lambda e: e[3]):
            self._finish_step_cancelled(run, entry[3])
        for i, handle in list(run.retry_handles.items()):
            handle.cancel()
            run.retry_handles.pop(i, None)
            self._finish_step_cancelled(run, i)
        for i in run.graph.order:
            if run.status[i] is StepStatus.PENDING:
                self._finish_step_cancelled(run, i)
        # A task cancelled before its first step never enters _run_step's
        # try block, so its slot and units would leak; cancelling one loop
        # iteration later guarantees every step task has started (tasks
        # begin in call_soon order).
        message = f"run {run.project_id!r} cancelled: {run.cancel_reason}"
        for task in list(run.tasks.values()):
            run.loop.call_soon(task.cancel, message)
        run.wake_checkpoints()
        self._finish_if_done(run)

    # ------------------------------------------------------------------ results
    def _build_result(self, run: _Run) -> WorkflowExecutionResult:
        graph = run.graph
        state = run.state
        step_results = {}
        for i, step in enumerate(graph.steps):
            r = run.results.get(i)
            if r is None:
                r = StepResult(step.name, run.status[i])
            step_results[step.name] = r
        status = state.status
        end = state.last_event.time if state.last_event is not None else run.t_start
        return WorkflowExecutionResult(
            project_id=run.project_id,
            workflow_name=run.workflow_name,
            status=status,
            total_steps=len(graph),
            completed_steps=state.completed_steps,
            failed_steps=state.failed_steps,
            execution_time_seconds=end - run.t_start,
            step_results=step_results,
            skipped_steps=state.skipped_steps,
            cancelled_steps=state.cancelled_steps,
            error_summary={n: r.error_message or "failed" for n, r in step_results.items() if r.status is StepStatus.FAILED},
            cancel_reason=run.cancel_reason or None,
            started_at=state.started_at,
            completed_at=state.completed_at,
            resumed_steps=list(run.resumed_steps),
            run_id=run.run_id,
        )

    # ------------------------------------------------------------------ threads
    def _thread_pool(self) -> ThreadPoolExecutor:
        want = max(8, self._max_concurrent)
        if self._threads is None or self._threads_size < want:
            old = self._threads
            self._threads = ThreadPoolExecutor(max_workers=want, thread_name_prefix="yukkuri_nb-step")
            self._threads_size = want
            if old is not None:
                old.shutdown(wait=False)
        return self._threads

    def close(self) -> None:
        """Release the worker threads and the run store (the engine stays usable)."""
        if self._threads is not None:
            self._threads.shutdown(wait=False)
            self._threads = None
        self._executors.close()
        if self.run_store is not None:
            self.run_store.close()

    def __repr__(self) -> str:
        return (
            f"<WorkflowEngine {len(self._workflows)} workflows, {len(self._runs)} running, "
            f"max_concurrent_steps={self._max_concurrent}>"
        )


def _check_result(step_name: str, result: StepResult) -> StepResult | StepExecutionError:
    # A malformed StepResult would break the data flow after the step ended
    # (and hang its run): reject it as the step's failure instead.
    result.step_name = step_name
    try:
        result.status = StepStatus(result.status)
    except ValueError:
        pass
    if result.output_data is None:
        result.output_data = {}
    if result.metadata is None:
        result.metadata = {}
    problem = None
    if result.status not in (StepStatus.COMPLETED, StepStatus.FAILED):
        problem = f"a StepResult with status {getattr(result.status, 'value', result.status)!r}"
    elif not isinstance(result.output_data, Mapping):
        problem = f"a StepResult whose output_data is {type(result.output_data).__name__}"
    elif not isinstance(result.metadata, Mapping):
        problem = f"a StepResult whose metadata is {type(result.metadata).__name__}"
    if problem is None:
        return result
    return StepExecutionError(
        f"the processor of step {step_name!r} returned {problem}; "
        "return StepResult.success(name, {...}) / StepResult.failure(name, message) or a dict of outputs",
        step_name=step_name,
    )


class _Deadline:
    """A step's timeout: what ``asyncio.timeout`` does for the step, at a fraction of the cost.

    ``asyncio.timeout`` arms and cancels one loop timer per step (a
    ``TimerHandle``, a context copy, a heap push), which cost more than the
    rest of starting a no-op step.  Here every running step's deadline sits
    in the engine's heap, and one loop timer is armed for the earliest.
    Finished steps are only marked (``task = None``) and dropped when they
    reach the top, or when the timer fires; so the timer may fire for a
    deadline that is gone, which re-arms it and changes nothing else.

    Semantics are those of ``asyncio.timeout``: at the deadline the step's
    task is cancelled; leaving the block with that ``CancelledError`` raises
    ``TimeoutError`` (unless someone else also cancelled the task), and
    :meth:`expired` tells the engine the deadline was its own.
    """

    __slots__ = ("engine", "loop", "when", "task", "cancelling", "_expired")

    def __init__(self, engine: "WorkflowEngine", loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.engine = engine
        self.loop = loop
        self.when = loop.time() + delay
        self.task: asyncio.Task | None = None
        self.cancelling = 0
        self._expired = False

    def expired(self) -> bool:
        return self._expired

    def __enter__(self) -> "_Deadline":
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a step deadline must be entered inside a task")
        self.task = task
        self.cancelling = task.cancelling()
        engine = self.engine
        heap = engine._deadlines
        heapq.heappush(heap, (self.when, next(engine._deadline_seq), self))
        timer = engine._deadline_timer
        if timer is not None and engine._deadline_loop is not self.loop:
            # Left over from a run on another (closed) loop: forget it.
            timer.cancel()
            timer = None
            del heap[:]
            heapq.heappush(heap, (self.when, next(engine._deadline_seq), self))
        if timer is None or self.when < engine._deadline_at:
            if timer is not None:
                timer.cancel()
            engine._deadline_at = self.when
            engine._deadline_loop = self.loop
            engine._deadline_timer = self.loop.call_at(self.when, _deadlines_due, engine, self.loop)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        task, self.task = self.task, None
        engine = self.engine
        heap = engine._deadlines
        while heap and heap[0][2].task is None:
            heapq.heappop(heap)
        # An empty heap keeps its timer until no step runs (see
        # _drop_idle_deadline_timer): steps that end without awaiting would
        # otherwise arm and cancel a loop timer each.
        if self._expired and task is not None:
            if task.uncancel() <= self.cancelling and exc_type is asyncio.CancelledError:
                raise TimeoutError from exc


def _drop_idle_deadline_timer(engine: "WorkflowEngine") -> None:
    """No step is running: every deadline is gone, so the loop timer goes too.

    Only running steps may leave a timer behind, so an idle loop (a paused
    run, a VirtualClock between runs) never wakes for a deadline of a step
    that already ended.
    """
    if engine._deadline_timer is not None and all(entry[2].task is None for entry in engine._deadlines):
        engine._deadline_timer.cancel()
        engine._deadline_timer = None
        engine._deadlines.clear()


def _deadlines_due(engine: "WorkflowEngine", loop: asyncio.AbstractEventLoop) -> None:
    """The deadline timer fired: cancel every step whose deadline has come, re-arm for the next."""
    engine._deadline_timer = None
    due = engine._deadline_at
    heap = engine._deadlines
    while heap and (heap[0][2].task is None or heap[0][0] <= due):
        deadline = heapq.heappop(heap)[2]
        task = deadline.task
        if task is not None and deadline.loop is loop:
            deadline._expired = True
            task.cancel()
    if heap:
        engine._deadline_at = heap[0][0]
        engine._deadline_timer = loop.call_at(heap[0][0], _deadlines_due, engine, loop)


def _check_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WorkflowEngineError(f"max_concurrent_steps must be an int >= 1, got {value!r}")
    return value


def _describe(error: BaseException | None) -> str:
    if error is None:
        return ""
    text = str(error)
    return text if isinstance(error, WorkflowEngineError) else f"{type(error).__name__}: {text}" if text else type(error).__name__


def _type_name(error: BaseException | None, result: StepResult | None) -> str:
    if error is not None:
        return type(error).__name__
    if result is not None and result.error_details.get("error_type"):
        return str(result.error_details["error_type"])
    return "StepFailure"


def _open_store(run_store: Any) -> Any:
    if isinstance(run_store, (str, os.PathLike)):
        from .store import SQLiteRunStore

        return SQLiteRunStore(run_store)
    for method in ("attach", "load_completed", "close"):
        if not callable(getattr(run_store, method, None)):
            raise WorkflowEngineError(
                f"run_store must be a path or an object with attach(), load_completed() and close(); "
                f"{type(run_store).__name__} has no {method}()"
            )
    return run_store
