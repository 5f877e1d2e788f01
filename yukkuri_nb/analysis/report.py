"""A self-contained HTML performance report of a run or a batch.

:func:`performance_report` writes one HTML file that opens offline: the plan
diagram is inline SVG, the charts are inline PNG (``data:`` URIs), the styles
are inline; there is no script, no CDN and no external URL.
"""

from __future__ import annotations

import base64
import html
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .frames import collect_runs, steps_frame
from .metrics import pool_utilisation, summary

__all__ = ["performance_report"]

_CSS = """
body { font-family: "Noto Sans CJK JP", "Hiragino Sans", "Yu Gothic", "Meiryo", sans-serif;
       margin: 2em auto; max-width: 1200px; color: #212529; line-height: 1.5; padding: 0 1em; }
h1 { font-size: 1.6em; border-bottom: 3px solid #1c7ed6; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-left: 5px solid #1c7ed6; padding-left: .5em; }
.meta { color: #868e96; font-size: .9em; }
.cards { display: flex; flex-wrap: wrap; gap: .8em; }
.card { border: 1px solid #dee2e6; border-radius: 8px; padding: .6em 1em; min-width: 9em; background: #f8f9fa; }
.card .v { font-size: 1.4em; font-weight: bold; }
.card .k { font-size: .8em; color: #495057; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #dee2e6; padding: .25em .6em; text-align: right; }
th { background: #f1f3f5; }
td:first-child, th:first-child { text-align: left; }
.status-failed { color: #c92a2a; font-weight: bold; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #f1f3f5; }
.plan svg { max-width: 100%; height: auto; }
pre { background: #f8f9fa; padding: 1em; overflow-x: auto; font-size: .8em; }
.note { color: #e8590c; }
"""


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1000 else f"{x:,.0f}"
    return str(x)


def _png(fig: Any) -> str:
    from yukkuri_nb.viz.charts import figure_to_png

    data = base64.b64encode(figure_to_png(fig)).decode("ascii")
    try:
        fig.clear()
    except Exception:  # pragma: no cover - clearing is only to free memory
        pass
    return data


def _inline_svg(svg: str) -> str:
    # Drop the XML prolog and DOCTYPE (it names an external DTD URL); the
    # <svg> element itself is valid inline HTML5.
    svg = re.sub(r"<\?xml[^>]*\?>", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>", "", svg, flags=re.S)
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    return svg.strip()


def _engine_of(source: Any, engine: Any) -> Any:
    if engine is not None:
        return engine
    from .frames import _is_engine, _is_handle

    if _is_engine(source):
        return source
    if _is_handle(source):
        return source.engine
    if isinstance(source, (list, tuple)):
        for item in source:
            found = _engine_of(item, None)
            if found is not None:
                return found
    return None


def _plan_section(engine: Any, runs: list, out: list[str]) -> None:
    from yukkuri_nb.viz.plan import GraphvizNotFoundError, INSTALL_HINT, plan_to_graphviz

    seen: set[str] = set()
    for run in reversed(runs):  # latest run of each workflow colours its plan
        wf = run.workflow_name
        if not wf or wf in seen:
            continue
        seen.add(wf)
        try:
            plan = engine.plan_execution(wf, run.project_id)
        except Exception:
            continue
        state = engine.get_execution_status(run.project_id)
        dot = plan_to_graphviz(plan, state)
        out.append(f"<h3>{html.escape(wf)} <span class='meta'>（{html.escape(run.project_id)} の状態で着色）</span></h3>")
        try:
            from yukkuri_nb.viz.plan import _pipe

            out.append(f"<div class='plan'>{_inline_svg(_pipe(dot, 'svg', 'utf-8'))}</div>")
        except GraphvizNotFoundError:
            out.append(f"<p class='note'>{html.escape(INSTALL_HINT)}</p><pre>{html.escape(dot.source)}</pre>")


def _cards(s: dict[str, Any]) -> str:
    items = [
        ("所要時間 makespan", f"{_fmt(s['makespan'])} s"),
        ("プロジェクト runs", f"{s['completed_runs']} / {s['runs']}"),
        ("ステップ完了 steps", f"{s['completed']} / {s['steps']}"),
        ("失敗 failed", str(s["failed"])),
        ("スループット", f"{_fmt(s['steps_per_minute'])} steps/min"),
        ("平均待ち mean wait", f"{_fmt(s['mean_wait'])} s"),
        ("平均同時実行 mean concurrency", _fmt(s["mean_concurrency"])),
        ("最大同時実行 peak", f"{s['peak_concurrency']} / {_fmt(s['max_concurrent_steps'])}"),
        ("一時停止 paused", f"{_fmt(s['paused_seconds'])} s"),
    ]
    return "<div class='cards'>" + "".join(
        f"<div class='card'><div class='v'>{html.escape(v)}</div><div class='k'>{html.escape(k)}</div></div>" for k, v in items
    ) + "</div>"


def _table(df: pd.DataFrame) -> str:
    def cell(v: Any) -> Any:
        if isinstance(v, tuple):
            return ", ".join(map(str, v))
        if isinstance(v, float):
            return _fmt(v)
        return "–" if v is None or v is pd.NA else v

    return df.map(cell).to_html(index=False, escape=True, border=0, na_rep="–")


def performance_report(
    source: Any,
    path: str | Path | None = None,
    *,
    title: str | None = None,
    project_ids: str | Iterable[str] | None = None,
    engine: Any = None,
    sweep: pd.DataFrame | None = None,
) -> str:
    """Build a self-contained HTML performance report and return it (and write it to ``path``).

    Parameters:
        source: an engine (all its known runs, or ``project_ids``), a run
            handle, a result, a list of results / events, or a mix.
        path: where to write the HTML (UTF-8); ``None`` only returns it.
        title: the heading (default: workflow names).
        engine: the engine, when ``source`` is results or events, so the
            report can draw the plan and name steps.
        sweep: a frame from :func:`~yukkuri_nb.analysis.tuning.sweep` to add
            a tuning section.

    Sections: summary figures, the plan diagram (inline SVG, coloured by the
    latest run's status; the DOT source if Graphviz is missing), a Gantt chart,
    concurrency, pool utilisation, throughput, estimates vs actuals (inline
    PNG), the per-step and per-pool tables, errors, and the sweep.  Raises
    ``TypeError`` for an unknown source.
    """
    from yukkuri_nb.viz import charts

    engine = _engine_of(source, engine)
    runs = collect_runs(source, project_ids, engine=engine)
    sf = steps_frame(runs)
    s = summary(runs)
    workflows = list(dict.fromkeys(r.workflow_name for r in runs if r.workflow_name))
    heading = title or f"パフォーマンスレポート — {', '.join(workflows) or 'no runs'}"
    out: list[str] = [
        "<!DOCTYPE html>",
        "<html lang='ja'><head><meta charset='utf-8'>",
        f"<title>{html.escape(heading)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(heading)}</h1>",
        f"<p class='meta'>{len(runs)} run(s): {html.escape(', '.join(r.project_id for r in runs[:20]))}"
        f"{' …' if len(runs) > 20 else ''} — generated {datetime.now().astimezone().isoformat(timespec='seconds')}</p>",
        "<h2>概要 Summary</h2>",
        _cards(s),
    ]
    if engine is not None and runs:
        out.append("<h2>実行計画 Plan</h2>")
        _plan_section(engine, runs, out)
    figures = [
        ("ガントチャート Gantt", charts.gantt_chart(runs)),
        ("同時実行数 Concurrency", charts.concurrency_chart(runs)),
        ("リソースプール Pools", charts.pool_utilisation_chart(runs)),
        ("スループット Throughput", charts.throughput_chart(runs)),
        ("見積もり vs 実績 Estimates", charts.estimate_vs_actual_chart(sf)),
    ]
    out.append("<h2>グラフ Charts</h2>")
    for caption, fig in figures:
        out.append(
            f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{_png(fig)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    util = pool_utilisation(runs)
    if not util.empty:
        out += ["<h2>リソースプール Pools</h2>", _table(util)]
    if not sf.empty:
        cols = ["project_id", "display_name", "step", "status", "queued", "started", "finished", "wait",
                "duration", "estimate", "attempts", "pools", "slot", "error"]
        out += ["<h2>ステップ Steps</h2>", _table(sf[cols])]
        bad = sf[sf["status"].isin(["failed", "cancelled", "skipped"])]
        if not bad.empty:
            out += ["<h2>エラー Errors</h2>", _table(bad[["project_id", "display_name", "status", "attempts", "error"]])]
    if sweep is not None and len(sweep):
        out += [
            "<h2>チューニング Tuning</h2>",
            f"<figure><img alt='sweep' src='data:image/png;base64,{_png(charts.sweep_chart(sweep))}'></figure>",
            _table(sweep),
        ]
    out.append("</body></html>")
    text = "\n".join(out)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text
