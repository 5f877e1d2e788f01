"""Exceptions raised by the workflow engine.

Every error names the object it is about and says how to fix it.  The
hierarchy follows the seed design document:

* :class:`WorkflowEngineError` — base of everything the engine raises.
* :class:`StepExecutionError` — a step's processor failed (carried in results,
  also raised by :meth:`StepExecutionContext.get_resource` misuse is a
  :class:`ResourceLimitError`).
* :class:`DependencyError` — bad workflow graph (also a ``ValueError``):
  unknown dependency, duplicate name, and :class:`CycleError` which carries the
  cycle as a list, like :class:`graphlib.CycleError`.
* :class:`ResourceLimitError` — resource pools: unknown provider, bad capacity.
* :class:`TimeoutError` — a step ran over its limit.  It subclasses both
  :class:`WorkflowEngineError` and the builtin :class:`TimeoutError`, so
  ``except TimeoutError`` works with either name.
* :class:`WorkflowDefinitionError` — a step definition or workflow is invalid
  (also a ``ValueError``).
* :class:`UnknownWorkflowError` — no workflow registered under that name (also a
  ``LookupError``).
* :class:`MissingProcessorError` — steps without a processor; raised before any
  step runs.
* :class:`ProjectAlreadyRunningError` — the same ``project_id`` is running.
"""

from __future__ import annotations

import builtins
from typing import Sequence

__all__ = [
    "WorkflowEngineError",
    "StepExecutionError",
    "DependencyError",
    "CycleError",
    "ResourceLimitError",
    "TimeoutError",
    "WorkflowDefinitionError",
    "UnknownWorkflowError",
    "MissingProcessorError",
    "ProjectAlreadyRunningError",
]


class WorkflowEngineError(Exception):
    """Base class of every error the workflow engine raises."""


class StepExecutionError(WorkflowEngineError):
    """A step's processor failed.

    ``step_name`` names the step; ``details`` carries the processor's
    ``error_details`` when it returned :meth:`StepResult.failure`.
    """

    def __init__(self, message: str, *, step_name: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.step_name = step_name
        self.details = dict(details or {})


class DependencyError(WorkflowEngineError, ValueError):
    """The dependency graph of a workflow is invalid."""


class CycleError(DependencyError):
    """The dependencies form a cycle; ``cycle`` lists it, first node repeated last."""

    def __init__(self, message: str, cycle: Sequence[str]):
        super().__init__(message)
        self.cycle = list(cycle)


class ResourceLimitError(WorkflowEngineError):
    """A resource pool or provider problem (unknown provider, bad capacity, ...)."""


class TimeoutError(WorkflowEngineError, builtins.TimeoutError):  # noqa: A001 - seed name
    """A step ran longer than its timeout and was cancelled."""

    def __init__(self, message: str, *, step_name: str | None = None, timeout_seconds: float | None = None):
        super().__init__(message)
        self.step_name = step_name
        self.timeout_seconds = timeout_seconds


class WorkflowDefinitionError(WorkflowEngineError, ValueError):
    """A step definition or a workflow registration is invalid."""


class UnknownWorkflowError(WorkflowEngineError, LookupError):
    """No workflow is registered under the requested name."""

    def __str__(self) -> str:  # LookupError would repr() the message
        return str(self.args[0]) if self.args else ""


class MissingProcessorError(WorkflowEngineError):
    """Some steps of a workflow have no registered processor."""

    def __init__(self, message: str, missing: Sequence[str]):
        super().__init__(message)
        self.missing = list(missing)


class ProjectAlreadyRunningError(WorkflowEngineError):
    """A run with the same ``project_id`` is still going on."""
