"""Step results: what a processor returns and what the engine records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .definitions import StepStatus

__all__ = ["StepResult", "StepAttempt"]


@dataclass(slots=True)
class StepAttempt:
    """One attempt of a step: when it ran and how it ended."""

    attempt: int
    started_at: float
    finished_at: float
    status: StepStatus
    error_message: str | None = None
    error_type: str | None = None

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "status": self.status.value,
            "error_message": self.error_message,
            "error_type": self.error_type,
        }


@dataclass(slots=True)
class StepResult:
    """The outcome of one step.

    Processors build one with :meth:`success` or :meth:`failure` (or return a
    plain dict, which the engine wraps with :meth:`success`).  The engine fills
    in the timing fields (``execution_time`` in seconds of the final attempt,
    ``started_at`` / ``completed_at`` wall-clock datetimes, ``attempts`` and the
    per-attempt ``attempt_history``).  The datetimes are the run's start on
    the wall clock plus the engine clock's seconds since, so they agree with
    ``execution_time`` even if the system clock is adjusted during a run.
    """

    step_name: str
    status: StepStatus
    output_data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    error_message: str | None = None
    error_details: dict[str, Any] = field(default_factory=dict)
    execution_time: float | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    attempts: int = 0
    attempt_history: list[StepAttempt] = field(default_factory=list)
    error_type: str | None = None

    @classmethod
    def success(
        cls,
        step_name: str,
        output_data: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> "StepResult":
        """A completed step with its outputs (passed to every descendant)."""
        return cls(step_name, StepStatus.COMPLETED, dict(output_data or {}), dict(metadata or {}))

    @classmethod
    def failure(
        cls,
        step_name: str,
        error_message: str,
        error_details: dict[str, Any] | None = None,
    ) -> "StepResult":
        """A failed step; ``error_message`` is shown to people, ``error_details`` kept for analysis."""
        return cls(
            step_name, StepStatus.FAILED, error_message=str(error_message), error_details=dict(error_details or {})
        )

    @property
    def is_successful(self) -> bool:
        """True when the step completed."""
        return self.status is StepStatus.COMPLETED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict (output values are passed through as they are)."""
        return {
            "step_name": self.step_name,
            "status": self.status.value,
            "output_data": self.output_data,
            "metadata": self.metadata,
            "error_message": self.error_message,
            "error_type": self.error_type,
            "error_details": self.error_details,
            "execution_time": self.execution_time,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "completed_at": self.completed_at.isoformat() if self.completed_at else None,
            "attempts": self.attempts,
            "attempt_history": [a.to_dict() for a in self.attempt_history],
        }


# ``attempt_history`` of a step that succeeded at its first attempt is kept
# as the plain tuple ``(attempt, started_at, finished_at)`` until someone
# reads it, then becomes the usual one-item list of StepAttempt.  A run of
# 100,000 steps thus leaves one GC-tracked object per step behind (the
# StepResult) instead of three, and the cyclic GC's full collections, whose
# cost grows with every live container, stay rare.  Readers never see the
# tuple: the property below wraps the dataclass slot.
_history_slot = StepResult.attempt_history  # the slot's member descriptor


def _get_attempt_history(self: StepResult) -> list[StepAttempt]:
    value = _history_slot.__get__(self, StepResult)
    if type(value) is tuple:
        value = [StepAttempt(value[0], value[1], value[2], StepStatus.COMPLETED)]
        _history_slot.__set__(self, value)
    return value


StepResult.attempt_history = property(  # type: ignore[assignment]
    _get_attempt_history, _history_slot.__set__, doc="Every attempt of the step, oldest first."
)


# ``started_at`` / ``completed_at`` as the engine writes them: the pair
# ``(wall-clock datetime of the run's start, seconds since then on the
# engine's monotonic clock)``, turned into the datetime when first read.
# Reading the wall clock twice per step cost ~1 us of a no-op step's ~14;
# the anchored times also agree with ``execution_time`` when the system
# clock is adjusted during a run.  Readers never see the pair.
def _lazy_time(slot: Any) -> property:
    def get(self: StepResult) -> datetime | None:
        value = slot.__get__(self, StepResult)
        if type(value) is tuple:
            value = value[0] + timedelta(seconds=value[1])
            slot.__set__(self, value)
        return value

    return property(get, slot.__set__)


_started_slot, _completed_slot = StepResult.started_at, StepResult.completed_at
StepResult.started_at = _lazy_time(_started_slot)  # type: ignore[assignment]
StepResult.completed_at = _lazy_time(_completed_slot)  # type: ignore[assignment]
set_started_lazily, set_completed_lazily = _started_slot.__set__, _completed_slot.__set__
