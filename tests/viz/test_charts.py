"""matplotlib charts: Japanese labels render (no missing glyphs), marks are where the data says."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from yukkuri_nb.analysis import steps_frame, sweep
from yukkuri_nb.viz import charts

from ..analysis.workflows import diamond_engine, run_projects, sleeper

CHARTS = ["gantt_chart", "concurrency_chart", "pool_utilisation_chart", "throughput_chart", "estimate_vs_actual_chart"]


@pytest.fixture(scope="module")
def paused_batch():
    engine, clock = diamond_engine(fail_a_once=True)
    run_projects(engine, clock, "p1", "p2", pause_at=0.5, resume_at=2.5)
    return engine


def _render(fig, svg: bool = False) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert charts.figure_to_png(fig, dpi=60).startswith(b"\x89PNG")
        if svg:
            assert "<svg" in charts.figure_to_svg(fig)
    return [str(w.message) for w in caught]


def test_the_glyph_check_can_fail():
    # A figure drawn with a Latin-only font warns about Japanese text: the
    # assertion in the next test is able to catch tofu.
    fig = Figure()
    fig.add_subplot().set_title("動画合成", fontfamily="DejaVu Sans")
    assert any("missing from font" in m for m in _render(fig))


@pytest.mark.parametrize("name", CHARTS)
@pytest.mark.parametrize("source_kind", ["engine", "steps_frame"])
def test_every_chart_renders_japanese_without_missing_glyphs(paused_batch, name, source_kind):
    source = paused_batch if source_kind == "engine" else steps_frame(paused_batch)
    fig = getattr(charts, name)(source)
    assert isinstance(fig, Figure)
    messages = _render(fig)
    assert not [m for m in messages if "missing from font" in m or "Glyph" in m], messages
    texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))]
    assert any(any("\u3040" <= ch <= "\u9fff" for ch in t) for t in texts), texts


def test_gantt_marks_the_critical_path_failed_attempts_and_the_pause(paused_batch):
    fig = charts.gantt_chart(paused_batch)
    ax = fig.axes[0]
    bars = [p for p in ax.patches if p.get_height() == pytest.approx(0.62)]
    assert len(bars) == 7  # 2 runs x 3 steps + one failed attempt of a
    red = [b for b in bars if to_hex(b.get_edgecolor()) == charts.CRITICAL_COLOUR]
    assert len(red) == 4  # b and c of each run: the critical path of diamond is b -> c
    assert sum(1 for b in bars if b.get_hatch()) == 1
    shaded = [p for p in ax.patches if to_hex(p.get_facecolor()) == charts.PAUSE_COLOUR]
    assert len(shaded) == 1
    assert (shaded[0].get_x(), shaded[0].get_x() + shaded[0].get_width()) == (0.5, 2.5)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["スロット 0", "スロット 1"]


def test_concurrency_chart_draws_the_limit(paused_batch):
    ax = charts.concurrency_chart(paused_batch, limit=4).axes[0]
    assert any(list(line.get_ydata()) == [4, 4] for line in ax.lines)
    assert "上限 max_concurrent_steps = 4" in [t.get_text() for t in ax.get_legend().get_texts()]


@pytest.fixture(scope="module")
def slow_video_run():
    """One diamond run whose c (動画合成, estimated 3 s) takes 6 s: gpu busy 0-3 of 9 s."""
    engine, clock = diamond_engine()
    engine.register_step_processor("c", sleeper(6))
    run_projects(engine, clock, "p1")
    return engine


def test_estimate_vs_actual_chart_draws_both_durations_and_their_ratio(slow_video_run):
    ax = charts.estimate_vs_actual_chart(slow_video_run).axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    widths = [p.get_width() for p in ax.patches]
    n = len(labels)
    estimates, actuals = dict(zip(labels, widths[:n])), dict(zip(labels, widths[n:]))
    assert estimates == {"音声合成": 2, "台本作成": 1, "動画合成": 3}
    assert actuals == {"音声合成": 2, "台本作成": 1, "動画合成": 6}
    assert "×2" in [t.get_text() for t in ax.texts]


def test_pool_utilisation_chart_shows_busy_over_capacity_times_makespan(slow_video_run):
    left, right = charts.pool_utilisation_chart(slow_video_run).axes
    assert [t.get_text() for t in left.get_yticklabels()] == ["gpu"]
    assert left.patches[0].get_width() == pytest.approx(100 * 3 / 9)  # b 2 s + a 1 s of a 9 s run, one unit
    assert "33%（容量 1）" in [t.get_text() for t in left.texts]
    gpu = next(line for line in right.lines if line.get_label() == "gpu")
    assert max(gpu.get_ydata()) == 1.0 and gpu.get_ydata()[-1] == 0.0  # full while a and b ran, idle during c


def test_throughput_chart_counts_every_completed_step_and_run(slow_video_run):
    fig = charts.throughput_chart(slow_video_run, bins=3)
    bars, twin = fig.axes
    cumulative = {line.get_label(): list(line.get_ydata()) for line in twin.lines}
    assert cumulative["累計完了ステップ"][-1] == 3 and cumulative["累計完了プロジェクト"][-1] == 1
    assert sum(p.get_height() * p.get_width() / 60 for p in bars.patches) == pytest.approx(3)  # steps/min x minutes


def test_gantt_of_a_result_has_a_row_per_step():
    engine, clock = diamond_engine()
    (result,) = run_projects(engine, clock, "p1")
    ax = charts.gantt_chart(result).axes[0]
    # a result knows no slots (one row per step, in start order) nor display names
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a", "c"]


def test_sweep_chart_plots_makespan_and_lower_bound_per_pool_setting():
    engine, _ = diamond_engine()
    df = sweep(engine, max_concurrent_values=[1, 2, 3], pool_capacities=[None, {"gpu": 2}], projects=2)
    fig = charts.sweep_chart(df)
    ax = fig.axes[0]
    assert len(ax.lines) == 2 * 2 + 1  # makespan and bound per setting, plus the legend's bound sample
    assert not [m for m in _render(fig, svg=True) if "missing from font" in m]


def test_empty_sources_give_an_empty_chart_not_an_error():
    engine, _ = diamond_engine()
    for name in CHARTS:
        fig = getattr(charts, name)(engine)
        assert "記録がありません" in " ".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))) \
            or "完了したステップがありません" in " ".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")))
        _render(fig)


def test_figures_display_as_png_and_never_import_pyplot():
    code = (
        "import sys, asyncio\n"
        "from yukkuri_nb.demo import build_demo_engine\n"
        "from yukkuri_nb.viz import charts\n"
        "e = build_demo_engine(scale=0.00002)\n"
        "asyncio.run(e.execute_workflow('complete_video_generation', 'p', {}))\n"
        "fig = charts.gantt_chart(e)\n"
        "assert fig._repr_png_().startswith(b'\\x89PNG')\n"
        "print('pyplot' if 'matplotlib.pyplot' in sys.modules else 'no pyplot')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no pyplot"
