"""Running one step and recording how it ended: the engine's step lifecycle.

:class:`StepLifecycle` is a part of :class:`~yukkuri_nb.core.engine.WorkflowEngine`
(a mixin: the engine's state, one object).  For each started step:

1. ``_start`` creates the step's task (``run.tasks[i]``), in a copy of
   the run's context (``run.context``, the one ``execute_workflow`` was
   called in), and emits ``step_started``.
2. ``_run_step`` calls the processor (directly if it is an async function,
   in a thread if it is sync, or through the step's executor) under the
   step's deadline (:mod:`~yukkuri_nb.core.deadlines`), and turns whatever
   happened into a result or an error: a processor can never take the
   engine down.
3. Its slot and pool units are given back at once (``finally``), then
   ``_complete`` queues the children whose dependencies are now all
   complete, or ``_fail_attempt`` schedules a retry (``run.retry_handles``)
   or marks the step failed and its descendants skipped.
4. ``_finish_if_done`` ends the run once every step is terminal.

Continuing tasks: when a step ends and no other step is running, the next
decision is taken at once (see ``_run_step``'s end) and, if it starts
exactly one step, that step runs in the task that is already there instead
of a new one: a chain of steps costs one task, not one task and one loop
iteration per step (C, the 2,000-step chain: ~25% less time per step).  The
task goes on only if nothing can tell the difference:

* its context equals the next step's run's context (a step that set a
  ``ContextVar`` hands on a fresh task, so every step sees a copy of its
  run's context and nothing a previous step set);
* no cancellation is pending on it (``task.cancelling() == 0``): a deadline
  or run cancellation is always delivered inside the step it was meant for,
  and ``cancel_workflow``'s deferred ``task.cancel`` checks that the task
  still runs that step (``engine._cancel_step_task``);
* it has run fewer than ``CONTINUE_STREAK`` steps: steps that never await
  would otherwise keep the loop from running anything else.

``asyncio.current_task()`` inside a step may thus be a task that ran the
step before it; it is never shared by two steps at once.

Attempts: ``run.attempts[i]`` counts them; ``run.attempt_log[i]`` keeps the
StepAttempt records of a step that failed at least once (a first-try
success keeps only a compact tuple, see :mod:`~yukkuri_nb.core.results`).
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .deadlines import StepDeadline
from .definitions import StepStatus
from .events import EventKind
from .executors import call_sync
from .processors import FunctionProcessor, StepExecutionContext
from .results import StepAttempt, StepResult, set_completed_lazily, set_started_lazily
from .state import WorkflowExecutionState
from .workflow_exceptions import StepExecutionError, WorkflowEngineError
from .workflow_exceptions import TimeoutError as StepTimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from .run import _Run

__all__ = ["StepLifecycle"]

# Bound once: an Enum class attribute costs ~50 ns a read, and these are
# read for every step.
_PENDING, _COMPLETED = StepStatus.PENDING, StepStatus.COMPLETED
_STARTED, _COMPLETED_EVENT = EventKind.STEP_STARTED, EventKind.STEP_COMPLETED
_state_started, _state_completed = WorkflowExecutionState._started, WorkflowExecutionState._completed

# How many steps one task runs back to back before the next one gets its own
# task: steps that end without awaiting would otherwise keep the loop from
# running anything else.
CONTINUE_STREAK = 16


class StepLifecycle:
    """Starting, running and finishing steps (see the module docstring)."""

    def _start(self, run: _Run, i: int, slot: int) -> None:
        """Start step ``i`` of ``run`` in a task of its own, in a copy of the run's context."""
        # _begin inlined (this runs for every step; the call costs ~3% on A).
        run.tasks[i] = run.loop.create_task(self._run_step(run, i, slot, run.attempts[i] + 1), context=run.context.copy())
        run.attempts[i] += 1
        self._emit(run, _STARTED, run.graph.steps[i].name, (run.attempts[i], slot, run.pool_lists[i]), _state_started)

    def _begin(self, run: _Run, i: int, slot: int, task: asyncio.Task) -> int:
        """Count the attempt and emit ``step_started``; ``task`` is the one that will run it."""
        # Registered first: an observer of step_started may cancel the run,
        # and cancel_workflow cancels the tasks it finds in run.tasks.
        run.tasks[i] = task
        run.attempts[i] += 1
        attempt = run.attempts[i]
        self._emit(run, _STARTED, run.graph.steps[i].name, (attempt, slot, run.pool_lists[i]), _state_started)
        return attempt

    async def _run_step(self, run: _Run, i: int, slot: int, attempt: int) -> None:
        streak = 0
        this_task: asyncio.Task = asyncio.current_task()  # type: ignore[assignment]
        while True:
            step = run.graph.steps[i]
            processor = self._processors.get(step.name)
            timeout = step.timeout_seconds or self.default_timeout_seconds
            t0 = self.clock.now()
            raw: Any = None
            error: BaseException | None = None
            cancelled = False
            scope: StepDeadline | None = None
            try:
                if processor is None:
                    raise StepExecutionError(
                        f"step {step.name!r} has no processor (it was unregistered during the run); "
                        f"register one with engine.register_step_processor({step.name!r}, ...)",
                        step_name=step.name,
                    )
                context = StepExecutionContext(run, step, attempt)
                data = run.input_data(i)
                with StepDeadline(self._deadlines, run.loop, timeout, this_task) as scope:
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
                    if raw is not None and (
                        (asyncio.iscoroutine(raw) and not isinstance(raw, types.GeneratorType)) or isinstance(raw, asyncio.Future)
                    ):
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
                if run.cancelled or (this_task is not None and this_task.cancelling()):
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
                    self._releasing = True
                    try:
                        self.resource_manager.release_all(run.graph.pools[i])
                    finally:
                        self._releasing = False
            t1 = self.clock.now()
            if cancelled:
                self._record_attempt(run, i, attempt, t0, t1, StepStatus.CANCELLED, None)
                self._finish_step_cancelled(run, i)
            else:
                result = error is None and self._coerce(step.name, raw)
                if isinstance(result, StepExecutionError):
                    error, result = result, None
                if result and result.status is _COMPLETED:
                    if i in run.attempt_log:
                        self._record_attempt(run, i, attempt, t0, t1, _COMPLETED, None)
                        result.attempt_history = run.attempt_log[i]
                    else:  # first-try success: the compact record (see results.py)
                        result.attempt_history = (attempt, t0, t1)
                    result.execution_time = t1 - t0
                    _stamp(run, result, t0, t1)
                    self._complete(run, i, result)
                else:
                    self._fail_attempt(run, i, attempt, t0, t1, error, result or None)
            if self._running or self._loop is not run.loop:
                self._request_dispatch()
                return
            # No other step is running, so no other step can end in this
            # loop iteration: deciding now picks what the deferred dispatch
            # would, one loop iteration sooner (a chain's next step at once),
            # and this task may go on with it (module docstring).
            streak += 1
            nxt = self._dispatch(this_task if streak < CONTINUE_STREAK and not this_task.cancelling() else None)
            if not self._running:
                self._deadlines.drop_idle()
            if nxt is None:
                return
            run, i, slot, attempt = nxt

    def _coerce(self, step_name: str, raw: Any) -> StepResult | StepExecutionError:
        if raw is None:
            return StepResult(step_name, _COMPLETED)  # = StepResult.success(step_name, {})
        if isinstance(raw, StepResult):
            return _check_result(step_name, raw)
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
        run.status[i] = _COMPLETED
        run.remaining -= 1
        self._emit(run, _COMPLETED_EVENT, name, (run.attempts[i], result.execution_time), _state_completed)
        if not run.cancelled:
            missing = run.missing
            for c in graph.children[i]:
                missing[c] -= 1
                if missing[c] == 0 and run.status[c] is _PENDING:
                    self._queue(run, c)
        self._finish_if_done(run)

    def _fail_attempt(
        self, run: _Run, i: int, attempt: int, t0: float, t1: float,
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
        _stamp(run, final, t0, t1)
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


def _stamp(run: _Run, result: StepResult, t0: float, t1: float) -> None:
    """Set ``started_at`` / ``completed_at`` from clock times t0, t1 (made datetimes when read; see results.py)."""
    set_started_lazily(result, (run.wall0, t0 - run.t_start))
    set_completed_lazily(result, (run.wall0, t1 - run.t_start))


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
