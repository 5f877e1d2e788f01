"""Plans as graphviz diagrams, rendered by the real `dot` with a real CJK font."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import warnings
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from yukkuri_nb.core import StepStatus
from yukkuri_nb.demo import build_demo_engine
from yukkuri_nb.viz import plan as plan_viz
from yukkuri_nb.viz.plan import GraphvizNotFoundError, STATUS_COLOURS, plan_to_graphviz, render_png, render_svg

from ..analysis.workflows import diamond_engine, run_projects

@pytest.fixture
def dot_installed():
    """Fail, never skip, without Graphviz: a skip would hide broken SVG/PNG rendering."""
    if shutil.which("dot") is None:
        pytest.fail("Graphviz's `dot` is not installed; fix: run `make setup` (or `sudo apt-get install graphviz`)")


needs_dot = pytest.mark.usefixtures("dot_installed")
SVG = "{http://www.w3.org/2000/svg}"


def demo_plan():
    return build_demo_engine().plan_execution("complete_video_generation", "動画-1")


def _groups(svg: str, kind: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [g for g in root.iter(f"{SVG}g") if (g.get("class") or "").split()[:1] == [kind]]


def test_dot_source_has_a_cluster_per_phase_display_names_estimates_pools_and_cjk_font():
    plan = demo_plan()
    dot = plan.to_graphviz()
    src = dot.source
    assert type(dot).__name__ == "PlanDigraph"
    assert len(re.findall(r"subgraph cluster_phase_\d+", src)) == plan.total_phases == 4
    for name in ("テーマ選定", "スクリプト生成", "タイトル生成", "音声生成", "動画合成"):
        assert name in src
    assert "≈ 10m · storage, video_encoder" in src  # video_composition: 600 s, two pools
    assert src.count('fontname="Noto Sans CJK JP"') >= 3  # graph, node and edge defaults
    assert plan.to_dot() == src


@needs_dot
def test_svg_has_japanese_text_in_the_cjk_font_and_critical_path_edges_styled():
    plan = demo_plan()
    svg = render_svg(plan)
    assert "テーマ選定" in svg and "動画合成" in svg
    assert set(re.findall(r'font-family="([^"]+)"', svg)) == {"Noto Sans CJK JP"}
    critical_edges = set()
    for g in _groups(svg, "edge"):
        title = g.find(f"{SVG}title").text
        stroke = g.find(f"{SVG}path").get("stroke")
        if stroke == plan_viz.CRITICAL_COLOUR:
            critical_edges.add(title)
    ids = {s: f"n{k}" for k, s in enumerate(plan.graph.names)}
    cp = plan.critical_path
    assert cp == ["theme_selection", "script_generation", "tts_generation", "video_composition"]
    assert critical_edges == {f"{ids[a]}->{ids[b]}" for a, b in zip(cp, cp[1:])}
    critical_nodes = {g.find(f"{SVG}title").text for g in _groups(svg, "node") if "critical" in g.get("class")}
    assert critical_nodes == {ids[s] for s in cp}


@needs_dot
def test_live_status_colours_fill_the_nodes_and_the_legend_lists_them():
    engine, clock = diamond_engine(fail_a_once=False)
    run_projects(engine, clock, "p1")
    state = engine.get_execution_status("p1")
    state.step_statuses["c"] = StepStatus.FAILED  # pretend c failed, to see two colours
    plan = engine.plan_execution("diamond", "p1")
    svg = render_svg(plan, state)
    fills = {}
    for g in _groups(svg, "node"):
        cls = g.get("class").split()
        status = next((c.removeprefix("status-") for c in cls if c.startswith("status-")), None)
        shape = g.find(f".//{SVG}path")
        if status:
            fills[status] = shape.get("fill")
    assert fills == {"completed": STATUS_COLOURS["completed"], "failed": STATUS_COLOURS["failed"]}
    assert "完了 completed" in svg and "失敗 failed" in svg and "クリティカルパス critical path" in svg
    assert "凡例 Legend" in svg


@needs_dot
def test_png_renders_japanese_with_a_font_that_has_the_glyphs():
    plan = demo_plan()
    png = render_png(plan, {"theme_selection": "running"})
    image = Image.open(io.BytesIO(png)).convert("RGB")
    assert image.width > 400 and image.height > 150
    running = tuple(int(STATUS_COLOURS["running"][i:i + 2], 16) for i in (1, 3, 5))
    assert running in {c for _, c in image.getcolors(1 << 20)}
    # Ask dot which font file it actually used for the labels, and fontconfig
    # whether that file has the kanji and kana of the labels (no tofu).
    done = subprocess.run(
        ["dot", "-v", "-Tpng", "-o", "/dev/null"], input=plan.to_dot(), capture_output=True, text=True, check=True
    )
    used = re.findall(r'fontname: "Noto Sans CJK JP" resolved to: .* (/\S+)', done.stderr)
    assert used, done.stderr[-2000:]
    covering = subprocess.run(
        ["fc-list", ":charset=30c6 30fc 30de 9078 5b9a", "file"], capture_output=True, text=True, check=True
    ).stdout  # テ ー マ 選 定
    assert all(path in covering for path in used), (used, covering)


def test_without_dot_the_diagram_shows_its_source_and_warns_once(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere
    monkeypatch.setattr(plan_viz, "_warned_missing_dot", False)
    dot = demo_plan().to_graphviz()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = dot._repr_mimebundle_()
        second = dot._repr_mimebundle_()
    assert first == second == {"text/plain": dot.source}
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert "apt-get install graphviz" in messages[0]
    with pytest.raises(GraphvizNotFoundError, match=r"^cannot render the plan as svg: install Graphviz's `dot` executable"):
        render_svg(demo_plan())


def test_a_plan_built_by_keywords_is_drawn_without_a_graph():
    from yukkuri_nb.core import WorkflowExecutionPlan

    plan = WorkflowExecutionPlan(
        project_id="p", workflow_name="手作り", phases=[["a"], ["b", "c"]], total_phases=2,
        estimated_total_time=12.0, resource_requirements={"llm_api": {"b"}},
    )
    src = plan_to_graphviz(plan).source
    assert src.count("subgraph cluster_phase_") == 2
    assert "llm_api" in src and "->" not in src


def test_step_names_with_dot_syntax_are_safe_node_ids():
    from yukkuri_nb.core import WorkflowEngine
    from yukkuri_nb.core.workflow_step import WorkflowStepDefinition as W

    engine = WorkflowEngine()
    engine.register_workflow("odd", [W(name="a:b", display_name='"引用"<x>'), W(name="edge", dependencies=["a:b"])])
    src = engine.plan_execution("odd").to_dot()
    assert "n0 -> n1" in src
    assert "&quot;引用&quot;&lt;x&gt;" in src
