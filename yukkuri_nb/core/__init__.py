"""yukkuri_nb.core — the workflow engine (standard library + pydantic only).

The public faces are this package, :mod:`yukkuri_nb.core.workflow_step` and
:mod:`yukkuri_nb.core.workflow_exceptions`; the modules behind them are
private.
"""

from .clock import Clock, RealClock, VirtualClock
from .engine import WorkflowEngine
from .events import Event, EventKind
from .handle import RunHandle
from .plan import WorkflowExecutionPlan, simulate_schedule
from .state import WorkflowExecutionResult, WorkflowExecutionState
from .workflow_exceptions import (
    CycleError,
    DependencyError,
    MissingProcessorError,
    ProjectAlreadyRunningError,
    ResourceLimitError,
    StepExecutionError,
    TimeoutError,
    UnknownWorkflowError,
    WorkflowDefinitionError,
    WorkflowEngineError,
)
from .workflow_step import (
    DependencyResolver,
    PoolStatistics,
    ProcessProcessor,
    ResourceManager,
    RetryPolicy,
    StepExecutionContext,
    StepPriority,
    StepProcessor,
    StepResult,
    StepStatus,
    WorkflowStepDefinition,
)

__all__ = [
    "WorkflowEngine",
    "WorkflowExecutionState",
    "WorkflowExecutionResult",
    "WorkflowExecutionPlan",
    "RunHandle",
    "Event",
    "EventKind",
    "Clock",
    "RealClock",
    "VirtualClock",
    "simulate_schedule",
    "WorkflowStepDefinition",
    "StepPriority",
    "StepStatus",
    "StepResult",
    "StepProcessor",
    "StepExecutionContext",
    "DependencyResolver",
    "ResourceManager",
    "RetryPolicy",
    "ProcessProcessor",
    "PoolStatistics",
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
