"""``DaskExecutor``: run step attempts on a Dask cluster; the engine keeps orchestrating.

The engine still decides what runs when (pools, priorities, pause / resume /
cancel, retries, progress, history, dashboard); the executor only turns one
attempt of one step into one Dask task and waits for it:

* **Submit.**  ``client.submit(run_step_task, processor, context, input_data)``
  with a fresh key, the step's priority, ``retries=0`` (retries are the
  engine's, per the step's ``RetryPolicy``) and, for pools mapped with
  ``resources=``, Dask worker resources.  The processor travels with
  cloudpickle, so closures and notebook functions work; the input data and
  the result travel as data.  Large artifacts (audio, video) should stay on
  storage every worker and the engine can read, passed as paths.
* **Progress.**  ``report_progress`` / ``log`` on the worker become events on
  a topic of this client (``Worker.log_event`` → ``Client.subscribe_topic``),
  emitted by the engine like local progress, so the dashboard shows them.
  They travel in order with the task's completion, so every report made
  before the processor returned is in the run's history when the step ends.
* **Cancel and timeout.**  When the engine cancels the step's task, the
  executor cancels the Dask future (``Client.cancel``) before re-raising; the
  worker then sees the task as cancelled (see :mod:`.worker` for how far that
  stops running code).
* **Worker lost.**  The scheduler announces a removed worker with the keys it
  was processing (topic ``"all"``).  A step whose worker left fails with
  :class:`~yukkuri_nb.core.executors.WorkerLostError` at once (its future is
  cancelled, so Dask does not silently run it again) and the engine retries
  it per the step's policy.  ``KilledWorker`` and a future cancelled by
  someone else (``client.restart()``) become ``WorkerLostError`` too.

Pass a synchronous ``distributed.Client`` (the default kind); the executor
calls it from the engine's loop and from worker threads.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
import weakref
from typing import TYPE_CHECKING, Any, Mapping

from ..core.executors import RemoteStepContext, StepExecutor, WorkerLostError, processor_callable
from ..core.workflow_exceptions import StepExecutionError

try:
    from distributed import Client
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker
except ImportError as exc:  # pragma: no cover - exercised by the layering test
    raise ImportError(
        f"yukkuri_nb.distributed needs Dask distributed ({exc}); install it with: pip install \"yukkuri_nb[dask]\""
    ) from exc

from .worker import run_step_task

if TYPE_CHECKING:  # pragma: no cover
    from ..core.processors import StepExecutionContext, StepProcessor

__all__ = ["DaskExecutor"]


class _Watch:
    """One submitted attempt: where its engine context is and how it ended."""

    __slots__ = ("context", "loop", "outcome", "worker", "pid")

    def __init__(self, context: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.context = context
        self.loop = loop
        self.outcome: asyncio.Future = loop.create_future()
        self.worker: str | None = None
        self.pid: int | None = None

    def finish(self, kind: str, detail: Any = None) -> None:
        """Record the first outcome (``"done"`` or ``"lost"``); callable from any thread."""

        def settle() -> None:
            if not self.outcome.done():
                self.outcome.set_result((kind, detail))

        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(settle)


class _Hub:
    """The event subscriptions of one client, shared by every executor that uses it.

    ``Client.subscribe_topic`` keeps one handler per topic, so there is one hub
    per client; it chains to a handler of ``"all"`` that was there before it
    and puts that one back when it stops listening.  Handlers run on the
    client's event loop thread.
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self.topic = f"yukkuri_nb-steps-{client.id}"
        self._steps: dict[str, _Watch] = {}
        self._lock = threading.Lock()
        self._previous_all: Any = None
        self._listening = False
        client.subscribe_topic(self.topic, self._on_step_event)

    def watch(self, key: str, context: Any, loop: asyncio.AbstractEventLoop) -> _Watch:
        """Route the events of ``key`` to ``context``; call before submitting ``key``."""
        watch = _Watch(context, loop)
        with self._lock:
            self._steps[key] = watch
            if not self._listening:
                # Subscribed only while steps run: the scheduler sends "all"
                # events to a client until it unsubscribes, and complains
                # (CRITICAL log) when that client has closed.  The message
                # goes out before the submit, in order, so no removal of the
                # step's worker can be missed.
                previous = getattr(self.client, "_event_handlers", {}).get("all")
                # unsubscribe_topic leaves the handler in the client's table.
                self._previous_all = None if previous == self._on_cluster_event else previous
                self.client.subscribe_topic("all", self._on_cluster_event)
                self._listening = True
        return watch

    def forget(self, key: str) -> None:
        with self._lock:
            self._steps.pop(key, None)
            if self._listening and not self._steps:
                self._listening = False
                try:
                    if self._previous_all is not None:
                        self.client.subscribe_topic("all", self._previous_all)
                    else:
                        self.client.unsubscribe_topic("all")
                except Exception:  # the client closed first: nothing to unsubscribe from
                    pass

    def _on_step_event(self, event: tuple[float, Any]) -> None:
        msg = event[1]
        watch = self._steps.get(msg.get("key")) if isinstance(msg, dict) else None
        if watch is None:  # a late event of an attempt that already ended
            return
        kind, payload = msg.get("kind"), msg.get("payload") or []
        if kind == "progress":
            watch.context.report_progress(payload[0], payload[1])
        elif kind == "log":
            watch.context.log(payload[0])
        elif kind == "start":
            watch.worker, watch.pid = payload[0], payload[1]
            watch.context.log(f"running on Dask worker {watch.worker} (pid {watch.pid})")

    def _on_cluster_event(self, event: tuple[float, Any]) -> None:
        msg = event[1]
        if isinstance(msg, dict) and msg.get("action") == "remove-worker":
            with self._lock:
                lost = [(key, self._steps[key]) for key in msg.get("processing-tasks") or () if key in self._steps]
            for _, watch in lost:
                watch.finish("lost", msg.get("worker"))
        if self._previous_all is not None:
            self._previous_all(event)


_HUBS: "weakref.WeakKeyDictionary[Client, _Hub]" = weakref.WeakKeyDictionary()
_HUBS_LOCK = threading.Lock()


def _hub(client: Client) -> _Hub:
    with _HUBS_LOCK:
        hub = _HUBS.get(client)
        if hub is None:
            hub = _HUBS[client] = _Hub(client)
        return hub


def _normalise_resources(resources: Mapping[str, Any] | None) -> dict[str, dict[str, float]]:
    """``{pool: "NAME"}`` or ``{pool: {"NAME": units, ...}}`` -> ``{pool: {"NAME": units}}``."""
    out: dict[str, dict[str, float]] = {}
    for pool, spec in (resources or {}).items():
        if isinstance(spec, str) and spec:
            out[pool] = {spec: 1.0}
        elif isinstance(spec, Mapping) and spec and all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
            for k, v in spec.items()
        ):
            out[pool] = {k: float(v) for k, v in spec.items()}
        else:
            raise ValueError(
                f"DaskExecutor(resources=...): pool {pool!r} maps to {spec!r}; map it to a Dask worker "
                f"resource name such as {{{pool!r}: 'ENCODER'}} or to units {{{pool!r}: {{'ENCODER': 1}}}}"
            )
    return out


class DaskExecutor(StepExecutor):
    """Runs steps on the Dask cluster behind ``client``.

    Parameters:
        client: a synchronous ``distributed.Client`` (``Client(LocalCluster())``
            or ``Client("tcp://scheduler:8786")``).
        resources: maps engine pools to Dask worker resources, e.g.
            ``{"video_encoder": "ENCODER"}`` (one unit) or
            ``{"video_encoder": {"ENCODER": 1, "GPU": 1}}``.  A step that
            holds the pool runs only on workers started with that resource
            (``dask worker --resources "ENCODER=1"``).  Unmapped pools stay
            engine-side limits.
        name: shown in errors and in the remote context.

    Raises (in the step's result): the processor's own exception;
    :class:`~yukkuri_nb.core.executors.WorkerLostError` when the worker
    running the step left the cluster; :class:`StepExecutionError` when the
    step cannot be sent (unpicklable input) or needs a resource no worker has.
    """

    def __init__(self, client: Client, *, resources: Mapping[str, Any] | None = None, name: str = "dask") -> None:
        if not isinstance(client, Client):
            raise TypeError(
                f"DaskExecutor(client) needs a distributed.Client, got {type(client).__name__}; "
                "e.g. DaskExecutor(Client(LocalCluster())) or DaskExecutor(Client('tcp://scheduler:8786'))"
            )
        self.client = client
        self.resources = _normalise_resources(resources)
        self.name = name

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard of the cluster (``client.dashboard_link``)."""
        return getattr(self.client, "dashboard_link", None)

    async def run(self, processor: "StepProcessor", context: "StepExecutionContext", input_data: dict[str, Any]) -> Any:
        fn, _ = processor_callable(processor)
        step = context.step_name
        definition = context.definition
        loop = asyncio.get_running_loop()
        wanted = self._resources_for(definition)
        if wanted:
            await loop.run_in_executor(None, self._check_resources, step, wanted)
        hub = _hub(self.client)
        key = f"yukkuri_nb-{step}-{uuid.uuid4().hex}"
        watch = hub.watch(key, context, loop)
        future = None
        try:
            try:
                future = self.client.submit(
                    run_step_task,
                    fn,
                    RemoteStepContext.from_context(context, self.name),
                    input_data,
                    hub.topic,
                    key=key,
                    pure=False,
                    retries=0,
                    priority=int(getattr(definition, "priority", 0)),
                    resources=wanted or None,
                )
            except Exception as exc:
                raise StepExecutionError(
                    f"step {step!r} cannot be sent to Dask (executor {self.name!r}): its processor or input data "
                    f"could not be pickled ({type(exc).__name__}: {exc}); keep locks, open files and clients out "
                    "of the processor (or give its objects __getstate__), pass large artifacts as file paths on "
                    "shared storage, or run the step with executor='inprocess'",
                    step_name=step,
                ) from exc
            future.add_done_callback(lambda _: watch.finish("done"))
            kind, worker = await watch.outcome
            if kind == "lost":
                await self._cancel(future, "worker lost")
                where = f"Dask worker {worker}" + (f" (pid {watch.pid})" if watch.pid else "")
                raise WorkerLostError(
                    f"step {step!r}: {where} left the cluster while running it (executor {self.name!r}); "
                    "give the step a RetryPolicy(max_retries=...) to run it again on another worker",
                    step_name=step,
                )
            try:
                return await loop.run_in_executor(None, future.result)
            except KilledWorker as exc:
                raise WorkerLostError(
                    f"step {step!r}: Dask gave up on it after its workers died ({exc}) (executor {self.name!r}); "
                    "give the step a RetryPolicy(max_retries=...) to run it again",
                    step_name=step,
                ) from exc
            except FutureCancelledError as exc:
                # Not our cancel (that arrives as the task's own cancellation):
                # the cluster dropped it, e.g. client.restart().  A failure,
                # not a cancel, or the engine would treat the run as cancelled.
                raise WorkerLostError(
                    f"step {step!r}: its Dask task was cancelled on the cluster ({exc.reason}) "
                    f"(executor {self.name!r}); give the step a RetryPolicy(max_retries=...) to run it again",
                    step_name=step,
                ) from None
        except asyncio.CancelledError:
            if future is not None:
                await self._cancel(future, "cancelled by the yukkuri_nb engine")
            raise
        finally:
            hub.forget(key)

    async def _cancel(self, future: Any, reason: str) -> None:
        """Cancel ``future`` on the cluster, even if the awaiting task is cancelled again meanwhile."""

        def cancel() -> None:
            try:
                future.cancel(reason=reason)
            except Exception:  # the client is closing: nothing is left to cancel
                pass

        await asyncio.shield(asyncio.get_running_loop().run_in_executor(None, cancel))

    def _resources_for(self, definition: Any) -> dict[str, float]:
        wanted: dict[str, float] = {}
        for pool in sorted(getattr(definition, "required_resources", ()) or ()):
            for name, units in self.resources.get(pool, {}).items():
                wanted[name] = wanted.get(name, 0.0) + units
        return wanted

    def _check_resources(self, step: str, wanted: dict[str, float]) -> None:
        # Dask would keep such a task waiting until the step's timeout; say why
        # at once instead.  With no workers at all (an adaptive cluster scaling
        # up) the task waits, as Dask's own tasks do.
        workers = self.client.scheduler_info().get("workers", {})
        if not workers:
            return
        for info in workers.values():
            have = info.get("resources") or {}
            if all(have.get(name, 0) >= units for name, units in wanted.items()):
                return
        raise StepExecutionError(
            f"step {step!r} needs Dask worker resources {wanted} (executor {self.name!r}, resources="
            f"{self.resources}), which no worker of the cluster has; start workers with e.g. "
            f"dask worker --resources \"{' '.join(f'{k}={v:g}' for k, v in wanted.items())}\" "
            "or LocalCluster(resources={...}), or drop the pool from DaskExecutor(resources=...)",
            step_name=step,
        )

    def close(self) -> None:
        """Nothing to release: the client belongs to the caller (close it yourself)."""

    def __repr__(self) -> str:
        scheduler = getattr(getattr(self.client, "scheduler", None), "address", None)
        return f"<DaskExecutor {self.name!r} scheduler={scheduler!r}>"
