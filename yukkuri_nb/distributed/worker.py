"""The worker side of :class:`~yukkuri_nb.distributed.DaskExecutor`: one step attempt as one Dask task.

:func:`run_step_task` is what the executor submits.  It runs on a Dask worker,
in one of the worker's task threads, and:

* binds the step's :class:`~yukkuri_nb.core.executors.RemoteStepContext` to
  the worker: ``report_progress`` / ``log`` become events on the executor's
  topic (``Worker.log_event``; the client receives them through
  ``Client.subscribe_topic``), and ``is_cancelled`` reads the worker's own
  state of the task, which turns ``"cancelled"`` as soon as the scheduler
  forgets the key (``Client.cancel``, a timeout in the engine);
* announces itself first (a ``"start"`` event with the worker's address and
  pid), so the engine's history says where the step ran;
* runs a sync processor directly in the task thread, and an async one with
  ``asyncio.run`` in that same thread (not on the worker's event loop, which
  must stay free for heartbeats and data transfer), with a watcher that
  cancels the coroutine once the task was cancelled on the cluster.

A Dask worker cannot interrupt a task thread, so a cancelled step stops at its
next ``report_progress`` / ``checkpoint()`` / ``is_cancelled`` check (a sync
processor) or at its next ``await`` (an async one); work that never checks
runs to its end on the worker, and its result is dropped.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import Any, Callable

from distributed import get_worker

from ..core.executors import RemoteStepContext

__all__ = ["run_step_task"]

# Worker-side task states in which the scheduler no longer wants the result.
_GONE = frozenset({"cancelled", "released", "forgotten"})
# How often the watcher of an async processor looks at the task's state.
_WATCH_SECONDS = 0.1


def run_step_task(fn: Callable[..., Any], context: RemoteStepContext, input_data: dict[str, Any], topic: str) -> Any:
    """Run ``fn(context, input_data)`` on this Dask worker; return what it returned."""
    worker = get_worker()
    key = worker.get_current_task()

    def sink(kind: str, *payload: Any) -> None:
        worker.log_event(topic, {"key": key, "kind": kind, "payload": list(payload)})

    def is_cancelled() -> bool:
        # Read from the task thread while the worker's loop mutates the table:
        # one dict lookup and one attribute read, atomic under the GIL.
        task = worker.state.tasks.get(key)
        return task is None or task.state in _GONE

    context.bind(sink, is_cancelled)
    sink("start", worker.address, os.getpid())
    try:
        if inspect.iscoroutinefunction(fn):
            return asyncio.run(_watched(fn(context, input_data), is_cancelled))
        out = fn(context, input_data)
        if inspect.isawaitable(out):
            out = asyncio.run(_watched(out, is_cancelled))
        return out
    except StopIteration as exc:
        # Re-raised by future.result() in the engine's executor thread, a
        # StopIteration cannot be stored in an asyncio future: the step
        # would wait forever.
        raise RuntimeError(
            f"the processor of step {context.step_name!r} raised StopIteration; raise an ordinary exception to fail a step"
        ) from exc


async def _watched(awaitable: Any, is_cancelled: Callable[[], bool]) -> Any:
    """Await ``awaitable``; cancel it once the task was cancelled on the cluster."""
    task = asyncio.ensure_future(awaitable)
    while True:
        done, _ = await asyncio.wait({task}, timeout=_WATCH_SECONDS)
        if done:
            return task.result()
        if is_cancelled():
            task.cancel()
            try:
                return await task
            except asyncio.CancelledError:
                raise asyncio.CancelledError("the step's Dask task was cancelled") from None
