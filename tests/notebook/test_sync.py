"""run_sync: blocking runs outside and inside a running loop, nest-asyncio2 only when needed.

Each case runs in a subprocess: nest-asyncio2 patches asyncio for the whole
process, which must not leak into the other tests.
"""

from __future__ import annotations

import subprocess
import sys

PRELUDE = r"""
import asyncio, sys
from yukkuri_nb.core import WorkflowEngine
from yukkuri_nb.core.workflow_step import WorkflowStepDefinition as Step
engine = WorkflowEngine()
engine.register_workflow("w", [Step(name="a", display_name="テーマ選定"),
                               Step(name="b", display_name="台本", dependencies=["a"])])
async def a(context, data):
    await asyncio.sleep(0.01)
    return {"theme": "お茶"}
engine.register_step_processor("a", a)
engine.register_step_processor("b", lambda context, data: {"script": data["theme"] + "の話"})
"""


def run_python(code: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_importing_the_sync_helper_patches_nothing_and_imports_no_widgets():
    out = run_python(
        "import yukkuri_nb.notebook, yukkuri_nb.notebook.sync\n"
        "print(hasattr(asyncio, '_nest_patched'), 'nest_asyncio2' in sys.modules, 'ipywidgets' in sys.modules)\n"
    )
    assert out == ["False False False"]


def test_run_sync_outside_a_loop_needs_no_patch():
    out = run_python(
        "from yukkuri_nb.notebook import run_sync\n"
        "r = run_sync(engine.execute_workflow('w', 'p1'))\n"
        "print(r.status.value, r.outputs['script'], hasattr(asyncio, '_nest_patched'))\n"
    )
    assert out == ["completed お茶の話 False"]


def test_execute_workflow_sync_inside_a_running_loop_uses_nest_asyncio2_on_that_loop():
    out = run_python(
        "async def cell():\n"
        "    # a Jupyter cell: the loop is running and the code is synchronous\n"
        "    before = hasattr(asyncio, '_nest_patched')\n"
        "    r = engine.execute_workflow_sync('w', 'p1')\n"
        "    r2 = engine.execute_workflow_sync('w', 'p2')  # again, on the already patched loop\n"
        "    loop = asyncio.get_running_loop()\n"
        "    print(before, r.status.value, r2.outputs['script'], hasattr(asyncio, '_nest_asyncio2'),\n"
        "          getattr(type(loop), '_nest_patched', False), 'nest_asyncio' in sys.modules)\n"
        "asyncio.run(cell())\n"
    )
    assert out == ["False completed お茶の話 True True False"]


def test_run_sync_refuses_a_loop_patched_by_the_archived_nest_asyncio():
    out = run_python(
        "asyncio._nest_patched = True  # what the archived nest_asyncio leaves behind\n"
        "from yukkuri_nb.notebook.sync import run_sync\n"
        "async def cell():\n"
        "    try:\n"
        "        run_sync(asyncio.sleep(0))\n"
        "    except RuntimeError as exc:\n"
        "        print(exc)\n"
        "asyncio.run(cell())\n"
    )
    assert out == [
        "asyncio was patched by the archived nest_asyncio package, which breaks under ipykernel 7 "
        "('cannot enter context'); remove `nest_asyncio.apply()` from the notebook and restart the kernel "
        "(yukkuri_nb uses nest-asyncio2 when it needs to)"
    ]


def test_run_sync_without_nest_asyncio2_says_how_to_install_it():
    out = run_python(
        "sys.modules['nest_asyncio2'] = None\n"
        "from yukkuri_nb.notebook.sync import run_sync\n"
        "async def cell():\n"
        "    try:\n"
        "        run_sync(asyncio.sleep(0))\n"
        "    except ImportError as exc:\n"
        "        print(exc)\n"
        "asyncio.run(cell())\n"
    )
    assert out == [
        "running a coroutine synchronously inside an already running event loop (Jupyter) needs "
        "nest-asyncio2; install it with `pip install nest-asyncio2`, or use `await ...` in the cell instead"
    ]
