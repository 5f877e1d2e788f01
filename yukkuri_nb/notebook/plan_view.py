"""The dashboard's plan picture: the run's plan as SVG, coloured by live status.

The DOT graph is built on the loop's thread (it reads the live state); the
``dot`` executable runs in a worker thread, so a slow layout never stalls the
run, and at most one render is in flight (a refresh requested meanwhile is
done once it ends).  Without ``dot`` the DOT source is shown instead, with a
one-time hint on how to install Graphviz; without ``yukkuri_nb.viz`` the view
says so.
"""

from __future__ import annotations

import asyncio
import contextvars
import html
import logging
import shutil
from typing import Any, Callable

__all__ = ["PlanRenderer", "GRAPHVIZ_HINT"]

log = logging.getLogger("yukkuri_nb.notebook")

GRAPHVIZ_HINT = (
    "the Graphviz 'dot' executable was not found, so plans are shown as DOT source; "
    "install it with `sudo apt-get install graphviz` (Debian/Ubuntu) or `brew install graphviz`"
)
_hinted = False


def dot_available() -> bool:
    """Whether the Graphviz ``dot`` executable is on ``PATH``."""
    return shutil.which("dot") is not None


class PlanRenderer:
    """Renders ``plan`` with a state into HTML and hands it to ``sink(html)`` on the loop's thread.

    Parameters:
        plan: a :class:`~yukkuri_nb.core.WorkflowExecutionPlan`.
        sink: called with the HTML to show (an ``ipywidgets.HTML``'s value setter).
        loop: the loop whose thread calls ``sink``; ``None`` renders synchronously.
    """

    def __init__(self, plan: Any, sink: Callable[[str], None], loop: asyncio.AbstractEventLoop | None) -> None:
        self.plan = plan
        self.sink = sink
        self.loop = loop
        self.renders = 0
        self._in_flight = False
        self._again: Any = None
        self._to_graphviz = _plan_to_graphviz()
        self._dot = dot_available()

    def refresh(self, state: Any) -> None:
        """Draw the plan with ``state``'s colours (call on the loop's thread)."""
        if self._to_graphviz is None:
            self.sink("<i>plan view: <code>yukkuri_nb.viz.plan</code> is not available in this installation</i>")
            return
        if self._in_flight:
            self._again = state
            return
        try:
            graph = self._to_graphviz(self.plan, state=state)
        except Exception as exc:  # a drawing bug must not break the dashboard
            log.exception("drawing the plan of %r failed", getattr(self.plan, "workflow_name", "?"))
            self.sink(f"<i>plan view failed: {html.escape(repr(exc))}</i>")
            return
        if not self._dot:
            _hint_once()
            source = getattr(graph, "source", str(graph))
            self.renders += 1
            self.sink(
                f"<div><i>{html.escape(GRAPHVIZ_HINT)}</i><pre style='max-height:24em;overflow:auto'>"
                f"{html.escape(source)}</pre></div>"
            )
            return
        loop = self.loop
        if loop is None or loop.is_closed() or not loop.is_running():
            self._show_or_fail(graph)
            return
        try:
            future = loop.run_in_executor(None, _render_svg, graph)
        except RuntimeError:  # the loop is shutting its executor down: render here, once
            self._show_or_fail(graph)
            return
        self._in_flight = True
        future.add_done_callback(self._done, context=contextvars.Context())

    def _show_or_fail(self, graph: Any) -> None:
        try:
            self._show(_render_svg(graph))
        except Exception as exc:
            log.warning("rendering the plan with dot failed: %s", exc)
            self.sink(f"<i>plan view failed: {html.escape(str(exc))}</i>")

    def _done(self, future: "asyncio.Future[str]") -> None:
        self._in_flight = False
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.warning("rendering the plan with dot failed: %s", exc)
            self.sink(f"<i>plan view failed: {html.escape(str(exc))}</i>")
        else:
            self._show(future.result())
        again, self._again = self._again, None
        if again is not None:
            self.refresh(again)

    def _show(self, svg: str) -> None:
        self.renders += 1
        self.sink(f"<div style='max-width:100%;overflow:auto'>{svg}</div>")


def _plan_to_graphviz() -> Callable[..., Any] | None:
    try:
        from yukkuri_nb.viz.plan import plan_to_graphviz
    except ImportError:
        log.info("yukkuri_nb.viz.plan is not available; the dashboard shows no plan")
        return None
    return plan_to_graphviz


def _render_svg(graph: Any) -> str:
    svg = graph.pipe(format="svg", encoding="utf-8")
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


def _hint_once() -> None:
    global _hinted
    if not _hinted:
        _hinted = True
        log.warning(GRAPHVIZ_HINT)
