"""The ``yukkuri_video`` workflow: step definitions and registration on an engine.

::

    theme_selection ─┬─ script_generation ── tts_generation ── subtitle_generation ─┐
                     └─ title_generation ──┬────────────────────────────────────────┴─ video_composition
                                           └─ thumbnail_generation

Pools follow the seed: ``llm_api`` (theme, script, title: remote LLMs are the
bottleneck there), ``tts_api``, ``video_encoder`` and ``storage``.  Estimated
durations are what the offline providers take on a 2-core machine, scaled by
the video's length and resolution (measured, see the module constants).

Example::

    engine = WorkflowEngine(max_concurrent_steps=3)
    register_yukkuri_workflow(engine, output_dir="out")
    result = await engine.execute_workflow("yukkuri_video", "p1", {
        "user_preferences": {"preferred_genres": ["プログラミング"], "target_audience": "初心者"},
        "target_length_minutes": 1,
        "video_settings": {"resolution": "1280x720"},
    })

Note: the engine keys processors by step name, engine-wide.  Registering the
workflow twice on one engine (under two names, with different ``output_dir``
or providers) leaves the processors of the last registration in charge of both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import PipelineEnvironmentError
from .models import parse_size
from .processors import STEP_NAMES, make_processors
from .providers import Providers, default_providers

__all__ = ["yukkuri_steps", "register_yukkuri_workflow", "DEFAULT_POOL_CAPACITIES", "WORKFLOW_NAME"]

WORKFLOW_NAME = "yukkuri_video"

# Pools the workflow sets up when the engine has not declared them itself.
# One encoder at a time: x264 already uses both cores of the reference machine.
DEFAULT_POOL_CAPACITIES = {"llm_api": 2, "tts_api": 1, "video_encoder": 1, "storage": 4}

# Measured on the reference machine (2 cores, `make-video --minutes 1` at
# 1080p): Open JTalk takes ~0.2 s per line and a line lasts ~3.6 s of video;
# x264 'veryfast' takes ~10.5 ms per 1080p frame and drawing a distinct frame
# ~75 ms (two per line: mouth open and shut).
_SECONDS_PER_LINE = 0.2
_VIDEO_SECONDS_PER_LINE = 3.6
_ENCODE_SECONDS_PER_FRAME_1080P = 0.0105
_DRAW_SECONDS_PER_FRAME_1080P = 0.075


def _estimates(minutes: float, size: tuple[int, int], fps: int) -> dict[str, float]:
    lines = max(3.0, minutes * 60.0 / _VIDEO_SECONDS_PER_LINE)
    pixels = size[0] * size[1] / (1920 * 1080)
    frames = (minutes * 60.0 + 2.5) * fps
    video = frames * _ENCODE_SECONDS_PER_FRAME_1080P * pixels + 2 * lines * _DRAW_SECONDS_PER_FRAME_1080P * pixels
    return {
        "theme_selection": 0.2,
        "script_generation": 0.5,
        "title_generation": 0.2,
        "tts_generation": round(1.0 + lines * _SECONDS_PER_LINE, 1),
        "subtitle_generation": 0.1,
        "video_composition": round(1.0 + video, 1),
        "thumbnail_generation": 1.2,
    }


def yukkuri_steps(
    *, target_minutes: float = 1.0, resolution: str | tuple[int, int] = (1920, 1080), fps: int = 30
) -> list[Any]:
    """The seven :class:`WorkflowStepDefinition` objects of the yukkuri workflow.

    Args:
        target_minutes, resolution, fps: the typical video, used only to make
            ``estimated_duration`` realistic (plans, ETAs, simulations).
    """
    from yukkuri_nb.core.workflow_step import RetryPolicy, StepPriority, WorkflowStepDefinition

    from .errors import PipelineEnvironmentError as _Remote

    size = parse_size(resolution)
    est = _estimates(target_minutes, size, fps)
    # Remote providers fail transiently (network, rate limits): retry those, never bad input.
    remote_retry = RetryPolicy(max_retries=2, retry_delay=2.0, jitter=0.2, retry_on=(_Remote,))

    def step(name, display, deps, priority, timeout, pools, **extra):
        return WorkflowStepDefinition(
            name=name,
            display_name=display,
            dependencies=deps,
            priority=priority,
            timeout_seconds=timeout,
            required_resources=set(pools),
            estimated_duration=est[name],
            **extra,
        )

    steps = [
        step("theme_selection", "テーマ選定", [], StepPriority.HIGH, 120, {"llm_api"},
             description="好みに合うテーマを選ぶ"),
        step("script_generation", "台本生成", ["theme_selection"], StepPriority.HIGH, 600, {"llm_api"},
             retry_policy=remote_retry, description="霊夢と魔理沙の掛け合い台本を書く"),
        step("title_generation", "タイトル生成", ["theme_selection"], StepPriority.NORMAL, 180, {"llm_api"},
             retry_policy=remote_retry, description="動画タイトルとサムネイル文言を作る"),
        step("tts_generation", "音声合成", ["script_generation"], StepPriority.NORMAL, 1800, {"tts_api"},
             description="台本を一行ずつ読み上げ、音声トラックにまとめる"),
        step("subtitle_generation", "字幕生成", ["tts_generation"], StepPriority.NORMAL, 120, {"storage"},
             description="実際の音声の長さから字幕 (.srt) を作る"),
        step("video_composition", "動画合成", ["subtitle_generation", "title_generation"], StepPriority.LOW, 7200,
             {"video_encoder", "storage"}, description="背景・キャラクター・字幕・音声を mp4 にする"),
        step("thumbnail_generation", "サムネイル作成", ["title_generation"], StepPriority.LOW, 300, {"storage"},
             description="1280x720 のサムネイル画像を作る"),
    ]
    assert tuple(s.name for s in steps) == STEP_NAMES
    return steps


def register_yukkuri_workflow(
    engine: Any,
    name: str = WORKFLOW_NAME,
    *,
    output_dir: str | Path,
    providers: Providers | None = None,
    pool_capacities: dict[str, int] | None = None,
    target_minutes: float = 1.0,
    resolution: str | tuple[int, int] = (1920, 1080),
    fps: int = 30,
) -> list[Any]:
    """Register the yukkuri workflow and its processors on ``engine``.

    Args:
        engine: a :class:`yukkuri_nb.core.WorkflowEngine`.
        name: the workflow's name.
        output_dir: where project folders are created (made if missing).
        providers: the providers to use (default: :func:`default_providers`, all offline).
        pool_capacities: capacities to set; by default, pools the engine's
            resource manager has not declared get :data:`DEFAULT_POOL_CAPACITIES`
            (pools the user declared are left alone).
        target_minutes, resolution, fps: the typical video, for the estimates.

    Returns:
        the registered step definitions.

    Raises:
        PipelineEnvironmentError: ``output_dir`` cannot be created.
    """
    output = Path(output_dir)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipelineEnvironmentError(
            f"cannot create the output folder {output} ({exc.strerror})",
            field="output_dir",
            fix="choose a writable folder",
        ) from exc
    providers = providers or default_providers()
    steps = yukkuri_steps(target_minutes=target_minutes, resolution=resolution, fps=fps)
    engine.register_workflow(name, steps)
    for step_name, processor in make_processors(providers, output).items():
        engine.register_step_processor(step_name, processor)

    declared = getattr(getattr(engine, "resource_manager", None), "resource_pool", {})
    capacities = pool_capacities if pool_capacities is not None else {
        pool: units for pool, units in DEFAULT_POOL_CAPACITIES.items() if pool not in declared
    }
    for pool, units in capacities.items():
        engine.set_pool_capacity(pool, units)
    return steps
