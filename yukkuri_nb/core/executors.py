"""Executors: where a step's processor runs.

The engine orchestrates (pools, priorities, pause / resume / cancel, progress,
history); an executor only runs one attempt of one step and returns what the
processor returned.  An engine has a default executor
(``WorkflowEngine(..., executor=...)``) and named ones
(``engine.register_executor(name, executor)``); a step picks one by name with
``WorkflowStepDefinition(executor=name)``.

Built-in names (created on first use):

``"inprocess"`` (:class:`InProcessExecutor`, the default)
    async processors run on the engine's loop, sync ones in the engine's
    worker threads.  The engine runs this case inline, so it costs nothing.
``"thread"`` (:class:`ThreadExecutor`)
    sync processors run in the executor's own thread pool (e.g. to keep slow
    blocking I/O apart from the engine's threads).  A thread cannot be killed:
    on timeout or cancel the engine stops waiting, the thread runs to its end.
``"process"`` (:class:`ProcessExecutor`)
    the processor runs in a child process, which is killed when the step
    times out or is cancelled, so CPU-bound work really stops.

``yukkuri_nb.distributed.DaskExecutor`` runs steps on a Dask cluster.

Steps that run in another process get a :class:`RemoteStepContext` instead of
the engine's :class:`StepExecutionContext` (which holds the live run and is
not picklable).  It has the same attributes; ``report_progress`` and ``log``
travel back to the engine, which emits them as events.  ``get_resource`` is
not available there: providers live in the engine's process.

Protocol: an executor is an object with ``async run(processor, context,
input_data)`` and ``close()``; subclass :class:`StepExecutor`.  ``run`` is
cancelled when the step times out or its run is cancelled, and must stop the
work it started (or document that it cannot) before re-raising.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import multiprocessing
import os
import pickle
import threading
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .processors import FunctionProcessor, StepProcessor
from .workflow_exceptions import ResourceLimitError, StepExecutionError, WorkflowEngineError

if TYPE_CHECKING:  # pragma: no cover
    from .definitions import WorkflowStepDefinition
    from .processors import StepExecutionContext

__all__ = [
    "StepExecutor",
    "InProcessExecutor",
    "ThreadExecutor",
    "ProcessExecutor",
    "RemoteStepContext",
    "WorkerLostError",
    "UnknownExecutorError",
    "ExecutorRegistry",
    "processor_callable",
]


class WorkerLostError(StepExecutionError):
    """The process or cluster worker running a step died before it returned.

    A :class:`StepExecutionError`, so a step's :class:`RetryPolicy` retries it
    like any other failure (the default policy retries ``Exception``).
    """


class UnknownExecutorError(WorkflowEngineError, LookupError):
    """A step names an executor that the engine does not know."""

    def __str__(self) -> str:  # LookupError would repr() the message
        return str(self.args[0]) if self.args else ""


class StepExecutor(abc.ABC):
    """Runs one attempt of a step's processor somewhere; see the module docstring."""

    #: Name shown in errors and in the remote context.
    name: str = "executor"

    @abc.abstractmethod
    async def run(self, processor: StepProcessor, context: "StepExecutionContext", input_data: dict[str, Any]) -> Any:
        """Run ``processor`` on ``(context, input_data)`` and return what it returned.

        Raises what the processor raised.  When cancelled (timeout, run
        cancelled) it stops the work it started, then re-raises.
        """

    def close(self) -> None:
        """Release threads, processes or connections the executor owns (it stays usable)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def processor_callable(processor: StepProcessor) -> tuple[Callable[..., Any], bool]:
    """``(fn, is_async)`` where ``fn(context, input_data)`` does the processor's work."""
    if isinstance(processor, FunctionProcessor):
        return processor.fn, processor.is_async
    return processor.execute, not processor.runs_in_thread


def call_sync(fn: Callable[..., Any], context: Any, input_data: Any) -> Any:
    """``fn(context, input_data)`` for a worker thread; a ``StopIteration`` it raises becomes a ``RuntimeError``.

    An asyncio future refuses to hold ``StopIteration`` (``set_exception``
    raises ``TypeError`` inside the loop's callback), so without this the
    step would wait forever for its thread's result; coroutines get the same
    conversion from Python itself (PEP 479).
    """
    try:
        return fn(context, input_data)
    except StopIteration as exc:
        raise RuntimeError(
            f"the processor of step {getattr(context, 'step_name', '?')!r} raised StopIteration; "
            "raise an ordinary exception to fail a step"
        ) from exc


class InProcessExecutor(StepExecutor):
    """Today's behaviour: async on the loop, sync in a worker thread.

    The engine recognises it and runs steps inline with its own thread pool;
    :meth:`run` is only used when called directly.
    """

    name = "inprocess"

    async def run(self, processor: StepProcessor, context: "StepExecutionContext", input_data: dict[str, Any]) -> Any:
        fn, is_async = processor_callable(processor)
        if is_async:
            return await fn(context, input_data)
        return await asyncio.to_thread(call_sync, fn, context, input_data)


class ThreadExecutor(StepExecutor):
    """Sync processors run in this executor's own pool of ``max_workers`` threads.

    Async processors stay on the engine's loop (a loop cannot be shared with a
    thread).  Threads cannot be killed: a timed-out step's thread runs to its
    end in the background; use :class:`ProcessExecutor` for killable work.
    """

    def __init__(self, max_workers: int | None = None, *, name: str = "thread") -> None:
        if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1):
            raise ValueError(f"ThreadExecutor(max_workers=...) needs an int >= 1 or None, got {max_workers!r}")
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        self.name = name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _threads(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix=f"yukkuri_nb-{self.name}")
            return self._pool

    async def run(self, processor: StepProcessor, context: "StepExecutionContext", input_data: dict[str, Any]) -> Any:
        fn, is_async = processor_callable(processor)
        if is_async:
            return await fn(context, input_data)
        return await asyncio.get_running_loop().run_in_executor(self._threads(), call_sync, fn, context, input_data)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)


# ---------------------------------------------------------------------------
# the context of a step that runs in another process


class RemoteStepContext:
    """A picklable stand-in for :class:`StepExecutionContext` in another process.

    Same attributes (``step_name``, ``display_name``, ``project_id``,
    ``workflow_name``, ``attempt``, ``definition``, ``initial_input``);
    ``outputs`` and ``dependency_outputs`` hold the outputs of the step's
    direct dependencies only (everything upstream is merged into the input
    data already).  ``report_progress`` and ``log`` are sent back to the
    engine through the executor's channel (progress at most every
    ``min_interval`` seconds, plus every change of message and the final 1.0).
    ``checkpoint()`` never waits for a pause there (the step is already
    running); it raises ``CancelledError`` once the engine cancelled the step.
    """

    __slots__ = (
        "step_name", "display_name", "project_id", "workflow_name", "attempt", "definition",
        "initial_input", "outputs", "executor", "min_interval", "_sink", "_is_cancelled", "_last",
    )

    def __init__(
        self,
        *,
        step_name: str,
        display_name: str,
        project_id: str,
        workflow_name: str,
        attempt: int,
        definition: "WorkflowStepDefinition | None",
        initial_input: Mapping[str, Any],
        outputs: Mapping[str, Mapping[str, Any]],
        executor: str,
        min_interval: float = 0.05,
    ) -> None:
        self.step_name = step_name
        self.display_name = display_name
        self.project_id = project_id
        self.workflow_name = workflow_name
        self.attempt = attempt
        self.definition = definition
        self.initial_input = dict(initial_input)
        self.outputs = {k: dict(v) for k, v in outputs.items()}
        self.executor = executor
        self.min_interval = min_interval
        self._sink: Callable[..., None] | None = None
        self._is_cancelled: Callable[[], bool] | None = None
        self._last: tuple[float, str] = (float("-inf"), "")

    @classmethod
    def from_context(cls, context: Any, executor: str) -> "RemoteStepContext":
        """The picklable part of an engine-side context (or of another remote context)."""
        return cls(
            step_name=context.step_name,
            display_name=context.display_name,
            project_id=context.project_id,
            workflow_name=context.workflow_name,
            attempt=context.attempt,
            definition=context.definition,
            initial_input=context.initial_input,
            outputs=context.dependency_outputs,
            executor=executor,
        )

    # -- wiring, done by the executor's code on the remote side -----------------
    def bind(self, sink: Callable[..., None] | None, is_cancelled: Callable[[], bool] | None = None) -> "RemoteStepContext":
        """Route ``report_progress`` / ``log`` to ``sink(kind, *payload)``; ``is_cancelled()`` polls cancellation."""
        self._sink = sink
        self._is_cancelled = is_cancelled
        return self

    def __getstate__(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)
        self._sink = None
        self._is_cancelled = None
        self._last = (float("-inf"), "")

    # -- the StepExecutionContext face -----------------------------------------
    @property
    def dependency_outputs(self) -> dict[str, dict[str, Any]]:
        return self.outputs

    def report_progress(self, fraction: float, message: str = "") -> None:
        """Report sub-progress (0..1) to the engine; raises ``CancelledError`` once the step was cancelled."""
        try:
            fraction = min(1.0, max(0.0, float(fraction)))
        except (TypeError, ValueError):
            raise ValueError(f"report_progress() of step {self.step_name!r} needs a number 0..1, got {fraction!r}") from None
        self._raise_if_cancelled()
        message = str(message)
        now = time.monotonic()
        last_time, last_message = self._last
        if fraction < 1.0 and message == last_message and now - last_time < self.min_interval:
            return
        self._last = (now, message)
        if self._sink is not None:
            self._sink("progress", fraction, message)

    def log(self, message: str) -> None:
        """Record a log line in the run's history."""
        if self._sink is not None:
            self._sink("log", str(message))

    def get_resource(self, name: str) -> Any:
        raise ResourceLimitError(
            f"step {self.step_name!r} runs on executor {self.executor!r} in another process, where "
            f"context.get_resource({name!r}) is not available (providers live in the engine's process); "
            "pass what the step needs in its input data, or run it in-process with "
            "WorkflowStepDefinition(..., executor='inprocess')"
        )

    @property
    def is_paused(self) -> bool:
        return False

    @property
    def is_cancelled(self) -> bool:
        return bool(self._is_cancelled and self._is_cancelled())

    async def checkpoint(self) -> None:
        """Raise ``CancelledError`` if the engine cancelled this step; never waits for a pause."""
        self._raise_if_cancelled()

    def _raise_if_cancelled(self) -> None:
        if self._is_cancelled is not None and self._is_cancelled():
            raise asyncio.CancelledError(f"step {self.step_name!r} was cancelled by the engine")

    def __repr__(self) -> str:
        return (
            f"RemoteStepContext(step={self.step_name!r}, project={self.project_id!r}, "
            f"attempt={self.attempt}, executor={self.executor!r})"
        )


# ---------------------------------------------------------------------------
# process executor


class _Capacity:
    """At most ``total`` holders at once; waiters are served first come, first served.

    Loop-agnostic: each waiter is a future of the loop that awaits it, woken
    with ``call_soon_threadsafe``, so nothing stays bound to one loop.  A slot
    handed to a waiter that was cancelled meanwhile is given back.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.used = 0
        self._lock = threading.Lock()
        self._waiters: deque[asyncio.Future] = deque()

    async def acquire(self) -> None:
        with self._lock:
            if self.used < self.total and not self._waiters:
                self.used += 1
                return
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            with self._lock:
                if fut in self._waiters:
                    self._waiters.remove(fut)
                elif fut.done() and not fut.cancelled():
                    self._release_locked()  # granted, then cancelled: give it back
            raise

    def release(self) -> None:
        with self._lock:
            self._release_locked()

    def _release_locked(self) -> None:
        # Invariant: a slot freed while someone waits passes straight to them
        # (``used`` is unchanged), so no newcomer can jump the queue.
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.get_loop().call_soon_threadsafe(self._grant, fut)
                return
        self.used -= 1

    def _grant(self, fut: asyncio.Future) -> None:
        if fut.done():  # cancelled between the hand-over and now
            self.release()
        else:
            fut.set_result(None)


def _child_main(conn: Any) -> None:
    """Loop of a :class:`ProcessExecutor` child: run jobs until told to stop or the pipe closes."""
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        except BaseException as exc:  # the job could not be unpickled here
            conn.send(("load-error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            continue
        if job is None:
            return
        fn, ctx, data = job
        ctx.bind(lambda kind, *payload: conn.send((kind, *payload)))
        try:
            out = fn(ctx, data)
            if inspect.isawaitable(out):
                out = asyncio.run(_awaited(out))
            reply: tuple = ("ok", out)
        except BaseException as exc:  # report everything; the engine decides
            reply = ("error", type(exc).__name__, str(exc), traceback.format_exc(), _try_pickle(exc))
        try:
            conn.send(reply)
        except Exception as exc:  # e.g. an unpicklable result
            conn.send(("error", type(exc).__name__, f"its result could not be sent back: {exc}", traceback.format_exc(), None))


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _try_pickle(exc: BaseException) -> bytes | None:
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:
        return None


class _Child:
    __slots__ = ("proc", "conn")

    def __init__(self, ctx: Any) -> None:
        self.conn, child_conn = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_child_main, args=(child_conn,), daemon=True, name="yukkuri_nb-step")
        self.proc.start()
        child_conn.close()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(1)
        self.kill()


class ProcessExecutor(StepExecutor):
    """Runs processors in child processes that are killed on timeout or cancel.

    At most ``max_workers`` steps (default: the number of CPUs) run at once;
    more wait their turn.  Children are kept for the next step; one that was
    killed, or died, is replaced.  The processor (a module-level function or a
    picklable :class:`StepProcessor`), the input data and the result must be
    picklable; children are started with ``start_method`` (``"spawn"`` by
    default, which is safe in a process that has threads, like a Jupyter
    kernel).  The step gets a :class:`RemoteStepContext`.

    Raises (in the step's result): the processor's own exception when it can be
    pickled, else :class:`StepExecutionError`; :class:`WorkerLostError` when the
    child dies before it answers.
    """

    def __init__(self, max_workers: int | None = None, *, start_method: str = "spawn", name: str = "process") -> None:
        if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1):
            raise ValueError(f"ProcessExecutor(max_workers=...) needs an int >= 1 or None, got {max_workers!r}")
        self.max_workers = max_workers or os.cpu_count() or 1
        self.name = name
        self._mp = multiprocessing.get_context(start_method)
        self._capacity = _Capacity(self.max_workers)
        self._idle: list[_Child] = []
        self._lock = threading.Lock()

    async def run(self, processor: StepProcessor, context: "StepExecutionContext", input_data: dict[str, Any]) -> Any:
        fn, _ = processor_callable(processor)
        remote = RemoteStepContext.from_context(context, self.name)
        await self._capacity.acquire()
        try:
            return await self._run_in_child(fn, remote, input_data, context)
        finally:
            self._capacity.release()

    async def _run_in_child(self, fn: Callable, remote: RemoteStepContext, data: dict, context: Any) -> Any:
        loop = asyncio.get_running_loop()
        with self._lock:
            child = self._idle.pop() if self._idle else None
        if child is None or not child.proc.is_alive():
            if child is not None:
                child.kill()
            child = await loop.run_in_executor(None, _Child, self._mp)
        step = context.step_name
        try:
            child.conn.send((fn, remote, data))
        except Exception as exc:
            self._give_back(child)
            raise StepExecutionError(
                f"step {step!r} cannot run on executor {self.name!r}: its processor or input could not be "
                f"pickled ({type(exc).__name__}: {exc}); use a module-level function and picklable data, "
                "or run the step with executor='thread'",
                step_name=step,
            ) from exc
        reply: asyncio.Future = loop.create_future()

        def readable() -> None:
            try:
                while not reply.done() and child.conn.poll():
                    msg = child.conn.recv()
                    if msg[0] == "progress":
                        context.report_progress(msg[1], msg[2])
                    elif msg[0] == "log":
                        context.log(msg[1])
                    else:
                        reply.set_result(msg)
            except (EOFError, OSError):
                if not reply.done():
                    reply.set_result(("lost",))

        fd = child.conn.fileno()
        loop.add_reader(fd, readable)
        finished = False
        try:
            msg = await reply
            finished = msg[0] != "lost"
        finally:
            loop.remove_reader(fd)
            if finished:
                self._give_back(child)
            else:  # cancelled, timed out or dead: the child must not outlive the attempt
                await asyncio.shield(loop.run_in_executor(None, child.kill))
        return self._unpack(step, msg, child)

    def _unpack(self, step: str, msg: tuple, child: _Child) -> Any:
        kind = msg[0]
        if kind == "ok":
            return msg[1]
        if kind == "lost":
            raise WorkerLostError(
                f"step {step!r}: its process (pid {child.proc.pid}) died with exit code {child.proc.exitcode} "
                f"before returning a result (executor {self.name!r})",
                step_name=step,
            )
        if kind == "load-error":
            raise StepExecutionError(
                f"step {step!r}: the child process of executor {self.name!r} could not load the processor "
                f"({msg[1]}); define it in an importable module (not in a notebook cell), "
                "or run the step with executor='thread'",
                step_name=step,
                details={"traceback": msg[2]},
            )
        _, type_name, text, tb, payload = msg
        if payload is not None:
            exc = pickle.loads(payload)
            if isinstance(exc, Exception):
                raise exc
        raise StepExecutionError(
            f"step {step!r} raised {type_name} in its process: {text}",
            step_name=step,
            details={"error_type": type_name, "traceback": tb},
        )

    def _give_back(self, child: _Child) -> None:
        with self._lock:
            if len(self._idle) < self.max_workers:
                self._idle.append(child)
                return
        child.stop()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for child in idle:
            child.stop()


# ---------------------------------------------------------------------------
# the engine's table of executors

_BUILTIN: dict[str, Callable[[], StepExecutor]] = {
    "inprocess": InProcessExecutor,
    "thread": ThreadExecutor,
    "process": ProcessExecutor,
}


class ExecutorRegistry:
    """The engine's default executor and its named ones (built-ins are made on first use).

    ``default`` is ``None`` for the in-process executor: the engine's inline
    fast path.  ``get(name)`` returns ``None`` for ``"inprocess"`` too.
    """

    def __init__(self, default: Any = None) -> None:
        self._named: dict[str, StepExecutor] = {}
        self._lock = threading.Lock()
        self.default: StepExecutor | None = self._coerce(default, "executor")

    def _coerce(self, executor: Any, what: str) -> StepExecutor | None:
        if executor is None or isinstance(executor, InProcessExecutor):
            return None
        if isinstance(executor, str):
            return self.get(executor)
        if isinstance(executor, type):
            raise TypeError(f"{what} got the class {executor.__name__}; pass an instance: {executor.__name__}(...)")
        if not callable(getattr(executor, "run", None)) or not inspect.iscoroutinefunction(executor.run):
            raise TypeError(
                f"{what} needs a StepExecutor (an object with 'async def run(processor, context, input_data)') "
                f"or the name of one ({', '.join(repr(n) for n in self.names)}), got {type(executor).__name__}"
            )
        return executor

    @property
    def names(self) -> list[str]:
        return sorted({*_BUILTIN, *self._named})

    def register(self, name: str, executor: Any) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"an executor name must be a non-empty string, got {name!r}")
        if name == "inprocess":
            raise ValueError("the name 'inprocess' is reserved for the engine's own in-process executor; pick another")
        value = self._coerce(executor, f"register_executor({name!r}, ...)")
        with self._lock:
            self._named[name] = InProcessExecutor() if value is None else value

    def get(self, name: str, step: str | None = None) -> StepExecutor | None:
        """The executor called ``name`` (``None`` means in-process); raises :class:`UnknownExecutorError`."""
        executor = self._named.get(name)
        if executor is None:
            factory = _BUILTIN.get(name)
            if factory is None:
                who = f"step {step!r} asks for executor {name!r}" if step else f"executor {name!r}"
                raise UnknownExecutorError(
                    f"{who}, which is not registered (known: {', '.join(repr(n) for n in self.names)}); "
                    f"call engine.register_executor({name!r}, executor) first"
                )
            with self._lock:
                executor = self._named.setdefault(name, factory())
        return None if isinstance(executor, InProcessExecutor) else executor

    def check(self, steps: Any) -> None:
        """Raise :class:`UnknownExecutorError` if any step names an unknown executor."""
        for step in steps:
            if step.executor is not None:
                self.get(step.executor, step.name)

    def close(self) -> None:
        with self._lock:
            executors = [*self._named.values(), *([self.default] if self.default is not None else [])]
        for executor in dict.fromkeys(executors):
            executor.close()
