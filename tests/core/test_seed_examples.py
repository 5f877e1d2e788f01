"""Every example of the seed design document, run as written (see seed.py for the only fixes)."""

from __future__ import annotations

import asyncio

import pytest

from yukkuri_nb.core import WorkflowEngine, WorkflowExecutionResult
from yukkuri_nb.core.workflow_step import StepProcessor, StepResult, StepStatus

from .seed import block, blocks, namespace, run_blocks, scaled_asyncio


class _Selection:
    def __init__(self, theme: str) -> None:
        self.selected_theme = theme
        self.candidates = [theme, "Gitの使い方", "Rust入門"]


class ThemeSelector:
    def select_theme(self, input_data):
        genres = input_data["user_preferences"]["preferred_genres"]
        return _Selection(f"{genres[0]}の基礎")


class _Script:
    def __init__(self, theme: str) -> None:
        self.segments = [f"霊夢「{theme}って何？」", "魔理沙「説明するぜ」"]


class ScriptGenerator:
    def generate(self, theme):
        return _Script(theme)


def _echo_processor(step: str, key: str):
    class _Proc(StepProcessor):
        async def execute(self, context, input_data):
            await asyncio.sleep(0)
            return StepResult.success(step, {key: f"{step} done"})

    return _Proc()


def test_blocks_are_found():
    assert len(blocks()) == 12
    assert "yukkuri_nb.core" in block(0) and "src.core" not in "".join(blocks())


def test_basic_usage_blocks_run_and_report_missing_processors(capsys):
    ns = run_blocks(namespace(), 0, 1, 2, 3)
    out = capsys.readouterr().out
    # Only two of four processors are registered in the seed: the run is refused
    # before any step starts, and the seed's handler prints the error.
    assert ns["result"] is None
    assert "ワークフロー実行エラー" in out
    assert "tts_generation, video_composition" in out
    engine = ns["workflow_engine"]
    assert engine.max_concurrent_steps == 3 and engine.default_timeout_seconds == 300


def test_basic_usage_completes_once_every_processor_and_provider_exists(capsys):
    ns = run_blocks(namespace(), 0, 1, 2)
    engine: WorkflowEngine = ns["workflow_engine"]
    engine.register_resource("theme_selector", ThemeSelector())
    engine.register_resource("script_generator", ScriptGenerator())
    engine.register_step_processor("tts_generation", _echo_processor("tts_generation", "audio"))
    engine.register_step_processor("video_composition", _echo_processor("video_composition", "video"))
    run_blocks(ns, 3)
    result = ns["result"]
    out = capsys.readouterr().out
    assert isinstance(result, WorkflowExecutionResult)
    assert result.is_successful, result.error_summary
    assert "✅ ワークフロー完了: 100.0%" in out
    assert "📊 進捗: 100.0% (4/4)" in out
    assert result.step_results["theme_selection"].output_data == {"selected_theme": "プログラミングの基礎"}
    assert result.step_results["script_generation"].metadata == {"script_length": 2}


def test_basic_usage_without_providers_fails_clearly(capsys):
    ns = run_blocks(namespace(), 0, 1, 2)
    engine: WorkflowEngine = ns["workflow_engine"]
    for step in ("tts_generation", "video_composition"):
        engine.register_step_processor(step, _echo_processor(step, step))
    run_blocks(ns, 3)
    result = ns["result"]
    out = capsys.readouterr().out
    assert result.status is StepStatus.FAILED
    assert result.failed_steps == 1 and result.skipped_steps == 3
    assert "theme_selector" in result.error_summary["theme_selection"]
    assert "register_resource" in result.error_summary["theme_selection"]
    assert "成功率: 0.0%" in out


def _complete_namespace():
    ns = namespace()
    run_blocks(ns, 0, 1, 2)  # ThemeSelectionProcessor, ScriptGenerationProcessor
    ns["TitleGenerationProcessor"] = type(_echo_processor("title_generation", "title"))
    ns["TTSGenerationProcessor"] = type(_echo_processor("tts_generation", "audio"))
    ns["VideoCompositionProcessor"] = type(_echo_processor("video_composition", "video"))
    run_blocks(ns, 7)
    return ns


def test_complete_workflow_example(capsys):
    ns = _complete_namespace()
    original_init = ns["VideoGenerationWorkflow"].__init__

    def init(self):
        original_init(self)
        self.workflow_engine.register_resource("theme_selector", ThemeSelector())
        self.workflow_engine.register_resource("script_generator", ScriptGenerator())

    ns["VideoGenerationWorkflow"].__init__ = init
    result = asyncio.run(ns["run_complete_video_workflow"]())
    out = capsys.readouterr().out
    assert result.is_successful, result.error_summary
    assert result.total_steps == 5 and result.completed_steps == 5
    assert "フェーズ数: 4" in out
    assert "フェーズ2: script_generation, title_generation" in out
    assert "📊 ワークフロー実行レポート" in out
    assert "最終ステータス: completed" in out
    assert "残り推定時間: 0.0秒" in out
    # the plan's estimate: all three LLM steps share one default unit of llm_api
    assert "推定時間: 1050.0秒" in out  # llm_api has one unit: title waits for script


def test_workflow_control_example_on_unregistered_engine_reports_error(capsys):
    ns = run_blocks(namespace(asyncio=scaled_asyncio(0.01)), 0, 8)
    asyncio.run(ns["workflow_control_example"]())
    out = capsys.readouterr().out
    assert "ワークフローエラー: no workflow named 'yukkuri_video_generation' is registered" in out


class _SlowSeedEngine(WorkflowEngine):
    """The seed's engine with the seed's 4-step workflow registered and slow simulated steps."""

    step_seconds = 0.2
    started: list[str] = []
    instances: list["_SlowSeedEngine"] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        type(self).instances.append(self)
        ns = run_blocks(namespace(WorkflowEngine=WorkflowEngine), 0, 1)
        self.register_workflow("yukkuri_video_generation", ns["workflow_steps"])
        for step in ns["workflow_steps"]:
            self.register_step_processor(step.name, self._slow(step.name))

    def _slow(self, name):
        async def run(context, input_data):
            type(self).started.append(name)
            await asyncio.sleep(self.step_seconds)
            return {name: True}

        return run


def test_workflow_control_example_pauses_and_resumes(capsys):
    _SlowSeedEngine.started = []
    _SlowSeedEngine.instances = []
    ns = namespace(asyncio=scaled_asyncio(0.1))
    run_blocks(ns, 0)
    ns["WorkflowEngine"] = _SlowSeedEngine
    run_blocks(ns, 8)
    asyncio.run(ns["workflow_control_example"]())
    out = capsys.readouterr().out
    assert "現在の進捗: " in out
    kinds = [(e.kind.value, e.step) for e in _SlowSeedEngine.instances[-1].events("controllable-project")]
    paused = kinds.index(("paused", None))
    resumed = kinds.index(("resumed", None))
    assert paused < resumed
    assert not [k for k in kinds[paused:resumed] if k[0] == "step_started"]
    assert "🔄 ワークフローを一時停止しました" in out
    assert "▶️ ワークフローを再開しました" in out
    assert "ワークフロー完了: True" in out
    assert _SlowSeedEngine.started == ["theme_selection", "script_generation", "tts_generation", "video_composition"]


def test_robust_runner_gives_up_on_unknown_workflow(capsys):
    ns = namespace(asyncio=scaled_asyncio(0.001))
    run_blocks(ns, 0, 9)
    assert asyncio.run(ns["run_robust_workflow"]()) is None
    out = capsys.readouterr().out
    assert out.count("⚙️ ワークフローエンジンエラー") == 4  # first try + 3 retries
    assert "回復不可能なエラー" in out


def test_robust_runner_retries_a_partial_failure_until_success(capsys):
    ns = namespace(asyncio=scaled_asyncio(0.001))
    run_blocks(ns, 0, 9)
    engine = _SlowSeedEngine()
    engine.step_seconds = 0
    attempts = {"n": 0}

    async def flaky(context, input_data):
        attempts["n"] += 1
        if attempts["n"] < 3:
            raise RuntimeError("TTSサーバーが混雑しています")
        return {"audio": "ok"}

    engine.register_step_processor("tts_generation", flaky)
    runner = ns["RobustWorkflowRunner"](engine)
    result = asyncio.run(runner.execute_with_error_handling("yukkuri_video_generation", "robust-test", {"robust_mode": True}))
    out = capsys.readouterr().out
    assert result.is_successful
    assert out.count("⚠️ 部分的失敗: ['tts_generation', 'video_composition']") == 2
    assert "✅ ワークフロー成功 (試行 3)" in out
    assert "失敗ステップ: tts_generation" in out  # the error-aware callback saw step_statuses


def test_optimized_engine_example(capsys):
    ns = namespace()
    run_blocks(ns, 0)
    ns["WorkflowEngine"] = _SlowSeedEngine
    run_blocks(ns, 10)
    base = ns["OptimizedWorkflowEngine"]

    class Completed(base):  # helpers the seed's example calls but never defines
        def _sort_steps_by_resource_efficiency(self, steps):
            return sorted(steps)

        async def _pre_allocate_resources(self, plan):
            return None

    ns["OptimizedWorkflowEngine"] = Completed
    _SlowSeedEngine.step_seconds = 0.01
    result = asyncio.run(ns["run_optimized_workflow"]())
    out = capsys.readouterr().out
    assert result.is_successful
    assert "⚡ 最適化実行完了" in out
    assert "⚡ スループット" in out


def test_smart_resource_manager_example():
    ns = namespace()
    run_blocks(ns, 0, 11)
    rm = ns["smart_resource_manager"]
    engine = ns["workflow_engine"]
    assert engine.max_concurrent_steps == 4
    assert rm.resource_pool == {"llm_api": 3, "tts_api": 2, "video_encoder": 1, "storage": 5}
    assert rm.capacity("tts_api") == 2  # the subclass's assignment took effect

    async def scenario():
        # Fill tts_api (2/2 in use): the next smart acquire sees >80% use and grows the pool.
        assert await rm.acquire_resource("tts_api")
        assert await rm.acquire_resource("tts_api")
        assert await rm.acquire_resource_smart("tts_api", "tts_generation")
        assert rm.resource_pool["tts_api"] == 3 and rm.in_use("tts_api") == 3
        for _ in range(3):
            rm.release_resource("tts_api")
        assert rm.in_use("tts_api") == 0

    asyncio.run(scenario())


def test_dataclass_listings_match_the_api():
    """Blocks 4-6 list fields and methods; every one exists on our classes."""
    from yukkuri_nb.core import WorkflowExecutionPlan, WorkflowExecutionState

    names = {
        WorkflowExecutionState: ["project_id", "workflow_name", "total_steps", "completed_steps", "failed_steps",
                                 "running_steps", "pending_steps", "skipped_steps", "started_at", "completed_at",
                                 "is_cancelled", "is_paused", "completion_percentage", "estimate_remaining_time",
                                 "get_status_summary"],
    }
    engine = _SlowSeedEngine()

    async def go():
        handle = engine.start("yukkuri_video_generation", "listing")
        await asyncio.sleep(0)
        state = engine.get_execution_status("listing")
        for attr in names[WorkflowExecutionState]:
            assert hasattr(state, attr), attr
        return await handle

    result = asyncio.run(go())
    for attr in ["project_id", "workflow_name", "status", "total_steps", "completed_steps", "failed_steps",
                 "execution_time_seconds", "step_results", "is_successful", "success_rate", "completion_percentage"]:
        assert hasattr(result, attr), attr
    plan = WorkflowExecutionPlan(project_id="p", workflow_name="w", phases=[["a"], ["b", "c"]], total_phases=2,
                                 estimated_total_time=1.0, resource_requirements={"llm_api": {"b"}})
    assert plan.get_phase_steps(1) == ["b", "c"] and plan.get_step_phase("c") == 1
    with pytest.raises(KeyError, match=r"step 'z' is not in the plan of 'w'"):
        plan.get_step_phase("z")
