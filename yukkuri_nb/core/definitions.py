"""Declarative step definitions: priority, status, retry policy, the step model.

These are pydantic models with ``extra="forbid"`` so a misspelt keyword is an
error that names the field.  Collection fields are stored as tuples /
frozensets: a definition is immutable once built and can be shared between
workflows and engines.
"""

from __future__ import annotations

import enum
import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["StepPriority", "StepStatus", "RetryPolicy", "WorkflowStepDefinition", "TERMINAL_STATUSES"]


class StepPriority(enum.IntEnum):
    """How urgently a ready step should start; higher values start first."""

    LOW = 1
    NORMAL = 2
    HIGH = 3
    CRITICAL = 4


class StepStatus(str, enum.Enum):
    """Status of a step, and of a whole run (the same words are used for both).

    ``PENDING`` waits for dependencies, ``READY`` waits for a slot or a pool,
    ``RETRYING`` waits out a retry delay.  The last four are terminal.
    """

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    RETRYING = "retrying"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED}
)


class RetryPolicy(BaseModel):
    """When and how often a failed step is attempted again.

    The default policy never retries.  Attempt ``n`` (1-based, the attempt that
    just failed) waits ``retry_delay * backoff_factor ** (n - 1)`` seconds when
    ``exponential_backoff`` is on (else ``retry_delay``), capped at
    ``max_delay``, then spread by ``± jitter`` (a fraction of the delay).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    max_retries: int = Field(0, ge=0, description="Attempts after the first one (0 = never retry).")
    retry_delay: float = Field(1.0, ge=0, description="Seconds to wait before the first retry.")
    exponential_backoff: bool = Field(True, description="Multiply the delay by backoff_factor per attempt.")
    backoff_factor: float = Field(2.0, ge=1.0, description="Growth of the delay per attempt.")
    max_delay: float = Field(300.0, ge=0, description="Upper bound of one delay, in seconds.")
    jitter: float = Field(0.0, ge=0, le=1, description="Random spread, a fraction of the delay (0..1).")
    retry_on: tuple[type[BaseException], ...] = Field(
        (Exception,), description="Exception types that are retried (timeouts are TimeoutError)."
    )
    retry_failed_results: bool = Field(
        True, description="Also retry when the processor returns StepResult.failure(...)."
    )

    @field_validator("retry_on", mode="before")
    @classmethod
    def _single_type(cls, value: Any) -> Any:
        if isinstance(value, type):
            return (value,)
        return value

    def should_retry(self, attempt: int, error: BaseException | None) -> bool:
        """Whether attempt number ``attempt`` (1-based) failing with ``error`` is retried.

        ``error`` is ``None`` for a returned failure result.
        """
        if attempt > self.max_retries:
            return False
        if error is None:
            return self.retry_failed_results
        return isinstance(error, self.retry_on)

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt ``attempt`` (1-based) failed."""
        delay = self.retry_delay
        if self.exponential_backoff:
            delay *= self.backoff_factor ** (attempt - 1)
        delay = min(delay, self.max_delay)
        if self.jitter and delay:
            spread = delay * self.jitter
            delay += (rng or random).uniform(-spread, spread)
        return max(0.0, delay)


NO_RETRY = RetryPolicy()


class WorkflowStepDefinition(BaseModel):
    """One step of a workflow: what it needs, how long it may run, how urgent it is.

    ``name`` identifies the step within its workflow; ``display_name`` is what
    people see (Japanese is the normal case) and defaults to ``name``.
    ``dependencies`` name steps of the same workflow that must complete first.
    ``required_resources`` name resource pools; the engine takes one unit of
    each, all at once, before the step starts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., min_length=1, description="Unique step id within the workflow.")
    display_name: str = Field("", description="Human-readable name (defaults to name).")
    dependencies: tuple[str, ...] = Field((), description="Names of steps that must complete first.")
    priority: StepPriority = Field(StepPriority.NORMAL, description="Higher priority starts first.")
    timeout_seconds: float | None = Field(
        None, gt=0, description="Seconds before the step is cancelled (None: the engine's default)."
    )
    required_resources: frozenset[str] = Field(
        frozenset(), description="Resource pools the step holds one unit of while it runs."
    )
    estimated_duration: float = Field(0.0, ge=0, description="Expected seconds, for planning and ETAs.")
    retry_policy: RetryPolicy = Field(NO_RETRY, description="Retry policy (default: never retry).")
    description: str = Field("", description="Free text.")
    executor: str | None = Field(None, description="Name of the executor to run on (None: the engine's).")

    @model_validator(mode="wrap")
    @classmethod
    def _name_the_step(cls, data: Any, handler: Any) -> "WorkflowStepDefinition":
        # pydantic's own messages name the field but not the step; a workflow
        # has many steps, so every message is re-issued with the step's name
        # and a fix.
        try:
            return handler(data)
        except ValidationError as exc:
            name = data.get("name") if isinstance(data, dict) else getattr(data, "name", None)
            raise ValueError(_describe_errors(name, exc)) from None

    @field_validator("name")
    @classmethod
    def _name_is_clean(cls, value: str) -> str:
        if value != value.strip() or any(ch in value for ch in "\r\n\t\0"):
            raise ValueError(f"step name {value!r} has surrounding whitespace or control characters; use e.g. 'tts_generation'")
        return value

    @field_validator("dependencies", mode="before")
    @classmethod
    def _deps_not_str(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"dependencies must be a list of step names, not the string {value!r}; write [{value!r}]")
        return value

    @field_validator("required_resources", mode="before")
    @classmethod
    def _pools_not_str(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"required_resources must be a set of pool names, not the string {value!r}; write {{{value!r}}}")
        return value

    @model_validator(mode="after")
    def _defaults_and_self_dependency(self) -> "WorkflowStepDefinition":
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name)
        if self.name in self.dependencies:
            raise ValueError(f"step {self.name!r} depends on itself; remove {self.name!r} from its dependencies")
        if len(set(self.dependencies)) != len(self.dependencies):
            dups = sorted({d for d in self.dependencies if self.dependencies.count(d) > 1})
            raise ValueError(f"step {self.name!r} lists dependencies {dups} more than once; list each once")
        return self


_FIXES = {
    "name": "give the step a non-empty name such as 'tts_generation'",
    "timeout_seconds": "use a positive number of seconds, or None for the engine's default_timeout_seconds",
    "estimated_duration": "use an estimate in seconds >= 0",
    "priority": "use StepPriority.LOW, NORMAL, HIGH or CRITICAL",
    "dependencies": "use a list of step names",
    "required_resources": "use a set of pool names such as {'llm_api'}",
    "retry_policy": "use RetryPolicy(max_retries=..., retry_delay=...)",
}


def _describe_errors(step_name: Any, exc: ValidationError) -> str:
    who = f"step {step_name!r}" if step_name else "step definition"
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "definition"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            fields = ", ".join(WorkflowStepDefinition.model_fields)
            parts.append(f"{who}: unknown field {loc!r}; known fields are {fields}")
            continue
        if "Input should" in msg or err["type"] in ("missing",):
            fix = _FIXES.get(str(err["loc"][0]) if err["loc"] else "", "")
            got = f" (got {err.get('input')!r})" if err["type"] != "missing" else ""
            parts.append(f"{who}: {loc}: {msg}{got}" + (f"; {fix}" if fix else ""))
        else:
            parts.append(msg if step_name and repr(step_name) in msg else f"{who}: {loc}: {msg}")
    return "; ".join(parts)
