"""The notebooks in notebooks/ run top to bottom on a real kernel, and produce what they claim.

Each one is executed with nbclient on this venv's ipykernel (see ``kernel.py``)
in a temporary directory, with widget state stored in the executed notebook,
then checked: outputs, widget models (buttons, bar styles), files written.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from .kernel import TIMEOUT, kernel_manager

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def execute(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        nb,
        km=kernel_manager(tmp_path),
        timeout=TIMEOUT,
        resources={"metadata": {"path": str(tmp_path)}},
        store_widget_state=True,
    )
    client.execute()
    return nb


def text_of(nb: nbformat.NotebookNode) -> str:
    """Everything the cells printed or returned as text/plain."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif "data" in out and "text/plain" in out.data:
                parts.append(out.data["text/plain"])
    return "\n".join(parts)


def outputs_with(nb: nbformat.NotebookNode, mime: str) -> list[Any]:
    return [out.data[mime] for cell in nb.cells for out in cell.get("outputs", []) if mime in out.get("data", {})]


def widget_models(nb: nbformat.NotebookNode) -> dict[str, dict[str, Any]]:
    return nb.metadata["widgets"][WIDGET_STATE]["state"]


def test_notebooks_carry_no_outputs_and_name_the_python3_kernel():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name} has outputs"
        assert nb.metadata.kernelspec.name == "python3"
    # the toolkit's three (other notebooks, e.g. the Dask one, are checked by their own tests)
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} >= {"01_quickstart.ipynb", "02_plans.ipynb", "03_performance.ipynb"}


@pytest.mark.timeout(300)
def test_quickstart_notebook_shows_live_dashboards_with_their_final_states(tmp_path):
    nb = execute("01_quickstart", tmp_path)
    text = text_of(nb)
    assert "paused: True | steps started since the pause: 0" in text
    assert "completed 7/7" in text
    assert "cancelled — 途中で中止しました" in text
    assert "completed completed" in text  # top-level await and the blocking form inside Jupyter
    assert "completed 4" in text
    assert re.search(r"run 'episode-1' \(yukkuri_video\): .*\n  . テーマ選定", text)
    # Displaying a handle shows a widget; its models are stored in the notebook.
    assert len(outputs_with(nb, WIDGET_VIEW)) == 2
    models = widget_models(nb)
    descriptions = [m["state"].get("description", "") for m in models.values() if m["model_name"] == "ButtonModel"]
    for word in ("一時停止 Pause", "再開 Resume", "中止 Cancel"):
        assert descriptions.count(word) >= 2, f"{word!r} buttons missing: {descriptions}"
    overall = [
        m["state"] for m in models.values()
        if m["model_name"] == "FloatProgressModel" and m["state"].get("description") == "全体 Overall"
    ]
    assert sorted(s.get("bar_style", "") for s in overall) == ["danger", "success", "success"]
    labels = [m["state"].get("value", "") for m in models.values() if m["model_name"] == "LabelModel"]
    assert any(v.startswith("完了 completed · 7/7 completed") for v in labels)
    assert any(v.startswith("中止 cancelled") for v in labels)
    plans = [m["state"].get("value", "") for m in models.values() if m["model_name"] == "HTMLModel"]
    assert any("<svg" in v and "動画合成" in v for v in plans), "no plan picture in the dashboard"


@pytest.mark.timeout(300)
def test_plans_notebook_draws_japanese_plans_as_svg_png_and_live_status(tmp_path):
    nb = execute("02_plans", tmp_path)
    svgs = outputs_with(nb, "image/svg+xml")
    assert len(svgs) == 3 and all("台本生成" in s for s in svgs)
    assert svgs[1] != svgs[2]  # coloured by a running, then a finished state
    out = tmp_path / "out" / "plans"
    assert "動画合成" in (out / "plan.svg").read_text(encoding="utf-8")
    assert (out / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "plan_done.svg").read_text(encoding="utf-8") != (out / "plan.svg").read_text(encoding="utf-8")
    text = text_of(nb)
    assert "digraph" in text and "critical path: theme_selection → script_generation" in text
    fast, slow = map(float, re.search(r"=3: ([\d.]+)s, =1: ([\d.]+)s", text).groups())
    assert slow > fast
    by_schedule = {k: float(v) for k, v in re.findall(r"schedule='([a-z-]+)': ([\d.]+)s", text)}
    assert set(by_schedule) == {"priority", "critical-path", "fifo"}
    assert by_schedule["priority"] == pytest.approx(slow, abs=0.05)  # the plan follows the default schedule


@pytest.mark.timeout(300)
def test_performance_notebook_builds_frames_charts_a_sweep_and_an_offline_report(tmp_path):
    nb = execute("03_performance", tmp_path)
    out = tmp_path / "out" / "performance"
    for name in ("gantt", "concurrency", "pools", "throughput", "estimates"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    report = (out / "report.html").read_text(encoding="utf-8")
    assert report.startswith("<!DOCTYPE html>") and "ゆっくり動画 パフォーマンスレポート" in report
    assert "<svg" in report and "data:image/png;base64," in report
    assert not re.search(r"""(src|href)\s*=\s*["']https?://""", report), "the report must open offline"
    text = text_of(nb)
    assert "episode-3" in text and re.search(r"fastest: max_concurrent_steps=\d+", text)
    assert re.search(r"real makespan [\d.]+s, simulated [\d.]+s", text)
    tables = outputs_with(nb, "text/html")
    assert any("lower_bound" in t and "efficiency" in t for t in tables)  # the sweep frame
    assert any("display_name" in t and "音声合成" in t for t in tables)  # the steps frame
    assert len(outputs_with(nb, "image/png")) >= 2  # Gantt and sweep charts shown inline


@pytest.mark.timeout(300)
def test_dask_notebook_runs_the_pipeline_on_a_local_cluster(tmp_path):
    pytest.importorskip("distributed", reason="the dask extra is part of dev: pip install -e '.[dev]'")
    nb = execute("04_dask", tmp_path)
    text = text_of(nb)
    assert "workers: 2 | Dask dashboard: True" in text
    assert "completed 7/7" in text
    ran_on = re.findall(r"^(\w+) +running on Dask worker tcp://\S+ \(pid (\d+)\)$", text, re.M)
    assert len(ran_on) == 7 and {step for step, _ in ran_on} >= {"tts_generation", "video_composition"}
    assert "video.mp4 True True" in text
    assert (tmp_path / "out" / "dask" / "dask-episode" / "video.mp4").stat().st_size > 10_000
    assert "primes: [2262, 2262, 2262, 2262]" in text
    assert "ran in the kernel: True | worker processes used: 2 | none is the kernel: True" in text
    assert len(outputs_with(nb, WIDGET_VIEW)) == 1  # the run's dashboard
    assert any("Dask dashboard</a>" in html for html in outputs_with(nb, "text/html"))


def test_kernel_manager_runs_this_interpreter(tmp_path):
    assert kernel_manager(tmp_path).kernel_spec.argv[:3] == [sys.executable, "-m", "ipykernel_launcher"]
