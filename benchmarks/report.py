"""The markdown table of a results document."""

from __future__ import annotations

from typing import Any


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.0f} µs"
        if value < 1:
            return f"{value * 1e3:.1f} ms"
        return f"{value:.2f} s"
    return f"{value:.4g}"


def markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    v = env["versions"]
    lines = [
        f"Machine: {env['machine']}; Python {v['python']}, pydantic {v['pydantic']}, dask {v['dask']}; "
        f"commit {env['commit'] or '?'}; {env['when']}" + (" — QUICK SMOKE RUN, figures meaningless" if doc["quick"] else ""),
        "",
        "| workload | contender medians | derived | target | met |",
        "|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        medians = ", ".join(f"{c} {_fmt(m, r['unit'])}" for c, m in r["medians"].items())
        derived = _derived(r)
        targets = r["targets"] or [{"name": "(informational)", "text": "", "met": None}]
        for k, t in enumerate(targets):
            met = "—" if t["met"] is None or doc["quick"] else ("yes" if t["met"] else "**no**")
            head = f"**{r['workload']}** {r['title']}" if k == 0 else ""
            lines.append(f"| {head} | {medians if k == 0 else ''} | {derived if k == 0 else ''} | {t['name']}: {t['text']} | {met} |")
        for note in r["notes"]:
            lines.append(f"| | | | note: {note} | |")
    return "\n".join(lines) + "\n"


def _derived(r: dict[str, Any]) -> str:
    m = r["metrics"]
    parts = []
    ups = m.get("us_per_step")
    if ups and r["workload"] != "E":
        parts.append("µs/step " + ", ".join(f"{c} {x:.1f}" for c, x in ups.items()))
    if r["workload"] == "E":
        for c, by_n in ups.items():
            parts.append(f"{c} µs/step " + " / ".join(f"{x:.1f}" for x in by_n.values()))
        for c, by_n in m["peak_bytes_per_step"].items():
            parts.append(f"{c} peak B/step " + " / ".join(f"{x:.0f}" for x in by_n.values()))
    if "engine_over_floor" in m:
        parts.append(f"engine/floor {m['engine_over_floor']:.2f}x")
    if "dask_over_engine" in m:
        parts.append(f"dask/engine {m['dask_over_engine']:.1f}x")
    if "over_ideal" in m:
        parts.append("over ideal " + ", ".join(f"{c} {x:.3f}" for c, x in m["over_ideal"].items()))
    if "median_over_lower_bound" in m:
        parts.append("median makespan/LB " + ", ".join(f"{c} {x:.3f}" for c, x in m["median_over_lower_bound"].items()))
        parts.append(f"engine better than FIFO on {m['instances_engine_better_than_fifo']} instances")
    if "throughput_vs_bound" in m:
        parts.append(f"bound {m['bottleneck_bound']:.0f} s; throughput/bound " + ", ".join(f"{c} {x:.3f}" for c, x in m["throughput_vs_bound"].items()))
    if "history_on_over_off" in m:
        parts.append(f"history on/off {m['history_on_over_off']:.2f}x")
    if "dashboard_over_plain" in m:
        parts.append(f"dashboard/plain {m['dashboard_over_plain']:.2f}x")
    return "; ".join(parts)
