"""The dashboard's buttons on a real kernel, clicked the way a browser clicks them.

A kernel runs ``run = engine.start(...)`` for a chain of slow steps
(``max_concurrent_steps=1``) and displays the run.  The test finds the Pause,
Resume and Cancel buttons among the ``comm_open`` messages the kernel
published, and sends each click as a ``comm_msg`` on the shell channel with
``{"method": "custom", "content": {"event": "click"}}``, as ipywidgets'
front-end does.  Later cells report what the run did.
"""

from __future__ import annotations


import pytest

from .kernel import Kernel

SETUP = """
import asyncio, json
from yukkuri_nb.core import WorkflowEngine
from yukkuri_nb.core.events import EventKind
from yukkuri_nb.core.workflow_step import WorkflowStepDefinition

engine = WorkflowEngine(max_concurrent_steps=1)
names = [f"s{i}" for i in range(12)]
engine.register_workflow("slow", [
    WorkflowStepDefinition(name=n, display_name=f"手順{i}", estimated_duration=0.3,
                           dependencies=[names[i - 1]] if i else [])
    for i, n in enumerate(names)
])

async def slow(context, data):
    for k in range(3):
        context.report_progress((k + 1) / 3, f"{k + 1}/3")
        await asyncio.sleep(0.1)
    return {context.step_name: True}

for n in names:
    engine.register_step_processor(n, slow)

def started():
    return sum(1 for e in engine.events("p1") if e.kind is EventKind.STEP_STARTED)

run = engine.start("slow", "p1")
run
"""

WAIT_FIRST_STEP = """
while started() < 1:
    await asyncio.sleep(0.02)
print(json.dumps({"pause_id": run.dashboard.pause_button.model_id}))
"""

AFTER_PAUSE = """
paused_at = started()
is_paused = run.state.is_paused
# Steps already running finish; nothing new may start while paused.
while run.state.running_steps:
    await asyncio.sleep(0.02)
await asyncio.sleep(1.0)   # three steps' worth of time
print(json.dumps({"is_paused": is_paused, "paused_at": paused_at, "started_after_wait": started(),
                  "running": run.state.running_steps, "done": run.done(),
                  "pause_disabled": run.dashboard.pause_button.disabled,
                  "resume_disabled": run.dashboard.resume_button.disabled}))
"""

AFTER_RESUME = """
is_paused = run.state.is_paused
while started() <= paused_at:
    await asyncio.sleep(0.02)
print(json.dumps({"is_paused": is_paused, "started": started()}))
"""

AFTER_CANCEL = """
result = await run
run.dashboard.refresh()
d = run.dashboard
print(json.dumps({"status": result.status.value, "reason": result.cancel_reason,
                  "completed": result.completed_steps, "cancelled": result.cancelled_steps,
                  "bar_style": d.overall.bar_style, "cancel_disabled": d.cancel_button.disabled,
                  "text": d.text()}))
"""


def _button_id(kernel: Kernel, word: str) -> str:
    ids = [
        c["comm_id"]
        for c in kernel.comm_opens
        if c["data"]["state"].get("_model_name") == "ButtonModel" and word in c["data"]["state"].get("description", "")
    ]
    assert len(ids) == 1, f"expected one {word} button among the comm_open messages, found {len(ids)}"
    return ids[0]


@pytest.mark.timeout(240)
def test_pause_resume_cancel_clicks_sent_as_comm_messages_steer_the_run(tmp_path):
    kernel = Kernel(tmp_path)
    try:
        out = kernel.execute(SETUP).check()
        # Displaying the handle shows the dashboard widget (not a text repr).
        assert any("application/vnd.jupyter.widget-view+json" in d for d in out.data)
        assert "手順0" in out.data[-1]["text/plain"]
        pause_id = kernel.execute(WAIT_FIRST_STEP).check().json()["pause_id"]
        assert _button_id(kernel, "Pause") == pause_id

        kernel.click(pause_id)
        paused = kernel.execute(AFTER_PAUSE).check().json()
        assert paused["is_paused"] is True
        assert paused["started_after_wait"] == paused["paused_at"], "a step started while the run was paused"
        assert paused["running"] == 0 and paused["done"] is False
        assert paused["pause_disabled"] is True and paused["resume_disabled"] is False

        kernel.click(_button_id(kernel, "Resume"))
        resumed = kernel.execute(AFTER_RESUME).check().json()
        assert resumed["is_paused"] is False
        assert resumed["started"] > paused["paused_at"]

        kernel.click(_button_id(kernel, "Cancel"))
        final = kernel.execute(AFTER_CANCEL).check().json()
        assert final["status"] == "cancelled"
        assert "dashboard" in final["reason"]
        assert final["completed"] < 12 and final["cancelled"] >= 1
        assert final["bar_style"] == "danger" and final["cancel_disabled"] is True
        assert "中止 cancelled" in final["text"]
    finally:
        kernel.shutdown()


def test_concurrency_edit_sent_as_comm_update_changes_the_engine(tmp_path):
    """Typing in the max_concurrent_steps box sends an ``update``; the engine takes the new limit."""
    kernel = Kernel(tmp_path)
    try:
        kernel.execute(SETUP).check()
        box_id = kernel.execute(
            "print(json.dumps({'id': run.dashboard.concurrency.model_id}))"
        ).check().json()["id"]
        kernel.send_comm_msg(box_id, {"method": "update", "state": {"value": 3}, "buffer_paths": []})
        out = kernel.execute(
            "run.cancel('done'); r = await run\n"
            "print(json.dumps({'limit': engine.max_concurrent_steps, 'status': r.status.value}))"
        ).check().json()
        assert out == {"limit": 3, "status": "cancelled"}
    finally:
        kernel.shutdown()
