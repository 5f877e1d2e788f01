"""The event stream: every state change of every run is one immutable event.

The engine emits; everything else subscribes.  The live
:class:`~yukkuri_nb.core.state.WorkflowExecutionState`, the progress callback,
the history recorder, the dashboard and the run store all consume the same
events, so they can never disagree about what happened.

Dispatch is re-entrant-safe: an observer that causes another event (a progress
callback calling ``pause_workflow``) does not recurse; the new event is queued
and delivered after the current one has reached every observer, so every
observer sees events in ``seq`` order.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Event", "EventKind", "EventBus", "Observer"]

log = logging.getLogger("yukkuri_nb.engine")


class EventKind(str, enum.Enum):
    """What happened.  Values are stable strings (stored in run stores and frames)."""

    RUN_STARTED = "run_started"
    RUN_FINISHED = "run_finished"
    STEP_QUEUED = "step_queued"
    STEP_STARTED = "step_started"
    STEP_PROGRESS = "step_progress"
    STEP_RETRYING = "step_retrying"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_SKIPPED = "step_skipped"
    STEP_CANCELLED = "step_cancelled"
    PAUSED = "paused"
    RESUMED = "resumed"
    CANCEL_REQUESTED = "cancel_requested"
    LIMITS_CHANGED = "limits_changed"
    LOG = "log"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Event:
    """One state change.

    ``seq`` increases by one per event of an engine; ``time`` is the engine
    clock's monotonic seconds.  ``step`` is ``None`` for run-level events.
    ``project_id`` is ``None`` for engine-level events (``limits_changed``).
    """

    seq: int
    time: float
    kind: EventKind
    project_id: str | None
    workflow_name: str | None
    step: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind.value,
            "project_id": self.project_id,
            "workflow_name": self.workflow_name,
            "step": self.step,
            "data": self.data,
        }


_SETTERS = tuple(Event.__dict__[name].__set__ for name in Event.__dataclass_fields__)


# The data of the three events every step has, as the engine keeps them: a
# tuple of values in this order instead of a dict (a run's history holds
# three per step; a tuple of numbers is ~60 bytes smaller than the dict, and
# untracked by the GC).  new_event makes the dict an Event carries.
COMPACT_FIELDS: dict[EventKind, tuple[str, ...]] = {
    EventKind.STEP_QUEUED: (),
    EventKind.STEP_STARTED: ("attempt", "slot", "pools"),
    EventKind.STEP_COMPLETED: ("attempt", "duration"),
}


def expand_data(kind: EventKind, data: dict[str, Any] | tuple) -> dict[str, Any]:
    """The dict of an event's ``data`` given either way (see ``COMPACT_FIELDS``)."""
    if type(data) is tuple:
        return dict(zip(COMPACT_FIELDS[kind], data))
    return data  # type: ignore[return-value]


def new_event(
    seq: int, time: float, kind: EventKind, project_id: str | None, workflow_name: str | None,
    step: str | None, data: dict[str, Any] | tuple,
) -> Event:
    """``Event(...)`` for the engine's hot path (all fields positional).

    The frozen dataclass ``__init__`` pays an ``object.__setattr__`` call per
    field; writing the slots through their descriptors builds the same
    immutable object in half the time.  ``data`` may be compact (a tuple,
    see ``COMPACT_FIELDS``); the Event gets a dict.
    """
    if type(data) is tuple:
        data = expand_data(kind, data)
    event = _new_object(Event)
    s_seq, s_time, s_kind, s_project, s_workflow, s_step, s_data = _SETTERS
    s_seq(event, seq)
    s_time(event, time)
    s_kind(event, kind)
    s_project(event, project_id)
    s_workflow(event, workflow_name)
    s_step(event, step)
    s_data(event, data)
    return event


_new_object = object.__new__

Observer = Callable[[Event], Any]


class EventBus:
    """Delivers events to observers in order; observer errors are logged, counted, never raised."""

    __slots__ = ("_observers", "_queue", "_dispatching", "errors", "active")

    def __init__(self) -> None:
        self._observers: list[Observer] = []
        self._queue: deque[Event] = deque()
        self._dispatching = False
        self.errors = 0
        #: True while anyone is subscribed: with nobody listening the engine
        #: does not build Event objects at all (state and history take the
        #: fields directly).
        self.active = False

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(event)`` for every later event; returns an unsubscribe function."""
        self._observers = [*self._observers, observer]
        self.active = True

        def unsubscribe() -> None:
            self._observers = [o for o in self._observers if o is not observer]
            self.active = bool(self._observers)

        return unsubscribe

    def emit(self, event: Event) -> None:
        if not self._observers:
            return  # nobody subscribed (the run's own state and history are fed directly)
        self._queue.append(event)
        if self._dispatching:
            return
        self._dispatching = True
        try:
            queue = self._queue
            while queue:
                ev = queue.popleft()
                for observer in self._observers:
                    try:
                        observer(ev)
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except BaseException:  # an observer must never break the run
                        self.errors += 1
                        log.exception("event observer %r failed on %s", observer, ev.kind.value)
        finally:
            self._dispatching = False
