"""matplotlib charts of recorded runs (Japanese labels, any backend).

Every function takes what :mod:`yukkuri_nb.analysis` takes (an engine, a run
handle, a result, a list of events or of those, or a steps / attempts frame)
and returns a :class:`matplotlib.figure.Figure`.  Figures are made without
``pyplot``: nothing is shown twice in Jupyter, nothing depends on the
interactive backend, and the Agg canvas is attached so ``fig.savefig(...)``
works head-less.

Japanese text: figures are :class:`JapaneseFigure`, which draw under a
``font.family`` of an installed CJK font (``Noto Sans CJK JP``) followed by
DejaVu Sans, so tick labels made at draw time get the font too and no glyph is
missing.  In Jupyter they display as PNG.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Any, Iterator, Mapping, Sequence

from .fonts import matplotlib_families

__all__ = [
    "gantt_chart",
    "concurrency_chart",
    "pool_utilisation_chart",
    "throughput_chart",
    "estimate_vs_actual_chart",
    "sweep_chart",
    "figure_to_png",
    "figure_to_svg",
    "JapaneseFigure",
]

CRITICAL_COLOUR = "#e03131"
PAUSE_COLOUR = "#868e96"
_PALETTE = ("#4dabf7", "#69db7c", "#ffa94d", "#b197fc", "#ffd43b", "#63e6be", "#f783ac", "#a9e34b", "#74c0fc", "#e599f7")


def _rc() -> dict[str, Any]:
    return {"font.family": matplotlib_families(), "axes.unicode_minus": False, "svg.fonttype": "path"}


def _figure_class() -> type:
    cls = globals().get("_JapaneseFigure")
    if cls is not None:
        return cls
    import matplotlib
    from matplotlib.figure import Figure

    class _JapaneseFigure(Figure):
        """A Figure that always draws with a CJK font family (see the module docstring)."""

        _yukkuri_rc: dict[str, Any] = {}

        def draw(self, renderer: Any) -> Any:
            with matplotlib.rc_context(self._yukkuri_rc):
                return super().draw(renderer)

        def _repr_png_(self) -> bytes:
            return figure_to_png(self)

    _JapaneseFigure.__name__ = _JapaneseFigure.__qualname__ = "JapaneseFigure"
    globals()["_JapaneseFigure"] = _JapaneseFigure
    return _JapaneseFigure


def __getattr__(name: str) -> Any:
    if name == "JapaneseFigure":  # built on first use: importing this module does not import matplotlib
        return _figure_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@contextlib.contextmanager
def _figure(figsize: tuple[float, float], **kw: Any) -> Iterator[Any]:
    """A new JapaneseFigure with an Agg canvas; everything made inside uses the CJK font."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    rc = _rc()
    with matplotlib.rc_context(rc):
        fig = _figure_class()(figsize=figsize, layout="constrained", **kw)
        fig._yukkuri_rc = rc
        FigureCanvasAgg(fig)
        yield fig


def figure_to_png(fig: Any, *, dpi: int = 110) -> bytes:
    """PNG bytes of a figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def figure_to_svg(fig: Any) -> str:
    """SVG text of a figure (text as paths, so it needs no font where it is opened)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path"}):
        fig.savefig(buf, format="svg")
    return buf.getvalue()


def _empty(ax: Any, message: str = "記録がありません (no recorded steps)") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#868e96")
    ax.set_xticks([])
    ax.set_yticks([])


def _intervals(source: Any) -> Any:
    from yukkuri_nb.analysis.metrics import busy_intervals

    return busy_intervals(source)


def _project_colours(projects: Sequence[str]) -> dict[str, str]:
    return {p: _PALETTE[k % len(_PALETTE)] for k, p in enumerate(dict.fromkeys(projects))}


# --------------------------------------------------------------------------- Gantt
def gantt_chart(
    source: Any,
    *,
    critical_path: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    paused: Sequence[tuple[float, float]] | None = None,
    title: str | None = None,
    figsize: tuple[float, float] | None = None,
) -> Any:
    """A Gantt chart with one row per concurrency slot.

    Each bar is one attempt, coloured by project and labelled with the step's
    display name; failed attempts are hatched; steps on their workflow's
    critical path have a red outline; paused intervals are shaded grey.
    Sources without slots (results) get one row per step instead.

    Parameters:
        critical_path: step names (or workflow -> step names) to mark;
            default: the critical paths the source knows (an engine does).
        paused: ``(start, end)`` seconds since the batch started to shade;
            default: the pauses recorded in the events.
    """
    iv = _intervals(source)
    crit: dict[str | None, set[str]] = {}
    if critical_path is None:
        crit = {wf: set(p) for wf, p in iv.attrs.get("critical_paths", {}).items()}
    elif isinstance(critical_path, Mapping):
        crit = {wf: set(p) for wf, p in critical_path.items()}
    else:
        crit = {None: set(critical_path)}
    if paused is None:
        origin = iv.attrs.get("origin", 0.0)
        paused = [(s - origin, e - origin) for _, s, e in iv.attrs.get("paused", [])]
    by_slot = not iv.empty and iv["slot"].notna().all()
    if by_slot:
        rows = sorted(int(s) for s in iv["slot"].unique())
        row_of = [rows.index(int(s)) for s in iv["slot"]]
        labels = [f"スロット {s}" for s in rows]
    else:
        keys = list(dict.fromkeys(zip(iv["project_id"], iv["display_name"])))
        row_of = [keys.index(k) for k in zip(iv["project_id"], iv["display_name"])]
        labels = [f"{d} ({p})" if len({k[0] for k in keys}) > 1 else str(d) for p, d in keys]
    n_rows = max(1, len(labels))
    size = figsize or (10, max(2.6, 0.9 + 0.5 * n_rows))
    with _figure(size) as fig:
        ax = fig.add_subplot()
        ax.set_title(title or ("ガントチャート（スロット別）" if by_slot else "ガントチャート（ステップ別）"))
        if iv.empty:
            _empty(ax)
            return fig
        horizon = max(iv.attrs.get("horizon", 0.0), float(iv["end"].max()))
        colours = _project_colours(list(iv["project_id"]))
        for (s, e) in paused:
            ax.axvspan(s, e, color=PAUSE_COLOUR, alpha=0.18, lw=0, zorder=0)
        any_crit = False
        for k, row in enumerate(iv.itertuples(index=False)):
            on_crit = row.step in crit.get(row.workflow_name, ()) or row.step in crit.get(None, ())
            any_crit |= on_crit
            failed = row.status == "failed"
            ax.barh(
                row_of[k], row.end - row.start, left=row.start, height=0.62,
                color=colours[row.project_id], hatch="///" if failed else None,
                edgecolor=CRITICAL_COLOUR if on_crit else "#495057", linewidth=2.2 if on_crit else 0.6, zorder=2,
            )
            if horizon and (row.end - row.start) / horizon > 0.07:
                ax.text((row.start + row.end) / 2, row_of[k], str(row.display_name), ha="center", va="center",
                        fontsize=8, clip_on=True, zorder=3)
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xlim(0, horizon * 1.01 if horizon else 1)
        ax.set_xlabel("経過時間（秒）")
        ax.grid(axis="x", alpha=0.3, zorder=0)
        from matplotlib.patches import Patch

        handles = [Patch(facecolor=c, edgecolor="#495057", label=str(p)) for p, c in list(colours.items())[:8]]
        if any_crit:
            handles.append(Patch(facecolor="white", edgecolor=CRITICAL_COLOUR, linewidth=2.2, label="クリティカルパス"))
        if paused:
            handles.append(Patch(facecolor=PAUSE_COLOUR, alpha=0.3, label="一時停止"))
        if (iv["status"] == "failed").any():
            handles.append(Patch(facecolor="white", edgecolor="#495057", hatch="///", label="失敗した試行"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return fig


# --------------------------------------------------------------------------- concurrency
def concurrency_chart(source: Any, *, limit: int | None = None, title: str | None = None) -> Any:
    """Steps running at once over time, against ``max_concurrent_steps`` (the limit).

    ``limit`` overrides the limit the source knows (an engine's current one).
    """
    from yukkuri_nb.analysis.metrics import concurrency_over_time

    iv = _intervals(source)
    conc = concurrency_over_time(iv, limit=limit)
    with _figure((9, 3.6)) as fig:
        ax = fig.add_subplot()
        ax.set_title(title or "同時実行数の推移")
        if iv.empty:
            _empty(ax)
            return fig
        horizon = iv.attrs.get("horizon", float(conc["t"].max()))
        t = list(conc["t"]) + [horizon]
        y = list(conc["running"]) + [conc["running"].iloc[-1]]
        ax.step(t, y, where="post", color="#1c7ed6", lw=1.6, label="実行中ステップ数")
        ax.fill_between(t, y, step="post", color="#1c7ed6", alpha=0.15)
        lim = conc["limit"].iloc[0]
        if not math.isnan(lim):
            ax.axhline(lim, color=CRITICAL_COLOUR, ls="--", lw=1.2, label=f"上限 max_concurrent_steps = {int(lim)}")
        busy = float((iv["end"] - iv["start"]).sum())
        if horizon:
            ax.axhline(busy / horizon, color="#495057", ls=":", lw=1, label=f"平均 {busy / horizon:.2f}")
        top = max(max(y), 0 if math.isnan(lim) else lim)
        ax.set_ylim(0, top + 1)
        ax.set_xlim(0, horizon or 1)
        ax.set_xlabel("経過時間（秒）")
        ax.set_ylabel("実行中ステップ数")
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    return fig


# --------------------------------------------------------------------------- pools
def pool_utilisation_chart(source: Any, *, capacities: Mapping[str, int] | None = None, title: str | None = None) -> Any:
    """Pool utilisation: a bar per pool (busy / (capacity x makespan)) and units in use over time."""
    from yukkuri_nb.analysis.metrics import pool_usage_over_time, pool_utilisation

    iv = _intervals(source)
    util = pool_utilisation(source, capacities)
    usage = pool_usage_over_time(iv, capacities)
    with _figure((11, 3.8)) as fig:
        fig.suptitle(title or "リソースプール使用率")
        left, right = fig.subplots(1, 2, width_ratios=[1, 2])
        if util.empty:
            _empty(left)
            _empty(right)
            return fig
        pct = [0.0 if math.isnan(u) else 100 * u for u in util["utilisation"]]
        colours = [_PALETTE[k % len(_PALETTE)] for k in range(len(util))]
        left.barh(list(util["pool"]), pct, color=colours, edgecolor="#495057", lw=0.6)
        for k, (p, cap) in enumerate(zip(pct, util["capacity"])):
            cap_text = "?" if math.isnan(cap) else f"{int(cap)}"
            left.text(p + 1, k, f"{p:.0f}%（容量 {cap_text}）", va="center", fontsize=8)
        left.set_xlim(0, 125)
        left.invert_yaxis()
        left.set_xlabel("使用率（%）")
        left.set_title("平均使用率", fontsize=10)
        horizon = iv.attrs.get("horizon", 0.0)
        for k, pool in enumerate(util["pool"]):
            u = usage[usage["pool"] == pool]
            if u.empty:
                continue
            cap = u["capacity"].iloc[0]
            t = list(u["t"]) + [horizon]
            y = list(u["in_use"]) + [u["in_use"].iloc[-1]]
            if not math.isnan(cap) and cap > 0:
                y = [v / cap for v in y]
            right.step(t, y, where="post", color=colours[k], lw=1.4, label=str(pool))
        right.axhline(1.0, color=CRITICAL_COLOUR, ls="--", lw=1, label="容量いっぱい")
        right.set_ylim(0, 1.15)
        right.set_xlim(0, horizon or 1)
        right.set_xlabel("経過時間（秒）")
        right.set_ylabel("使用中 / 容量")
        right.set_title("使用中ユニットの推移", fontsize=10)
        right.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        right.grid(alpha=0.3)
    return fig


# --------------------------------------------------------------------------- throughput
def throughput_chart(source: Any, *, bins: int = 20, window: float | None = None, title: str | None = None) -> Any:
    """Completed steps per minute in windows (bars) and cumulative completions (line)."""
    from yukkuri_nb.analysis.metrics import throughput

    tp = throughput(source, bins=bins, window=window)
    with _figure((9, 3.6)) as fig:
        ax = fig.add_subplot()
        ax.set_title(title or "スループット（完了ステップ数）")
        if tp.empty or tp["cumulative_steps"].iloc[-1] == 0:
            _empty(ax)
            return fig
        width = tp["end"] - tp["start"]
        ax.bar(tp["start"], tp["steps_per_minute"], width=width, align="edge", color="#74c0fc",
               edgecolor="#1c7ed6", lw=0.5, label="完了ステップ / 分")
        ax.set_xlabel("経過時間（秒）")
        ax.set_ylabel("完了ステップ / 分")
        twin = ax.twinx()
        twin.step(list(tp["end"]), list(tp["cumulative_steps"]), where="pre", color="#2b8a3e", lw=1.6, label="累計完了ステップ")
        if tp["cumulative_runs"].iloc[-1]:
            twin.step(list(tp["end"]), list(tp["cumulative_runs"]), where="pre", color="#e8590c", lw=1.2, ls="--",
                      label="累計完了プロジェクト")
        twin.set_ylabel("累計")
        twin.set_ylim(0, None)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = twin.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    return fig


# --------------------------------------------------------------------------- estimates
def estimate_vs_actual_chart(source: Any, *, title: str | None = None) -> Any:
    """Estimated vs actual duration per step (mean over runs), with the actual / estimate ratio.

    A log scale is used when the two differ by more than 20x (e.g. simulated
    processors that run a scaled-down version of the estimate).
    """
    from yukkuri_nb.analysis.frames import steps_frame

    sf = source if _is_steps_frame(source) else steps_frame(source)
    done = sf[(sf["status"] == "completed") & sf["duration"].notna() & ~sf["restored"].astype(bool)]
    with _figure((9, max(2.6, 1.0 + 0.55 * done["step"].nunique()))) as fig:
        ax = fig.add_subplot()
        ax.set_title(title or "見積もり vs 実績（ステップ別）")
        if done.empty:
            _empty(ax, "完了したステップがありません (no completed steps)")
            return fig
        g = done.groupby(["step", "display_name"], sort=False).agg(
            estimate=("estimate", "mean"), actual=("duration", "mean"), n=("duration", "size")
        ).reset_index()
        ys = range(len(g))
        h = 0.38
        est = g["estimate"].fillna(0.0)
        ax.barh([y - h / 2 for y in ys], est, height=h, color="#ced4da", edgecolor="#495057", lw=0.5, label="見積もり")
        ax.barh([y + h / 2 for y in ys], g["actual"], height=h, color="#4dabf7", edgecolor="#1c7ed6", lw=0.5, label="実績（平均）")
        positive = [v for v in list(est) + list(g["actual"]) if v > 0]
        if positive and max(positive) / min(positive) > 20:
            ax.set_xscale("log")
        for y, e, a in zip(ys, est, g["actual"]):
            if e > 0:
                ax.text(max(e, a) * 1.05, y, f"×{a / e:.3g}", va="center", fontsize=8, color="#495057")
        ax.set_yticks(list(ys), list(g["display_name"]))
        ax.invert_yaxis()
        ax.set_xlabel("所要時間（秒）")
        ax.margins(x=0.15)
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    return fig


def _is_steps_frame(obj: Any) -> bool:
    cols = getattr(obj, "columns", None)
    return cols is not None and {"step", "duration", "estimate", "status", "restored"} <= set(cols)


# --------------------------------------------------------------------------- tuning
def sweep_chart(frame: Any, *, title: str | None = None) -> Any:
    """Makespan against ``max_concurrent_steps`` for each pool setting of a sweep, with lower bounds.

    ``frame`` is what :func:`yukkuri_nb.analysis.tuning.sweep` returns.
    """
    with _figure((9, 4)) as fig:
        ax = fig.add_subplot()
        ax.set_title(title or "同時実行数と所要時間（チューニング）")
        if frame is None or len(frame) == 0:
            _empty(ax, "結果がありません (empty sweep)")
            return fig
        for k, (label, g) in enumerate(frame.groupby("pool_setting", sort=False)):
            g = g.sort_values("max_concurrent_steps")
            colour = _PALETTE[k % len(_PALETTE)]
            ax.plot(g["max_concurrent_steps"], g["makespan"], marker="o", color=colour, lw=1.8, label=f"{label}")
            ax.plot(g["max_concurrent_steps"], g["lower_bound"], ls="--", color=colour, lw=1, alpha=0.8)
        ax.plot([], [], ls="--", color="#495057", lw=1, label="下限 lower bound")
        ax.set_xlabel("max_concurrent_steps（同時実行数の上限）")
        ax.set_ylabel("所要時間 makespan（秒）")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylim(0, None)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, title="プール容量")
        ax.grid(alpha=0.3)
    return fig
