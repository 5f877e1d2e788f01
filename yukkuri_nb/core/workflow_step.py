"""Step-level public API (the seed's ``src.core.workflow_step``).

Definitions, priorities, statuses, results, processors, their context, the
dependency resolver and the resource manager.
"""

from .definitions import RetryPolicy, StepPriority, StepStatus, WorkflowStepDefinition
from .graph import DependencyResolver, WorkflowGraph
from .processors import ProcessProcessor, StepExecutionContext, StepProcessor
from .resources import PoolStatistics, ResourceManager
from .results import StepAttempt, StepResult

__all__ = [
    "WorkflowStepDefinition",
    "StepPriority",
    "StepStatus",
    "StepResult",
    "StepAttempt",
    "StepProcessor",
    "StepExecutionContext",
    "DependencyResolver",
    "ResourceManager",
    "RetryPolicy",
    "ProcessProcessor",
    "PoolStatistics",
    "WorkflowGraph",
]
