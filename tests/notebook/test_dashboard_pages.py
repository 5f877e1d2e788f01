"""Dashboards of large runs: step rows come a page at a time, and no plan picture is laid out."""

from __future__ import annotations

import asyncio

from yukkuri_nb.core import VirtualClock, WorkflowEngine
from yukkuri_nb.core.workflow_step import WorkflowStepDefinition as Step
from yukkuri_nb.notebook.dashboard import Dashboard


def test_a_large_run_shows_a_page_of_rows_and_every_failure(monkeypatch):
    # The thresholds are lowered so a 7-step run counts as large (real: 500 steps).
    monkeypatch.setattr(Dashboard, "MAX_STEP_ROWS", 5)
    monkeypatch.setattr(Dashboard, "PAGE_SIZE", 2)
    monkeypatch.setattr(Dashboard, "MAX_PLAN_STEPS", 5)
    engine = WorkflowEngine(max_concurrent_steps=2, clock=VirtualClock())
    names = [f"s{i}" for i in range(7)]
    engine.register_workflow("wide", [Step(name=n, display_name=f"字幕{n}", estimated_duration=1) for n in names])

    async def work(context, data):
        await asyncio.sleep(1)
        if context.step_name == "s6":
            raise ValueError("字幕ファイルが壊れています")

    for n in names:
        engine.register_step_processor(n, work)

    async def main():
        run = engine.start("wide", "p1")
        dash = run.dashboard
        await run
        return dash

    dash = engine.clock.run(main())
    assert list(dash.step_rows) == ["s0", "s1"]
    assert dash.page.max == 4 and dash.page_label.value == "steps 1-2 of 7"
    assert dash.step_rows["s0"]["status"].value == "完了 completed"
    # s6 failed on page 4, and the errors box (whole run) says so from page 1.
    assert "字幕ファイルが壊れています" in dash.errors.value and "字幕s6" in dash.errors.value
    assert "plan picture not drawn for 7 steps" in dash.plan_view.value and dash._plan is None

    dash.page.value = 4
    dash.refresh()  # a redraw turns the page (the throttle would, ~0.1 s later)
    assert list(dash.step_rows) == ["s6"]
    assert dash.page_label.value == "steps 7-7 of 7"
    assert "字幕s6" in dash._row_names[0].value
    assert dash.step_rows["s6"]["status"].value == "失敗 failed"
    assert dash._row_boxes[1].layout.display == "none"  # the last page has one step
    assert len(dash.snapshot().steps) == 1 and dash.snapshot().failed == 1


def test_closing_a_dashboard_closes_its_widgets_and_lets_the_engine_go():
    import gc
    import weakref

    import ipywidgets

    engine = WorkflowEngine(clock=VirtualClock())
    engine.register_workflow("one", [Step(name="s0")])
    engine.register_step_processor("s0", lambda context, data: None)

    async def main():
        run = engine.start("one", "p1")
        dash = run.dashboard
        await run
        return dash

    dash = engine.clock.run(main())
    buttons = list(dash.buttons.values())
    dash.close()
    assert all(isinstance(b, ipywidgets.Button) and b.comm is None for b in buttons)  # closed
    gone = weakref.ref(engine)
    del engine, dash, buttons
    gc.collect()
    assert gone() is None


def test_a_large_runs_eta_is_recomputed_once_a_second_and_counted_down_between():
    from yukkuri_nb.notebook.view import RunView

    clock = VirtualClock()
    engine = WorkflowEngine(max_concurrent_steps=2, clock=clock)
    steps = [Step(name=f"s{i}", estimated_duration=1.0) for i in range(RunView.ETA_CACHE_STEPS + 100)]
    engine.register_workflow("big", steps)

    async def work(context, data):
        await asyncio.sleep(1.0)

    for s in steps:
        engine.register_step_processor(s.name, work)
    seen = []

    async def main():
        run = engine.start("big", "p")
        await asyncio.sleep(0.2)
        state = run.state
        computed = []
        original = state.estimate_remaining_time
        state.estimate_remaining_time = lambda: computed.append(clock.now()) or original()
        view = RunView(engine, "p")
        for pause in (0.0, 0.3, 0.4, 0.5):  # t = 0.2, 0.5, 0.9, 1.4
            await asyncio.sleep(pause)
            seen.append((clock.now(), view.snapshot([]).eta))
        run.cancel("enough")
        await run
        return computed

    computed = clock.run(main())
    (t0, eta0), (t1, eta1), (t2, eta2), (t3, eta3) = seen
    assert computed == [t0, t3]  # at the first snapshot, then not before a second had passed
    assert eta1 == eta0 - (t1 - t0) and eta2 == eta0 - (t2 - t0)
