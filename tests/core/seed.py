"""Helpers to run the code blocks of the seed design document as they are.

The document (``docs/seed/workflow_engine.ja.md``, a copy of the original) is
read at test time; each ```python block has only its import prefix
``src.core`` replaced by ``yukkuri_nb.core``.  Where the seed itself is
broken the fix is applied here, explicitly, and nowhere else:

* its examples use ``Dict``, ``Any``, ``List``, ``datetime``, ``time``,
  ``StepStatus`` and ``WorkflowExecutionPlan`` without importing them: :func:`namespace` provides them;
* ``performance_callback`` uses ``nonlocal last_update`` after reading the
  name (a SyntaxError): :func:`block` moves the declaration to the top;
* its example classes call helpers they never define (processors
  ``TitleGenerationProcessor`` etc., ``_sort_steps_by_resource_efficiency``,
  ``_pre_allocate_resources``): the tests define them.
"""

from __future__ import annotations

import asyncio
import re
import time
import types
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List

SEED = Path(__file__).resolve().parents[2] / "docs" / "seed" / "workflow_engine.ja.md"


def blocks() -> list[str]:
    text = SEED.read_text(encoding="utf-8")
    return [b.replace("src.core", "yukkuri_nb.core") for b in re.findall(r"```python\n(.*?)```", text, re.S)]


def block(index: int) -> str:
    code = blocks()[index]
    if "nonlocal last_update" in code:
        code = code.replace("            nonlocal last_update\n", "")
        code = code.replace(
            "        def performance_callback(state: WorkflowExecutionState):\n",
            "        def performance_callback(state: WorkflowExecutionState):\n            nonlocal last_update\n",
        )
    return code


def scaled_asyncio(factor: float) -> types.ModuleType:
    """A stand-in for the ``asyncio`` module whose ``sleep`` is ``factor`` times shorter.

    The seed's examples wait 2-20 real seconds between control calls; the
    tests keep the code and shrink the clock.
    """
    mod = types.ModuleType("asyncio_scaled")
    mod.__dict__.update(asyncio.__dict__)

    async def sleep(delay: float, result: Any = None) -> Any:
        return await asyncio.sleep(delay * factor, result)

    mod.sleep = sleep
    return mod


def namespace(**extra: Any) -> dict[str, Any]:
    from yukkuri_nb.core import WorkflowExecutionPlan
    from yukkuri_nb.core.workflow_step import StepStatus

    ns: dict[str, Any] = {
        "__name__": "seed_example",
        "Dict": Dict,
        "Any": Any,
        "List": List,
        "datetime": datetime,
        "time": time,
        "asyncio": asyncio,
        "StepStatus": StepStatus,
        "WorkflowExecutionPlan": WorkflowExecutionPlan,
    }
    ns.update(extra)
    return ns


def run_blocks(ns: dict[str, Any], *indices: int) -> dict[str, Any]:
    for i in indices:
        code = block(i)
        if "asyncio" in ns and ns["asyncio"] is not asyncio:
            # Keep the scaled asyncio even though the block re-imports asyncio.
            code = code.replace("import asyncio\n", "")
        exec(compile(code, f"<seed block {i}>", "exec"), ns)
    return ns
