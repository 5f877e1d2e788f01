"""Execution plans as graphviz diagrams.

:func:`plan_to_graphviz` draws a :class:`~yukkuri_nb.core.WorkflowExecutionPlan`
(what ``plan.to_graphviz()`` returns): one cluster per phase, a node per step
with its display name, estimated duration and pools, the critical path in
red, and, when a live :class:`~yukkuri_nb.core.WorkflowExecutionState` is
given, each step filled with the colour of its status, plus a legend.  All text
uses a CJK font (``Noto Sans CJK JP``) so Japanese display names render.

Rendering needs Graphviz's ``dot`` executable.  Without it the returned
:class:`PlanDigraph` displays its DOT source instead (and warns once how to
install Graphviz); :func:`render_svg` / :func:`render_png` raise
:class:`GraphvizNotFoundError`.
"""

from __future__ import annotations

import html
import warnings
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .fonts import cjk_font_family

if TYPE_CHECKING:  # pragma: no cover
    import graphviz

    from yukkuri_nb.core import WorkflowExecutionPlan, WorkflowExecutionState

__all__ = [
    "plan_to_graphviz",
    "render_svg",
    "render_png",
    "PlanDigraph",
    "GraphvizNotFoundError",
    "STATUS_COLOURS",
    "STATUS_LABELS",
    "CRITICAL_COLOUR",
]

INSTALL_HINT = (
    "install Graphviz's `dot` executable to draw plans: `apt-get install graphviz` "
    "(Debian/Ubuntu), `brew install graphviz` (macOS), `conda install graphviz`"
)

#: Fill colour of a node per step status value.
STATUS_COLOURS: dict[str, str] = {
    "pending": "#f1f3f5",
    "ready": "#fff3bf",
    "running": "#74c0fc",
    "retrying": "#ffc078",
    "paused": "#e599f7",
    "completed": "#8ce99a",
    "failed": "#ff8787",
    "skipped": "#ced4da",
    "cancelled": "#868e96",
}
#: Legend text per status (Japanese first, the status word after).
STATUS_LABELS: dict[str, str] = {
    "pending": "待機中 pending",
    "ready": "開始待ち ready",
    "running": "実行中 running",
    "retrying": "再試行待ち retrying",
    "paused": "一時停止 paused",
    "completed": "完了 completed",
    "failed": "失敗 failed",
    "skipped": "スキップ skipped",
    "cancelled": "キャンセル cancelled",
}
CRITICAL_COLOUR = "#e03131"
_EDGE_COLOUR = "#868e96"

_warned_missing_dot = False


class GraphvizNotFoundError(RuntimeError):
    """Graphviz's ``dot`` executable is not installed, so a plan cannot be rendered."""


def _warn_missing_dot() -> None:
    global _warned_missing_dot
    if not _warned_missing_dot:
        _warned_missing_dot = True
        warnings.warn(f"Graphviz `dot` was not found; showing the DOT source instead. {INSTALL_HINT}", stacklevel=3)


def _graphviz() -> Any:
    try:
        import graphviz
    except ImportError:
        raise ImportError(
            "drawing plans needs the graphviz Python package: pip install 'yukkuri_nb[notebook]' (or pip install graphviz)"
        ) from None
    return graphviz


def _digraph_class() -> type:
    graphviz = _graphviz()
    cls = globals().get("_PlanDigraph")
    if cls is None:

        class _PlanDigraph(graphviz.Digraph):
            """A ``graphviz.Digraph`` that shows its DOT source when ``dot`` is missing."""

            def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kw: Any) -> dict[str, Any]:
                try:
                    return super()._repr_mimebundle_(include, exclude, **kw)
                except graphviz.ExecutableNotFound:
                    _warn_missing_dot()
                    return {"text/plain": self.source}

        _PlanDigraph.__name__ = _PlanDigraph.__qualname__ = "PlanDigraph"
        globals()["_PlanDigraph"] = cls = _PlanDigraph
    return cls


def __getattr__(name: str) -> Any:
    # ``PlanDigraph`` subclasses graphviz.Digraph, built on first use so that
    # importing this module does not import graphviz.
    if name == "PlanDigraph":
        return _digraph_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def format_seconds(seconds: float | None) -> str:
    """A short duration: ``45s``, ``2m``, ``1m30s``, ``1h05m``; ``?`` for unknown."""
    if seconds is None or seconds != seconds:
        return "?"
    if seconds == float("inf"):
        return "∞"
    if seconds < 10:
        return f"{seconds:.3g}s"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m" if s == 0 else f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h" if m == 0 else f"{h}h{m:02d}m"


def _status_value(status: Any) -> str:
    return str(getattr(status, "value", status))


def _step_table(plan: Any) -> list[dict[str, Any]]:
    """Per step: name, display name, estimate, pools, parents (from the plan's graph when present)."""
    graph = getattr(plan, "graph", None)
    if graph is not None:
        out = []
        for i, step in enumerate(graph.steps):
            out.append(
                {
                    "name": step.name,
                    "display_name": step.display_name or step.name,
                    "estimate": step.estimated_duration,
                    "pools": sorted(step.required_resources),
                    "parents": [graph.steps[p].name for p in graph.parents[i]],
                }
            )
        return out
    # A plan built by keywords (the seed does that) has no graph: steps, phases
    # and pools only; no dependency edges are known.
    pools_of: dict[str, list[str]] = {}
    for pool, steps in (getattr(plan, "resource_requirements", None) or {}).items():
        for s in steps:
            pools_of.setdefault(s, []).append(pool)
    return [
        {"name": s, "display_name": s, "estimate": None, "pools": sorted(pools_of.get(s, [])), "parents": []}
        for phase in plan.phases
        for s in phase
    ]


def plan_to_graphviz(
    plan: "WorkflowExecutionPlan",
    state: "WorkflowExecutionState | Mapping[str, Any] | None" = None,
    *,
    rankdir: str = "LR",
    fontname: str | None = None,
    legend: bool = True,
    title: str | None = None,
    **graph_attr: str,
) -> "graphviz.Digraph":
    """Draw an execution plan as a ``graphviz.Digraph`` (a :class:`PlanDigraph`).

    Parameters:
        plan: from ``engine.plan_execution(workflow_name, project_id)``; a plan
            built by keywords (without ``plan.graph``) is drawn without edges.
        state: a live ``WorkflowExecutionState`` (or a mapping step name ->
            status) to colour nodes by status; ``None`` draws every step as
            not started.
        rankdir: Graphviz layout direction (``"LR"`` left to right, ``"TB"``).
        fontname: font family for all text (default ``Noto Sans CJK JP``, or
            ``$YUKKURI_CJK_FONT``); it must have Japanese glyphs.
        legend: add a legend node (status colours, critical path).
        title: the diagram's title (default: workflow name and predicted time).
        **graph_attr: extra Graphviz graph attributes (e.g. ``size="8,5"``).

    The DOT text is ``.source``; ``.pipe(format="svg")`` renders it.  Raises
    ``ImportError`` (with the pip command) if the graphviz package is missing.
    """
    cls = _digraph_class()
    font = fontname or cjk_font_family()
    statuses: Mapping[str, Any] = {}
    if state is not None:
        statuses = state if isinstance(state, Mapping) else getattr(state, "step_statuses", {})
    critical = list(getattr(plan, "critical_path", None) or [])
    on_critical = set(critical)
    critical_edges = set(zip(critical, critical[1:]))
    steps = _step_table(plan)

    if title is None:
        title = f"{plan.workflow_name}"
        if getattr(plan, "project_id", ""):
            title += f" ({plan.project_id})"
        title += f" — 予測 {format_seconds(plan.estimated_total_time)}"
        if critical:
            title += f" / クリティカルパス {format_seconds(getattr(plan, 'critical_path_time', None) or None)}"
        if state is not None and getattr(state, "is_paused", False):
            title += " — 一時停止中"
    dot = cls(
        name=f"plan_{plan.workflow_name}",
        graph_attr={
            "rankdir": rankdir,
            "fontname": font,
            "label": title,
            "labelloc": "t",
            "fontsize": "16",
            "compound": "true",
            "nodesep": "0.35",
            "ranksep": "0.6",
            **graph_attr,
        },
        node_attr={"fontname": font, "shape": "box", "style": "rounded,filled", "fontsize": "12", "margin": "0.15,0.08"},
        edge_attr={"fontname": font, "color": _EDGE_COLOUR, "arrowsize": "0.7"},
    )
    by_name = {s["name"]: s for s in steps}
    # Node ids are positions, not step names: a name may contain ":" (a port
    # in DOT edge syntax) or clash with the legend node.
    ids = {s["name"]: f"n{k}" for k, s in enumerate(steps)}
    for k, phase in enumerate(plan.phases):
        with dot.subgraph(name=f"cluster_phase_{k}") as sub:
            sub.attr(label=f"フェーズ {k + 1}", style="rounded,dashed", color="#adb5bd", fontcolor="#495057", fontsize="11")
            for name in phase:
                info = by_name.get(name) or {"name": name, "display_name": name, "estimate": None, "pools": []}
                status = _status_value(statuses.get(name, "pending")) if statuses else None
                sub.node(ids.setdefault(name, f"n{len(ids)}"), **_node_attrs(info, status, name in on_critical))
    for info in steps:
        for parent in info["parents"]:
            if (parent, info["name"]) in critical_edges:
                dot.edge(ids[parent], ids[info["name"]], color=CRITICAL_COLOUR, penwidth="2.5", style="bold")
            else:
                dot.edge(ids[parent], ids[info["name"]])
    if legend:
        used = [_status_value(s) for s in statuses.values()] if statuses else []
        dot.node("legend", _legend_label(used if statuses else None), shape="plain", style="")
    return dot


def _node_attrs(info: Mapping[str, Any], status: str | None, critical: bool) -> dict[str, str]:
    name = info["name"]
    display = info["display_name"] or name
    detail = []
    if info.get("estimate") is not None:
        detail.append(f"≈ {format_seconds(info['estimate'])}")
    if info.get("pools"):
        detail.append(", ".join(info["pools"]))
    rows = [f"<B>{html.escape(display)}</B>"]
    if display != name:
        rows.append(f'<FONT POINT-SIZE="9" COLOR="#495057">{html.escape(name)}</FONT>')
    if detail:
        rows.append(f'<FONT POINT-SIZE="10" COLOR="#343a40">{html.escape(" · ".join(detail))}</FONT>')
    if status is not None and status != "pending":
        rows.append(f'<FONT POINT-SIZE="9" COLOR="#212529">{html.escape(STATUS_LABELS.get(status, status))}</FONT>')
    attrs = {
        "label": "<" + "<BR/>".join(rows) + ">",
        "fillcolor": STATUS_COLOURS.get(status or "pending", "#ffffff"),
        "tooltip": f"{display} ({name})",
        "class": f"status-{status or 'planned'}" + (" critical" if critical else ""),
    }
    if critical:
        attrs.update(color=CRITICAL_COLOUR, penwidth="2.5")
    else:
        attrs.update(color="#495057", penwidth="1")
    return attrs


def _legend_label(statuses: Iterable[str] | None) -> str:
    cells = ['<TR><TD COLSPAN="2"><B>凡例 Legend</B></TD></TR>']
    if statuses is None:
        shown = ["pending"]
    else:
        present = set(statuses)
        shown = [s for s in STATUS_COLOURS if s in present]
    for s in shown:
        label = "未実行 planned" if statuses is None else STATUS_LABELS[s]
        cells.append(
            f'<TR><TD BGCOLOR="{STATUS_COLOURS[s]}" BORDER="1" COLOR="#495057" WIDTH="18"> </TD>'
            f'<TD ALIGN="LEFT">{html.escape(label)}</TD></TR>'
        )
    cells.append(
        f'<TR><TD BORDER="2" COLOR="{CRITICAL_COLOUR}" WIDTH="18"> </TD>'
        f'<TD ALIGN="LEFT"><FONT COLOR="{CRITICAL_COLOUR}">クリティカルパス critical path</FONT></TD></TR>'
    )
    return '<<TABLE BORDER="1" COLOR="#adb5bd" CELLBORDER="0" CELLSPACING="2" CELLPADDING="3">' + "".join(cells) + "</TABLE>>"


def _pipe(dot: Any, fmt: str, encoding: str | None = None) -> Any:
    graphviz = _graphviz()
    try:
        return dot.pipe(format=fmt, encoding=encoding)
    except graphviz.ExecutableNotFound:
        raise GraphvizNotFoundError(f"cannot render the plan as {fmt}: {INSTALL_HINT}") from None


def render_svg(plan: "WorkflowExecutionPlan", state: Any = None, **kwargs: Any) -> str:
    """The plan diagram as SVG text (keyword arguments as :func:`plan_to_graphviz`).

    Raises :class:`GraphvizNotFoundError` (with the install command) without ``dot``.
    """
    return _pipe(plan_to_graphviz(plan, state, **kwargs), "svg", "utf-8")


def render_png(plan: "WorkflowExecutionPlan", state: Any = None, *, dpi: int = 96, **kwargs: Any) -> bytes:
    """The plan diagram as PNG bytes at ``dpi`` (keyword arguments as :func:`plan_to_graphviz`).

    Raises :class:`GraphvizNotFoundError` (with the install command) without ``dot``.
    """
    return _pipe(plan_to_graphviz(plan, state, dpi=str(dpi), **kwargs), "png")
