"""The workflow engine: runs DAGs of steps under a concurrency limit and resource pools.

How a run goes (see :mod:`~yukkuri_nb.core.run` for the per-run fields and
:mod:`~yukkuri_nb.core.scheduler` for the choice of the next step).  The
engine is one object whose parts live in their own modules:
:mod:`~yukkuri_nb.core.dispatch` (queueing and starting ready steps),
:mod:`~yukkuri_nb.core.stepping` (running a step, recording its end, retries),
:mod:`~yukkuri_nb.core.deadlines` (step timeouts); this module has the public
API, the registry, run set-up and tear-down, and the control calls.

1. ``execute_workflow`` validates (workflow known, processors present,
   ``project_id`` not running), then queues the steps without dependencies.
2. ``_dispatch`` starts ready steps while the engine has free slots
   (``max_concurrent_steps`` is shared by every run of the engine) and their
   pools have units, each as its own task (or, for a chain, the task of the
   step that just ended: :mod:`~yukkuri_nb.core.stepping`, "continuing
   tasks"), in a copy of the context ``execute_workflow`` was called in.
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
import itertools
import logging
import math
import os
import random
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Mapping

from .clock import Clock, RealClock
from .deadlines import Deadlines
from .definitions import StepPriority, StepStatus, WorkflowStepDefinition
from .dispatch import Dispatcher
from .events import Event, EventBus, EventKind, Observer, new_event
from .executors import ExecutorRegistry
from .graph import DependencyResolver, WorkflowGraph, complete_graph
from .plan import WorkflowExecutionPlan, simulate_each_schedule
from .processors import StepProcessor, as_processor
from .resources import ResourceManager
from .results import StepResult
from .run import _Run
from .scheduler import SCHEDULES, ReadyQueue, claims_units
from .state import WorkflowExecutionResult, WorkflowExecutionState
from .stepping import StepLifecycle
from .workflow_exceptions import (
    MissingProcessorError,
    ProjectAlreadyRunningError,
    UnknownWorkflowError,
    WorkflowEngineError,
)

__all__ = ["WorkflowEngine"]

log = logging.getLogger("yukkuri_nb.engine")


class WorkflowEngine(Dispatcher, StepLifecycle):
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
        self._by_seq: dict[int, _Run] = {}  # live runs by run.seq (ready entries name runs so)
        self._finished: OrderedDict[str, _Run] = OrderedDict()
        self._ready = ReadyQueue()
        self._running = 0
        self._free_slots: list[int] = []
        self._next_slot = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._dispatch_pending = False
        self._releasing = False  # a step task is giving back its own units (dispatch._units_released)
        self._threads: ThreadPoolExecutor | None = None
        self._threads_size = 0
        self._deadlines = Deadlines()  # step timeouts behind one loop timer
        self._executors = ExecutorRegistry(executor)
        self.resource_manager.add_listener(self._units_released)
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
        graph = complete_graph(self.dependency_resolver.resolve(name, steps))  # a custom resolver's may lack fields
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
        May be called from any thread.  An exception from ``fn`` is logged.
        """
        with self._lock:
            self._wakers.append(fn)

    def _wake(self) -> None:
        with self._lock:
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

    def plan_execution(self, workflow_name: str, project_id: str = "", *, schedule: str | None = None) -> WorkflowExecutionPlan:
        """Phases, predicted makespan under the current limits, and pool needs of a workflow.

        The prediction follows ``schedule`` (see :meth:`execute_workflow`);
        by default the schedule of ``project_id``'s current or latest run,
        else ``"priority"``.
        """
        graph = self.get_workflow(workflow_name)
        kind = schedule
        if kind is None:
            run = self._runs.get(project_id) or self._finished.get(project_id)
            kind = run.schedule if run is not None and run.graph is graph else "priority"
        elif kind != "makespan" and kind not in SCHEDULES:
            raise _bad_schedule("schedule", schedule)
        caps = self._capacities(graph)
        if graph.steps and all(c > 0 for c in caps.values()):
            kind, steps = self._simulate(graph, caps, SCHEDULES if kind == "makespan" else (kind,))
            makespan = max(s.end for s in steps)
        else:
            steps, makespan = [], (float("inf") if graph.steps else 0.0)
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
            schedule=steps,
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
        schedule: str = "priority",
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

        ``schedule`` is the order this run's ready steps are taken in:
        ``"priority"`` (the default, as above), ``"critical-path"`` (longest
        remaining chain first, priorities ignored), ``"fifo"`` (the order
        they became ready, no claims), or ``"makespan"``: when the run starts
        the engine simulates those three on the estimated durations (steps
        without an estimate count as 0 s; other runs are not taken into
        account) and follows the one that finishes first, ``"priority"`` on
        a tie.  For a batch whose finishing time matters more than its step
        priorities.  The choice is in the ``run_started`` event
        (``data["schedule"]``) and ``state.schedule``; making it costs about
        10 µs per step when the run starts (0.1 s for 10,000 steps).

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
            workflow_name, project_id, initial_input, progress_callback, fail_fast=fail_fast, fresh=fresh,
            priority=priority, schedule=schedule,
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
        schedule: str = "priority",
    ) -> _Run:
        graph = self.get_workflow(workflow_name)
        if schedule not in SCHEDULES and schedule != "makespan":
            raise _bad_schedule(f"schedule of project {project_id!r}", schedule)
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
        # Outside the lock: simulating a large graph three times takes a while.
        chosen = self._choose_schedule(graph) if schedule == "makespan" else schedule
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
            run.schedule = chosen
            run.claims = claims_units(chosen)
            self._runs[project_id] = run
            self._by_seq[run.seq] = run
        return run

    def _capacities(self, graph: WorkflowGraph) -> dict[str, int]:
        rm = self.resource_manager
        return {p: rm.capacity(p) for p in graph.resource_requirements}

    def _simulate(self, graph: WorkflowGraph, caps: dict[str, int], kinds: Iterable[str]) -> tuple[str, list]:
        """Of ``kinds``, the schedule whose simulation of ``graph`` alone ends first (the first on a tie), and that simulation."""
        best: tuple[str, list] | None = None
        best_end = math.inf
        for kind, steps in simulate_each_schedule(graph, self._max_concurrent, caps, kinds).items():
            end = max((s.end for s in steps), default=0.0)
            if best is None or end < best_end - 1e-9:
                best, best_end = (kind, steps), end
        assert best is not None
        return best

    def _choose_schedule(self, graph: WorkflowGraph) -> str:
        """The schedule ``"makespan"`` follows for ``graph`` (see :meth:`execute_workflow`)."""
        caps = self._capacities(graph)
        if any(c <= 0 for c in caps.values()):
            return SCHEDULES[0]  # a pool of capacity 0: the run waits for it whatever the order
        return self._simulate(graph, caps, SCHEDULES)[0]

    async def _drive(self, run: _Run) -> WorkflowExecutionResult:
        try:
            run.t_start = self.clock.now()
            run.wall0 = self.clock.wall()
            self._emit(run, EventKind.RUN_STARTED, None, {"run_id": run.run_id, "total_steps": len(run.graph), "fresh": run.fresh, "schedule": run.schedule})
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
            self._by_seq.pop(run.seq, None)
            self._finished[run.project_id] = run
            self._finished.move_to_end(run.project_id)
            while len(self._finished) > self.history_limit:
                self._finished.popitem(last=False)
            if not self._runs:
                self._loop = None
        run.merged.clear()
        run.acc = []

    # ------------------------------------------------------------------ events
    def _emit(self, run: _Run, kind: EventKind, step: str | None, data: dict | tuple, update: Any = None) -> None:
        seq = next(self._seq)
        now = self.clock.now()
        run.record(seq, now, kind, step, data, update)
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

    # ------------------------------------------------------------------ control on the loop
    def _do_pause(self, run: _Run) -> None:
        if run.done.done():
            return
        removed = self._ready.remove_where(lambda e: e[4] == run.seq)
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
        waiting = self._ready.remove_where(lambda e: e[4] == run.seq) + run.parked
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
        # begin in call_soon order).  By then the step may have ended and
        # its task gone on to another step (stepping.py, "continuing
        # tasks"): only a task still running that step is cancelled.
        message = f"run {run.project_id!r} cancelled: {run.cancel_reason}"
        for i, task in list(run.tasks.items()):
            run.loop.call_soon(_cancel_step_task, run, i, task, message)
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


def _bad_schedule(subject: str, value: Any) -> WorkflowEngineError:
    return WorkflowEngineError(f"{subject} must be one of {', '.join(map(repr, SCHEDULES))} or 'makespan', got {value!r}")


def _check_limit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WorkflowEngineError(f"max_concurrent_steps must be an int >= 1, got {value!r}")
    return value


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


def _cancel_step_task(run: _Run, i: int, task: asyncio.Task, message: str) -> None:
    if run.tasks.get(i) is task:
        task.cancel(message)
