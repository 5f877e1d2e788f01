"""The seed's ``complete_video_generation`` workflow with simulated processors.

Each step sleeps ``scale`` x its estimated duration (so a 600 s estimate at
the default scale of 0.005 sleeps 3 s).  Used by ``yukkuri-nb demo`` to show
the engine (plan, live progress, final report) without the video toolchain.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from .core import WorkflowEngine, WorkflowExecutionResult
from .core.workflow_step import ResourceManager, StepPriority, StepResult, WorkflowStepDefinition

__all__ = ["seed_steps", "build_demo_engine", "format_report"]


def seed_steps() -> list[WorkflowStepDefinition]:
    """The five steps of the seed document's complete workflow."""
    W = WorkflowStepDefinition
    return [
        W(name="theme_selection", display_name="テーマ選定", priority=StepPriority.HIGH, timeout_seconds=120,
          required_resources={"llm_api"}, estimated_duration=30.0),
        W(name="script_generation", display_name="スクリプト生成", dependencies=["theme_selection"],
          priority=StepPriority.HIGH, timeout_seconds=300, required_resources={"llm_api"}, estimated_duration=120.0),
        W(name="title_generation", display_name="タイトル生成", dependencies=["theme_selection"],
          timeout_seconds=180, required_resources={"llm_api"}, estimated_duration=60.0),
        W(name="tts_generation", display_name="音声生成", dependencies=["script_generation"],
          timeout_seconds=900, required_resources={"tts_api"}, estimated_duration=300.0),
        W(name="video_composition", display_name="動画合成", dependencies=["tts_generation", "title_generation"],
          priority=StepPriority.LOW, timeout_seconds=1200, required_resources={"video_encoder", "storage"},
          estimated_duration=600.0),
    ]


_THEMES = ["Pythonの非同期処理入門", "はじめての機械学習", "Gitのブランチ戦略", "SQLのインデックス", "Rustの所有権"]


def _simulated(step: WorkflowStepDefinition, scale: float, rng: random.Random):
    async def process(context: Any, input_data: dict[str, Any]) -> StepResult:
        total = step.estimated_duration * scale * rng.uniform(0.8, 1.2)
        ticks = 5
        for k in range(ticks):
            await context.checkpoint()
            await asyncio.sleep(total / ticks)
            context.report_progress((k + 1) / ticks, f"{step.display_name} {k + 1}/{ticks}")
        outputs: dict[str, Any] = {f"{step.name}_done": True}
        if step.name == "theme_selection":
            outputs["selected_theme"] = rng.choice(_THEMES)
        elif step.name == "script_generation":
            outputs["script"] = [f"霊夢「{input_data['selected_theme']}について教えて」", "魔理沙「任せるんだぜ」"]
        elif step.name == "title_generation":
            outputs["title"] = f"【ゆっくり解説】{input_data['selected_theme']}"
        return StepResult.success(step.name, outputs, {"simulated_seconds": total})

    return process


def build_demo_engine(*, scale: float = 0.005, max_concurrent_steps: int = 3, seed: int = 0) -> WorkflowEngine:
    """An engine with the seed workflow, the seed's pools and simulated processors."""
    rm = ResourceManager({"llm_api": 3, "tts_api": 2, "video_encoder": 1, "storage": 5})
    engine = WorkflowEngine(resource_manager=rm, max_concurrent_steps=max_concurrent_steps, default_timeout_seconds=600, seed=seed)
    steps = seed_steps()
    engine.register_workflow("complete_video_generation", steps)
    rng = random.Random(seed)
    for step in steps:
        engine.register_step_processor(step.name, _simulated(step, scale, rng))
    return engine


def format_report(result: WorkflowExecutionResult) -> str:
    """The seed's ``_print_execution_report`` as text."""
    lines = [
        "=" * 60,
        "📊 ワークフロー実行レポート",
        "=" * 60,
        f"プロジェクトID: {result.project_id}",
        f"ワークフロー名: {result.workflow_name}",
        f"最終ステータス: {result.status.value}",
        f"実行時間: {result.execution_time_seconds:.1f}秒",
        f"成功率: {result.success_rate:.1%}",
        f"完了率: {result.completion_percentage:.1f}%",
        "",
        "📝 ステップ別結果:",
    ]
    for name, r in result.step_results.items():
        icon = "✅" if r.is_successful else "❌"
        lines.append(f"  {icon} {name}: {r.status.value}")
        if r.execution_time:
            lines.append(f"      実行時間: {r.execution_time:.1f}秒")
        if not r.is_successful and r.error_message:
            lines.append(f"      エラー: {r.error_message}")
    return "\n".join(lines)
