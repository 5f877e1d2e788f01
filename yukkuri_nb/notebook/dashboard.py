"""The run dashboard: an ipywidgets tree that watches and steers one run.

``run.dashboard`` (``run = engine.start(...)``) is a :class:`Dashboard`, an
``ipywidgets.VBox``.  From top to bottom: a title; the overall bar with
completed / total, elapsed time and ETA; the Pause / Resume / Cancel buttons
and the engine's ``max_concurrent_steps``; one row per step (display name,
status, its own bar fed by the sub-progress the processor reports, elapsed
time, attempts, message or error); one gauge per resource pool (in use /
capacity, waiting, and the capacity itself, editable); the errors of failed
steps; the plan as a graphviz picture coloured by status.

Threads and rates:

* The dashboard samples; it does not follow every event.  It asks the
  engine to call it once at the next event (``engine.call_on_next_event``),
  which marks it dirty; a :class:`~yukkuri_nb.notebook.throttle.Coalescer`
  redraws at most every ``REFRESH_INTERVAL`` (0.1 s) from the run's live
  state and only then asks again.  However many steps finish, the engine
  calls the dashboard about 10 times a second (three events per step would
  otherwise cost a 10,000-step run 30,000 calls), and an idle run not at
  all.  The plan is redrawn at most every ``PLAN_INTERVAL`` (1 s).  Widgets
  are only ever written on the loop's thread.
* Button clicks and edits may be handled on another thread (JupyterLab sends
  comms over subshells): the handlers only call the engine's thread-safe
  control methods and mark the dashboard dirty.
* When the run finishes (its task is done) the dashboard redraws at once and
  stops; the final state stays visible (``success`` or ``danger`` styles,
  errors).
* Widgets are costly to build (~0.2 ms each, half of it the ``Layout`` and
  style each widget makes for itself), so the rows' widgets share one
  layout and one style per column.

Only the non-blocking forms keep the buttons live while a run goes on:
``run = engine.start(...)`` or ``await engine.execute_workflow(...)``.  While
``engine.execute_workflow_sync(...)`` blocks a cell, clicks wait until it ends.

Without ipywidgets, :class:`Dashboard` is :class:`TextDashboard`, which
shows the same information as text (and says how to install ipywidgets).
"""

from __future__ import annotations

import asyncio
import contextvars
import html
import logging
from typing import TYPE_CHECKING, Any

from yukkuri_nb.core.clock import RealClock
from yukkuri_nb.core.definitions import StepStatus
from yukkuri_nb.core.workflow_exceptions import WorkflowEngineError

from .throttle import Coalescer
from .view import STATUS_LABELS, RunSnapshot, RunView, format_seconds

if TYPE_CHECKING:  # pragma: no cover
    from yukkuri_nb.core.handle import RunHandle

__all__ = ["Dashboard", "TextDashboard", "INSTALL_HINT"]

log = logging.getLogger("yukkuri_nb.notebook")

INSTALL_HINT = (
    "the run dashboard needs ipywidgets (and a Jupyter front-end); "
    "install it with `pip install 'yukkuri_nb[notebook]'` (or `pip install ipywidgets`); "
    "showing text instead"
)

try:
    import ipywidgets as widgets
except ImportError:  # pragma: no cover - exercised in a subprocess test
    widgets = None

if widgets is not None:
    from ipywidgets.widgets.widget_int import ProgressStyle as _ProgressStyle
    from ipywidgets.widgets.widget_string import HTMLStyle as _HTMLStyle
    from ipywidgets.widgets.widget_string import LabelStyle as _LabelStyle

#: the step rows' columns: Layout arguments, one shared Layout per column
_COLUMNS = {
    "name": {"width": "16em"}, "status": {"width": "11em"}, "bar": {"width": "25%"},
    "elapsed": {"width": "5em"}, "attempts": {"width": "6em"}, "detail": {"flex": "1"},
}
_STEP_BAR_STYLE = {
    StepStatus.RUNNING: "info",
    StepStatus.RETRYING: "warning",
    StepStatus.COMPLETED: "success",
    StepStatus.FAILED: "danger",
    StepStatus.CANCELLED: "warning",
    StepStatus.SKIPPED: "warning",
}


def _descendants(widget: Any) -> list[Any]:
    out = []
    for child in getattr(widget, "children", ()):
        out.extend(_descendants(child))
        out.append(child)
    return out


class TextDashboard:
    """The dashboard as text: what a run looks like without ipywidgets or a front-end.

    ``repr(dashboard)`` (and the ``text/plain`` of its mime bundle) is the
    live :meth:`RunSnapshot.text`; ``pause()``, ``resume()`` and ``cancel()``
    steer the run.
    """

    children: tuple = ()

    def __init__(self, handle: "RunHandle") -> None:
        self.handle = handle
        self.view = RunView(handle.engine, handle.project_id)

    def snapshot(self) -> RunSnapshot | None:
        return self.view.snapshot()

    def text(self) -> str:
        snap = self.snapshot()
        return snap.text() if snap is not None else self.view.text()

    def pause(self) -> bool:
        return self.handle.pause()

    def resume(self) -> bool:
        return self.handle.resume()

    def cancel(self, reason: str = "") -> bool:
        return self.handle.cancel(reason)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        snap = self.snapshot()
        if snap is None:
            text = self.view.text()
            return {"text/plain": text, "text/html": f"<pre>{html.escape(text)}</pre>"}
        return {"text/plain": snap.text(), "text/html": snap.html()}

    def __repr__(self) -> str:
        return self.text()


if widgets is None:  # pragma: no cover - exercised in a subprocess test

    class Dashboard(TextDashboard):
        """Text stand-in for the widget dashboard (ipywidgets is not installed)."""

        _hinted = False

        def __init__(self, handle: "RunHandle") -> None:
            super().__init__(handle)
            if not Dashboard._hinted:
                Dashboard._hinted = True
                log.warning(INSTALL_HINT)

else:

    class Dashboard(widgets.VBox):  # type: ignore[no-redef]
        """Live widgets for one run: bars, step rows, pool gauges, controls and the plan.

        Parameters:
            handle: the :class:`~yukkuri_nb.core.handle.RunHandle` to watch.
            plan: show the plan picture (needs ``yukkuri_nb.viz``; SVG needs
                Graphviz's ``dot``, else the DOT source is shown).

        Controls (all ``ipywidgets``): ``pause_button``, ``resume_button``,
        ``cancel_button``, ``concurrency`` (the engine's
        ``max_concurrent_steps``), ``pool_capacity[pool]``.
        """

        REFRESH_INTERVAL = 0.1
        PLAN_INTERVAL = 1.0
        HEARTBEAT = 1.0  # redraw elapsed / ETA / pools this often while nothing happens
        # Large runs: a widget costs ~0.3 ms to build, so a row per step of a
        # 10,000-step run would take longer than the run.  Above MAX_STEP_ROWS
        # steps the rows are a page of PAGE_SIZE (chosen with ``page``), and
        # above MAX_PLAN_STEPS no plan picture is drawn (dot cannot lay it out
        # in useful time).
        MAX_STEP_ROWS = 500
        PAGE_SIZE = 10
        MAX_PLAN_STEPS = 500

        def __init__(self, handle: "RunHandle", *, plan: bool = True) -> None:
            super().__init__(layout=widgets.Layout(width="100%"))
            self.handle = handle
            self.engine = handle.engine
            self.view = RunView(self.engine, handle.project_id)
            self._syncing = False
            self._closed = False
            self._armed = False
            self._heartbeat: asyncio.TimerHandle | None = None
            self._loop = handle.task.get_loop()
            state = handle.state
            self._all_steps: list[str] = list(state.step_statuses) if state is not None else []
            self._paged = len(self._all_steps) > self.MAX_STEP_ROWS
            self._page_shown = 1
            self._page_wanted = 1
            snap = self.view.snapshot(self._shown())
            self._build(snap)
            self.refresher = Coalescer(self._loop, self._flush, self.REFRESH_INTERVAL)
            self.plan_refresher = Coalescer(self._loop, self._refresh_plan, self.PLAN_INTERVAL)
            self._plan = None
            if plan and len(self._all_steps) > self.MAX_PLAN_STEPS:
                self.plan_view.value = (
                    f"<i>plan picture not drawn for {len(self._all_steps):,} steps (more than {self.MAX_PLAN_STEPS}); "
                    "<code>engine.plan_execution(...)</code> gives the plan as data</i>"
                )
            elif plan:
                self._plan = self._make_plan_renderer(snap)
            # The first drawing, from the snapshot the rows were built from
            # (a snapshot of a large run costs milliseconds: take one).
            self._arm()
            self._show(snap)
            if self._plan is not None:
                self._refresh_plan()
            if snap is not None and not snap.finished and not self._loop.is_closed():
                # In a fresh context, as the Coalescer's flushes (see throttle.py).
                handle.task.add_done_callback(self._on_done, context=contextvars.Context())
                if isinstance(self.engine.clock, RealClock):
                    # Virtual clocks jump to the next timer: a heartbeat would
                    # make simulated time race, so only real time gets one.
                    self._beat()

        # ------------------------------------------------------------ building
        def _build(self, snap: RunSnapshot | None) -> None:
            W = widgets
            pid = html.escape(self.handle.project_id)
            workflow = html.escape(snap.workflow_name) if snap else "?"
            self.title = W.HTML(f"<b>ゆっくり run</b> <code>{pid}</code> · workflow <code>{workflow}</code>")
            self.overall = W.FloatProgress(
                value=0.0, min=0.0, max=1.0, description="全体 Overall", bar_style="info",
                style={"description_width": "initial"}, layout=W.Layout(width="50%"),
            )
            self.headline = W.Label("")
            self.pause_button = W.Button(description="一時停止 Pause", icon="pause", tooltip="Pause: no new step starts; running steps finish")
            self.resume_button = W.Button(description="再開 Resume", icon="play", tooltip="Resume a paused run", disabled=True)
            self.cancel_button = W.Button(
                description="中止 Cancel", icon="stop", button_style="danger",
                tooltip="Cancel: running steps are cancelled, pending steps will not run",
            )
            self.pause_button.on_click(self._on_pause)
            self.resume_button.on_click(self._on_resume)
            self.cancel_button.on_click(self._on_cancel)
            self.concurrency = W.BoundedIntText(
                value=self.engine.max_concurrent_steps, min=1, max=max(64, self.engine.max_concurrent_steps),
                description="同時実行 max_concurrent_steps", style={"description_width": "initial"},
                layout=W.Layout(width="18em"),
            )
            self.concurrency.observe(self._on_concurrency, names="value")
            controls = W.HBox([self.pause_button, self.resume_button, self.cancel_button, self.concurrency])

            self.step_rows: dict[str, dict[str, Any]] = {}
            rows = []
            # One layout and one style per column, shared by every row (the
            # rows never change them; a paged run hides rows through the
            # row box's own layout).
            col = {k: W.Layout(**v) for k, v in _COLUMNS.items()}
            label_style, html_style, bar_style = _LabelStyle(), _HTMLStyle(), _ProgressStyle()
            for s in snap.steps if snap else ():
                name = W.HTML(
                    f"<b>{html.escape(s.display_name)}</b> <span style='color:gray'>{html.escape(s.name)}</span>",
                    layout=col["name"], style=html_style,
                )
                status = W.Label("", layout=col["status"], style=label_style)
                bar = W.FloatProgress(value=0.0, min=0.0, max=1.0, layout=col["bar"], style=bar_style)
                elapsed = W.Label("", layout=col["elapsed"], style=label_style)
                attempts = W.Label("", layout=col["attempts"], style=label_style)
                detail = W.HTML("", layout=col["detail"], style=html_style)
                self.step_rows[s.name] = {
                    "status": status, "bar": bar, "elapsed": elapsed, "attempts": attempts, "detail": detail,
                }
                rows.append(W.HBox([name, status, bar, elapsed, attempts, detail]))
            self.steps_box = W.VBox(rows)
            if self._paged:
                self._row_list = list(self.step_rows.values())
                self._row_names = [r.children[0] for r in rows]
                self._row_boxes = rows
                pages = -(-len(self._all_steps) // self.PAGE_SIZE)
                self.page = W.BoundedIntText(
                    value=1, min=1, max=pages, description=f"page (of {pages})",
                    style={"description_width": "initial"}, layout=W.Layout(width="14em"),
                )
                self.page.observe(self._on_page, names="value")
                self.page_label = W.Label(self._page_text(1))
                self.steps_box = W.VBox([W.HBox([self.page, self.page_label]), *rows])

            self.pool_rows: dict[str, dict[str, Any]] = {}
            self.pool_capacity: dict[str, Any] = {}
            pool_rows = []
            for p in snap.pools if snap else ():
                gauge = W.IntProgress(value=0, min=0, max=max(1, p.capacity), layout=W.Layout(width="25%"))
                label = W.Label("", layout=W.Layout(width="16em"))
                cap = W.BoundedIntText(
                    value=p.capacity, min=0, max=max(256, p.capacity), description="capacity",
                    layout=W.Layout(width="11em"),
                )
                cap.observe(lambda change, pool=p.name: self._on_capacity(pool, change), names="value")
                self.pool_rows[p.name] = {"gauge": gauge, "label": label}
                self.pool_capacity[p.name] = cap
                pool_rows.append(W.HBox([W.Label(p.name, layout=W.Layout(width="10em")), gauge, label, cap]))
            self.pools_box = W.VBox(
                ([W.HTML("<b>リソース Pools</b>")] + pool_rows) if pool_rows else []
            )
            self.errors = W.HTML("")
            self.plan_view = W.HTML("")
            self.plan_box = W.VBox([W.HTML("<b>実行計画 Plan</b>"), self.plan_view])
            self.children = [
                self.title,
                W.HBox([self.overall, self.headline]),
                controls,
                self.steps_box,
                self.pools_box,
                self.errors,
                self.plan_box,
            ]

        def _make_plan_renderer(self, snap: RunSnapshot | None) -> Any:
            if snap is None:
                return None
            from .plan_view import PlanRenderer

            try:
                plan = self.engine.plan_execution(snap.workflow_name, self.handle.project_id)
            except Exception:  # the workflow was unregistered since
                log.exception("no plan for workflow %r", snap.workflow_name)
                return None

            def show(value: str) -> None:
                self.plan_view.value = value

            return PlanRenderer(plan, show, self._loop)

        # ------------------------------------------------------------ sampling (loop thread)
        def _arm(self) -> None:
            """Be called at the next event (once); _flush re-arms after each redraw."""
            if not self._armed and not self._closed and not self.handle.task.done():
                self._armed = True
                self.engine.call_on_next_event(self._on_change)

        def _on_change(self) -> None:
            self._armed = False
            if self._closed:
                return
            self.refresher.mark()
            if self._plan is not None:
                self.plan_refresher.mark()

        def _on_done(self, _task: Any) -> None:
            if not self._closed:
                self._finish()

        def _beat(self) -> None:
            self._heartbeat = None
            if self._closed or self._loop.is_closed():
                return
            self.refresher.mark()
            self._heartbeat = self._loop.call_later(self.HEARTBEAT, self._beat, context=contextvars.Context())

        def _finish(self) -> None:
            """Stop sampling, then one final redraw: the final state stays as it is."""
            self._stop()
            self.refresher.flush_now()
            if self._plan is not None:
                self._refresh_plan()

        def _stop(self) -> None:
            self._closed = True
            if self._heartbeat is not None:
                self._heartbeat.cancel()
                self._heartbeat = None
            self.refresher.close()
            self.plan_refresher.close()

        # ------------------------------------------------------------ controls (any thread)
        def _on_pause(self, _button: Any = None) -> None:
            self.handle.pause()
            self.refresher.mark()

        def _on_resume(self, _button: Any = None) -> None:
            self.handle.resume()
            self.refresher.mark()

        def _on_cancel(self, _button: Any = None) -> None:
            self.handle.cancel("cancelled from the dashboard (中止ボタン)")
            self.refresher.mark()

        def _on_page(self, change: dict[str, Any]) -> None:
            # Any thread: the rows are rebound on the loop's thread (_flush).
            self._page_wanted = int(change["new"])
            self.refresher.mark()

        # ------------------------------------------------------------ pages (large runs)
        def _shown(self) -> list[str] | None:
            """Names of the steps with a row right now (``None``: every step)."""
            if not self._paged:
                return None
            start = (self._page_shown - 1) * self.PAGE_SIZE
            return self._all_steps[start : start + self.PAGE_SIZE]

        def _page_text(self, page: int) -> str:
            start = (page - 1) * self.PAGE_SIZE
            end = min(len(self._all_steps), start + self.PAGE_SIZE)
            return f"steps {start + 1:,}-{end:,} of {len(self._all_steps):,}"

        def _turn_page(self) -> None:
            """Rebind the row widgets to the steps of the wanted page (loop thread)."""
            page = max(1, min(self._page_wanted, self.page.max))
            if page == self._page_shown:
                return
            self._page_shown = page
            names = self._shown() or []
            display = self.view._display_names(self.handle.state.workflow_name) if self.handle.state else {}
            self.step_rows = {}
            for k, row in enumerate(self._row_list):
                box = self._row_boxes[k]
                if k < len(names):
                    name = names[k]
                    self.step_rows[name] = row
                    row["detail"].value = ""  # _draw only clears it for ended steps
                    self._row_names[k].value = (
                        f"<b>{html.escape(display.get(name, name))}</b> <span style='color:gray'>{html.escape(name)}</span>"
                    )
                    box.layout.display = None
                else:
                    box.layout.display = "none"
            self.page_label.value = self._page_text(page)

        def _on_concurrency(self, change: dict[str, Any]) -> None:
            if self._syncing:
                return
            try:
                self.engine.max_concurrent_steps = int(change["new"])
            except (WorkflowEngineError, TypeError, ValueError) as exc:
                log.warning("max_concurrent_steps not changed: %s", exc)
            self.refresher.mark()

        def _on_capacity(self, pool: str, change: dict[str, Any]) -> None:
            if self._syncing:
                return
            try:
                self.engine.set_pool_capacity(pool, int(change["new"]))
            except Exception as exc:  # a bad value must not break the dashboard
                log.warning("capacity of pool %r not changed: %s", pool, exc)
            self.refresher.mark()

        # ------------------------------------------------------------ drawing (loop thread)
        def _flush(self) -> None:
            # Re-arm before reading: a change after this read wakes us again.
            self._arm()
            if self._paged:
                self._turn_page()
            self._show(self.view.snapshot(self._shown()))

        def _show(self, snap: RunSnapshot | None) -> None:
            if snap is None:
                self.headline.value = "not started"
                return
            self._syncing = True
            try:
                self._draw(snap)
            finally:
                self._syncing = False

        def _draw(self, snap: RunSnapshot) -> None:
            self.overall.value = snap.fraction
            if snap.finished:
                self.overall.bar_style = "success" if snap.status is StepStatus.COMPLETED else "danger"
            else:
                self.overall.bar_style = "warning" if snap.paused else "info"
            self.headline.value = snap.headline
            self.pause_button.disabled = snap.finished or snap.paused
            self.resume_button.disabled = snap.finished or not snap.paused
            self.cancel_button.disabled = snap.finished
            if self.concurrency.value != snap.max_concurrent_steps:
                self.concurrency.max = max(self.concurrency.max, snap.max_concurrent_steps)
                self.concurrency.value = snap.max_concurrent_steps
            for s in snap.steps:
                row = self.step_rows.get(s.name)
                if row is None:
                    continue
                row["status"].value = STATUS_LABELS[s.status]
                row["bar"].value = s.fraction
                row["bar"].bar_style = _STEP_BAR_STYLE.get(s.status, "")
                row["elapsed"].value = "" if s.elapsed is None else format_seconds(s.elapsed)
                row["attempts"].value = f"attempt {s.attempts}" if s.attempts > 1 else ""
                if s.status is StepStatus.FAILED or (s.status is StepStatus.RETRYING and s.error):
                    row["detail"].value = f"<span style='color:#c62828'>{html.escape(s.error)}</span>"
                elif s.message and not s.status.is_terminal:
                    row["detail"].value = html.escape(s.message)
                elif s.status.is_terminal:
                    row["detail"].value = ""
            for p in snap.pools:
                row = self.pool_rows.get(p.name)
                if row is None:
                    continue
                row["gauge"].max = max(1, p.capacity)
                row["gauge"].value = min(p.in_use, max(1, p.capacity))
                row["gauge"].bar_style = "warning" if p.waiting else ("info" if p.in_use else "")
                row["label"].value = f"in use {p.in_use}/{p.capacity} · waiting {p.waiting}"
                cap = self.pool_capacity[p.name]
                if cap.value != p.capacity:
                    cap.max = max(cap.max, p.capacity)
                    cap.value = p.capacity
            errors = snap.errors()
            self.errors.value = (
                "<div style='color:#c62828'><b>エラー Errors</b><ul>"
                + "".join(f"<li><b>{html.escape(who)}</b>: {html.escape(msg)}</li>" for who, msg in errors)
                + "</ul></div>"
                if errors
                else ""
            )

        def _refresh_plan(self) -> None:
            if self._plan is not None:
                self._plan.refresh(self.handle.state)

        # ------------------------------------------------------------ display
        def refresh(self) -> None:
            """Redraw now (call on the loop's thread, e.g. from a cell), also after the run ended."""
            self._flush()

        def snapshot(self) -> RunSnapshot | None:
            return self.view.snapshot(self._shown())

        def text(self) -> str:
            """The dashboard as text (what a front-end without widgets shows)."""
            return self.view.text()

        @property
        def buttons(self) -> dict[str, Any]:
            """``{"pause": Button, "resume": Button, "cancel": Button}``."""
            return {"pause": self.pause_button, "resume": self.resume_button, "cancel": self.cancel_button}

        def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
            data = super()._repr_mimebundle_(**kwargs)
            data["text/plain"] = self.text()
            return data

        def close(self) -> None:
            """Stop following the run and close the widgets' comms."""
            try:
                if not getattr(self, "_closed", True):
                    self._stop()
            finally:
                # ipywidgets keeps every open widget alive; the buttons' handlers
                # would keep this dashboard, its engine and its runs' histories too.
                for child in _descendants(self):
                    child.close()
                super().close()

        def __repr__(self) -> str:
            try:
                return self.text()
            except Exception:  # during interpreter shutdown, or half-built
                return f"<Dashboard {getattr(getattr(self, 'handle', None), 'project_id', '?')!r}>"
