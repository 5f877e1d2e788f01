"""The run dashboard without a kernel: widget tree, wiring, threads, throttling, final states."""

from __future__ import annotations

import asyncio
import html
import subprocess
import sys
import threading

import ipywidgets
import pytest

from yukkuri_nb.core import VirtualClock, WorkflowEngine
from yukkuri_nb.core.events import EventKind
from yukkuri_nb.core.workflow_step import ResourceManager, StepStatus, WorkflowStepDefinition as Step
from yukkuri_nb.notebook.dashboard import TextDashboard


def walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def buttons(dashboard) -> dict[str, ipywidgets.Button]:
    found = {}
    for w in walk(dashboard):
        if isinstance(w, ipywidgets.Button):
            for word in ("Pause", "Resume", "Cancel"):
                if word in w.description:
                    found[word] = w
    return found


def chain_engine(n: int = 6, *, clock=None, seconds: float = 1.0, limit: int = 1, fail: str | None = None):
    """``n`` steps in a chain, each sleeping ``seconds`` (reporting sub-progress), one pool ``llm_api``."""
    engine = WorkflowEngine(resource_manager=ResourceManager({"llm_api": 2}), max_concurrent_steps=limit, clock=clock)
    names = [f"s{i}" for i in range(n)]
    engine.register_workflow(
        "chain",
        [
            Step(name=s, display_name=f"手順{i}", estimated_duration=seconds,
                 dependencies=[names[i - 1]] if i else [], required_resources={"llm_api"})
            for i, s in enumerate(names)
        ],
    )

    async def work(context, data):
        if context.step_name == fail:
            raise ValueError("音声ファイルがありません")
        context.report_progress(0.5, "半分")
        await asyncio.sleep(seconds)
        return {}

    for s in names:
        engine.register_step_processor(s, work)
    return engine


def started(engine, project_id):
    return [e.step for e in engine.events(project_id) if e.kind is EventKind.STEP_STARTED]


def test_handle_dashboard_is_a_widget_tree_with_bilingual_control_buttons():
    engine = chain_engine(3, clock=VirtualClock())

    async def main():
        run = engine.start("chain", "p1")
        dash = run.dashboard
        assert run.dashboard is dash  # built once
        await run
        return dash

    dash = engine.clock.run(main())
    assert isinstance(dash, ipywidgets.VBox)
    found = buttons(dash)
    assert sorted(found) == ["Cancel", "Pause", "Resume"]
    assert found["Pause"].description == "一時停止 Pause"
    assert {type(w).__name__ for w in walk(dash)} >= {"FloatProgress", "IntProgress", "BoundedIntText", "HTML", "Label"}
    bundle = dash._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"].startswith("run 'p1' (chain): 完了 completed · 3/3 completed")


def test_click_handlers_on_a_non_loop_thread_pause_resume_and_cancel_the_run():
    engine = chain_engine(8, clock=VirtualClock())
    threads: list[int] = []

    async def click(button):
        # The click is handled on another thread, as with JupyterLab's comms over
        # subshells.  Joining it blocks the loop, so (virtual) time cannot move on
        # while the handler runs: the control calls must not need the loop to return.
        button.on_click(lambda _b: threads.append(threading.get_ident()))
        thread = threading.Thread(target=button.click)
        thread.start()
        thread.join(timeout=60)
        assert not thread.is_alive(), f"the {button.description!r} handler blocked"

    async def main():
        run = engine.start("chain", "p1")
        dash = run.dashboard
        found = buttons(dash)
        await asyncio.sleep(1.5)  # s0 done, s1 running
        await click(found["Pause"])
        assert run.state.is_paused  # in effect as soon as the handler returned
        at_pause = started(engine, "p1")
        await asyncio.sleep(10)  # ten steps' worth of virtual time
        assert started(engine, "p1") == at_pause, "a step started while paused"
        assert run.state.running_steps == 0 and not run.done()
        assert dash.resume_button.disabled is False and dash.pause_button.disabled is True
        await click(found["Resume"])
        await asyncio.sleep(1.5)
        assert len(started(engine, "p1")) > len(at_pause)
        await click(found["Cancel"])
        return dash, await run

    dash, result = engine.clock.run(main())
    assert len(threads) == 3 and threading.get_ident() not in threads
    assert result.status is StepStatus.CANCELLED
    assert result.cancel_reason == "cancelled from the dashboard (中止ボタン)"
    assert dash.overall.bar_style == "danger"
    assert all(b.disabled for b in buttons(dash).values())


def test_updates_are_coalesced_to_at_most_ten_per_second():
    clock = VirtualClock()
    engine = WorkflowEngine(max_concurrent_steps=4, clock=clock)
    steps = [Step(name=f"t{i}", display_name=f"字幕{i}", estimated_duration=0.005) for i in range(400)]
    engine.register_workflow("many", steps)

    async def tick(context, data):
        context.report_progress(0.5)
        await asyncio.sleep(0.005)

    for s in steps:
        engine.register_step_processor(s.name, tick)
    # The dashboard samples: the engine calls it at the next event after each
    # redraw, not at every event.
    wakes = []
    engine.call_on_next_event, arm = (lambda fn: (wakes.append(fn), arm(fn))), engine.call_on_next_event

    async def main():
        run = engine.start("many", "p1")
        dash = run.dashboard
        await run
        return dash, run

    dash, run = clock.run(main())
    events = len(engine.events("p1"))
    seconds = run.state.elapsed_seconds  # 100 rounds of 4 steps: 0.5 virtual seconds
    assert events > 1500
    assert 1 <= dash.refresher.flushes <= seconds * 10 + 2
    assert 1 <= len(wakes) <= dash.refresher.flushes + 1
    # The final state is drawn whatever the throttle skipped.
    assert dash.overall.value == 1.0 and dash.overall.bar_style == "success"
    assert dash.step_rows["t399"]["status"].value == "完了 completed"


def test_rows_show_sub_progress_elapsed_attempts_and_pool_gauges_while_running():
    engine = chain_engine(3, clock=VirtualClock(), seconds=2.0)

    async def main():
        run = engine.start("chain", "p1")
        dash = run.dashboard
        await asyncio.sleep(3.0)  # s1 running for 1 s, reported 50%
        dash.refresh()
        snap = dash.snapshot()
        row = dash.step_rows["s1"]
        seen = {
            "bar": row["bar"].value, "style": row["bar"].bar_style, "status": row["status"].value,
            "detail": row["detail"].value, "elapsed": row["elapsed"].value,
            "gauge": dash.pool_rows["llm_api"]["label"].value, "headline": dash.headline.value,
            "eta": snap.eta, "overall": dash.overall.value,
        }
        run.cancel("test over")
        await run
        return seen

    seen = engine.clock.run(main())
    assert seen["bar"] == 0.5 and seen["style"] == "info" and seen["status"] == "実行中 running"
    assert seen["detail"] == "半分" and seen["elapsed"] == "1.0s"
    assert seen["gauge"] == "in use 1/2 · waiting 0"
    assert seen["headline"].startswith("実行中 running · 1/3 completed")
    assert seen["eta"] == pytest.approx(3.0)  # 1 s left of s1, then s2
    assert seen["overall"] == pytest.approx(1.5 / 3)


def test_failed_step_stays_visible_with_danger_style_and_its_error():
    engine = chain_engine(3, clock=VirtualClock(), fail="s1")

    async def main():
        run = engine.start("chain", "p1")
        dash = run.dashboard
        await run
        return dash

    dash = engine.clock.run(main())
    assert dash.overall.bar_style == "danger"
    assert dash.step_rows["s1"]["bar"].bar_style == "danger"
    assert "ValueError: 音声ファイルがありません" in dash.step_rows["s1"]["detail"].value
    assert "手順1 (s1)" in dash.errors.value and "音声ファイルがありません" in dash.errors.value
    assert dash.step_rows["s2"]["status"].value == "スキップ skipped"
    assert "✗ 手順1  failed" in dash.text()


def test_concurrency_and_pool_controls_set_the_engine_from_any_thread_and_follow_it():
    engine = chain_engine(4, clock=VirtualClock())

    async def main():
        run = engine.start("chain", "p1")
        dash = run.dashboard

        def edit():
            dash.concurrency.value = 3
            dash.pool_capacity["llm_api"].value = 5

        thread = threading.Thread(target=edit)
        thread.start()
        thread.join(timeout=60)
        seen = (engine.max_concurrent_steps, engine.resource_manager.capacity("llm_api"))
        engine.max_concurrent_steps = 2  # changed elsewhere: the box follows
        await asyncio.sleep(0.5)
        followed = dash.concurrency.value
        run.cancel()
        await run
        return seen, followed

    seen, followed = engine.clock.run(main())
    assert seen == (3, 5)
    assert followed == 2


def test_plan_view_shows_svg_with_status_colours(tmp_path):
    from yukkuri_nb.viz.plan import STATUS_COLOURS

    engine = chain_engine(2, seconds=0.01)
    shown: list[str] = []

    async def main():
        run = engine.start("chain", "p1")
        dash = run.dashboard
        dash.plan_view.observe(lambda change: shown.append(change["new"]), "value")
        await run
        for _ in range(400):  # the last render runs in a worker thread: wait (up to 4 s) for the final picture
            if not dash._plan._in_flight and html.unescape(dash.plan_view.value).count("status-completed") == 2:
                break
            await asyncio.sleep(0.01)
        return dash

    dash = asyncio.run(main())
    value = dash.plan_view.value
    assert value.startswith("<div") and "<svg" in value
    assert "手順0" in value
    # The view refreshed with the run: drawn first while the run was going on,
    # last with both steps in the completed colour.
    assert len(shown) >= 2 and shown[-1] == value
    first, last = (html.unescape(v) for v in (shown[0], value))  # dot writes '-' in classes as &#45;
    assert first.count("status-completed") < 2
    assert last.count("status-completed") == 2 and "status-pending" not in last and "status-running" not in last
    assert f'fill="{STATUS_COLOURS["completed"]}"' in value


def test_dashboard_built_after_the_run_shows_its_final_state():
    engine = chain_engine(2, clock=VirtualClock())

    async def main():
        run = engine.start("chain", "p1")
        await run
        return run

    run = engine.clock.run(main())  # the loop is closed now
    dash = run.dashboard
    assert dash.overall.bar_style == "success"
    assert dash.step_rows["s1"]["elapsed"].value == "1.0s"
    assert repr(run).startswith("<RunHandle 'p1' completed: 2/2")


def test_text_dashboard_is_readable():
    engine = chain_engine(2, clock=VirtualClock(), fail="s1")

    async def main():
        run = engine.start("chain", "p1")
        await run
        return TextDashboard(run)

    text = repr(engine.clock.run(main()))
    assert text.splitlines() == [
        "run 'p1' (chain): 失敗 failed · 1/2 completed · 1 failed · elapsed 1.0s",
        "  ✓ 手順0  completed 1.0s",
        "  ✗ 手順1  failed    0.0s  ValueError: 音声ファイルがありません",
        "  pools: llm_api 0/2 (waiting 0); max_concurrent_steps=1",
    ]


def test_without_ipywidgets_the_handle_degrades_to_text_with_an_install_hint():
    code = r"""
import sys, asyncio, logging
sys.modules["ipywidgets"] = None  # as if not installed
logging.basicConfig(level=logging.WARNING, format="%(message)s")
from yukkuri_nb.core import WorkflowEngine, VirtualClock
from yukkuri_nb.core.workflow_step import WorkflowStepDefinition as Step
clock = VirtualClock()
engine = WorkflowEngine(clock=clock)
engine.register_workflow("w", [Step(name="a", display_name="テーマ選定", estimated_duration=1)])
async def a(context, data):
    await asyncio.sleep(1)
engine.register_step_processor("a", a)
async def main():
    run = engine.start("w", "p1")
    run.dashboard
    await run
    return run
run = clock.run(main())
print(type(run.dashboard).__name__, run.dashboard.children)
print(run._repr_mimebundle_()["text/plain"])
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "Dashboard ()",
        "run 'p1' (w): 完了 completed · 1/1 completed · elapsed 1.0s",
        "  ✓ テーマ選定  completed 1.0s",
    ]
    assert "pip install 'yukkuri_nb[notebook]'" in proc.stderr


def test_plan_view_without_dot_shows_the_dot_source_and_how_to_install_graphviz(monkeypatch):
    from yukkuri_nb.notebook import plan_view

    monkeypatch.setattr(plan_view, "dot_available", lambda: False)
    engine = chain_engine(2, clock=VirtualClock())
    shown: list[str] = []
    renderer = plan_view.PlanRenderer(engine.plan_execution("chain", "p1"), shown.append, loop=None)
    renderer.refresh(None)
    assert len(shown) == 1 and renderer.renders == 1
    assert "sudo apt-get install graphviz" in shown[0]
    assert "<pre" in shown[0] and "digraph" in shown[0] and "手順1" in shown[0]
    assert "<svg" not in shown[0]


def test_the_headline_names_a_schedule_other_than_the_default():
    engine = chain_engine(2, clock=VirtualClock())

    async def main(schedule):
        run = engine.start("chain", f"p-{schedule}", schedule=schedule)
        dash = run.dashboard
        await run
        return dash

    assert "schedule" not in engine.clock.run(main("priority")).headline.value
    dash = engine.clock.run(main("fifo"))
    assert dash.headline.value.endswith(" · schedule fifo")
    assert engine.get_execution_status("p-fifo").get_status_summary()["schedule"] == "fifo"
