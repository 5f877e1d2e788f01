"""Step processors and the context they run in.

A processor is either a :class:`StepProcessor` (override ``execute``) or a
plain callable ``fn(context, input_data)``; either may be sync or async and
may return a :class:`StepResult` or a dict of outputs (``None`` counts as an
empty dict).  Sync code runs in a worker thread so it never blocks the event
loop.

A thread cannot be killed: when a sync step times out or is cancelled the
engine stops waiting for it and frees its slot and pools at once, but the
thread runs to its end in the background (its result is dropped).  For
CPU-bound steps that must really stop, wrap a picklable function in
:class:`ProcessProcessor`: it runs in a child process that is killed on
timeout or cancel.
"""

from __future__ import annotations

import abc
import asyncio
import inspect
import multiprocessing
import traceback
from typing import TYPE_CHECKING, Any, Callable, Mapping

from .results import StepResult
from .workflow_exceptions import StepExecutionError

if TYPE_CHECKING:  # pragma: no cover
    from .definitions import WorkflowStepDefinition

__all__ = ["StepProcessor", "StepExecutionContext", "FunctionProcessor", "ProcessProcessor", "as_processor"]


class StepProcessor(abc.ABC):
    """Base class of step processors (the seed's interface).

    Override :meth:`execute`.  It receives the step's context and its input:
    the run's ``initial_input`` merged with the outputs of every ancestor step.
    """

    @abc.abstractmethod
    async def execute(self, context: "StepExecutionContext", input_data: dict[str, Any]) -> StepResult:
        """Do the step's work and return its result."""

    #: Set by the engine: whether ``execute`` must run in a worker thread.
    runs_in_thread: bool = False


class FunctionProcessor(StepProcessor):
    """Adapts a plain function ``fn(context, input_data)`` (sync or async)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise TypeError(f"a step processor must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)
        )
        self.runs_in_thread = not self.is_async

    async def execute(self, context: "StepExecutionContext", input_data: dict[str, Any]) -> Any:
        return await self.fn(context, input_data)

    def execute_sync(self, context: "StepExecutionContext", input_data: dict[str, Any]) -> Any:
        return self.fn(context, input_data)

    def __repr__(self) -> str:
        return f"FunctionProcessor({getattr(self.fn, '__qualname__', self.fn)!r})"


def as_processor(step_name: str, processor: Any) -> StepProcessor:
    """Normalise what ``register_step_processor`` accepts into a :class:`StepProcessor`."""
    if isinstance(processor, StepProcessor):
        if not inspect.iscoroutinefunction(processor.execute):
            processor.runs_in_thread = True
        return processor
    if isinstance(processor, type) and issubclass(processor, StepProcessor):
        raise TypeError(
            f"register_step_processor({step_name!r}, ...) got the class {processor.__name__}; "
            f"pass an instance: {processor.__name__}()"
        )
    if callable(processor):
        return FunctionProcessor(processor)
    raise TypeError(
        f"register_step_processor({step_name!r}, ...) needs a StepProcessor or a function "
        f"(context, input_data), got {type(processor).__name__}"
    )


class StepExecutionContext:
    """What a running step can see and do.

    Attributes: ``step_name``, ``display_name``, ``project_id``,
    ``workflow_name``, ``attempt`` (1-based), ``definition``, ``initial_input``
    and ``outputs`` (step name -> output dict of every step of this run that
    has completed, in particular all of this step's ancestors).
    """

    __slots__ = ("step_name", "display_name", "project_id", "workflow_name", "attempt", "definition", "_run")

    def __init__(self, run: Any, definition: "WorkflowStepDefinition", attempt: int) -> None:
        self._run = run
        self.definition = definition
        self.step_name = definition.name
        self.display_name = definition.display_name
        self.project_id: str = run.project_id
        self.workflow_name: str = run.workflow_name
        self.attempt = attempt

    @property
    def initial_input(self) -> Mapping[str, Any]:
        return self._run.initial_input

    @property
    def outputs(self) -> Mapping[str, dict[str, Any]]:
        return self._run.outputs_view

    @property
    def dependency_outputs(self) -> dict[str, dict[str, Any]]:
        """Outputs of this step's direct dependencies, by step name."""
        outputs = self._run.outputs_view
        return {d: outputs.get(d, {}) for d in self.definition.dependencies}

    def get_resource(self, name: str) -> Any:
        """The provider registered as ``name`` (raises ``ResourceLimitError`` listing known names)."""
        return self._run.resources.get_resource(name)

    def report_progress(self, fraction: float, message: str = "") -> None:
        """Report sub-progress of this step (0..1).  Safe to call from any thread."""
        self._run.post_progress(self.step_name, fraction, message)

    def log(self, message: str) -> None:
        """Record a log line in the run's history (safe from any thread)."""
        self._run.post_log(self.step_name, message)

    @property
    def is_paused(self) -> bool:
        return self._run.paused

    @property
    def is_cancelled(self) -> bool:
        return self._run.cancelled

    async def checkpoint(self) -> None:
        """Wait here while the run is paused; raise ``CancelledError`` if it was cancelled."""
        await self._run.checkpoint()

    def __repr__(self) -> str:
        return f"StepExecutionContext(step={self.step_name!r}, project={self.project_id!r}, attempt={self.attempt})"


def _process_entry(conn: Any, fn: Callable[[dict], Any], input_data: dict) -> None:
    try:
        result = fn(input_data)
        conn.send(("ok", result))
    except BaseException as exc:  # report everything, the parent decides
        conn.send(("error", type(exc).__name__, str(exc), traceback.format_exc()))
    finally:
        conn.close()


class ProcessProcessor(StepProcessor):
    """Run a picklable ``fn(input_data) -> dict | StepResult`` in a child process.

    The child is killed when the step times out or the run is cancelled, so
    CPU-bound work really stops.  ``fn`` must be importable by name (a
    module-level function) because children are started with ``spawn``.
    """

    def __init__(self, fn: Callable[[dict], Any], *, start_method: str = "spawn") -> None:
        self.fn = fn
        self._ctx = multiprocessing.get_context(start_method)

    async def execute(self, context: StepExecutionContext, input_data: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        parent, child = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(target=_process_entry, args=(child, self.fn, input_data), daemon=True)
        proc.start()
        child.close()
        ready = loop.create_future()
        loop.add_reader(parent.fileno(), lambda: ready.done() or ready.set_result(None))
        try:
            await ready
            try:
                message = parent.recv()
            except EOFError:
                proc.join(timeout=5)
                raise StepExecutionError(
                    f"step {context.step_name!r}: its process died with exit code {proc.exitcode} "
                    "before returning a result",
                    step_name=context.step_name,
                ) from None
        finally:
            loop.remove_reader(parent.fileno())
            parent.close()
            if proc.is_alive():
                proc.kill()
            await asyncio.shield(loop.run_in_executor(None, proc.join, 5))
        if message[0] == "ok":
            return message[1]
        _, type_name, text, tb = message
        raise StepExecutionError(
            f"step {context.step_name!r} raised {type_name} in its process: {text}",
            step_name=context.step_name,
            details={"error_type": type_name, "traceback": tb},
        )

    def __repr__(self) -> str:
        return f"ProcessProcessor({getattr(self.fn, '__qualname__', self.fn)!r})"
