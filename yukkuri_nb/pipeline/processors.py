"""The step processors of the yukkuri workflow: ``fn(context, input_data) -> dict``.

Each processor reads what it needs from ``input_data`` (the run's initial
input merged with upstream outputs, see :mod:`.inputs`), delegates to its
provider in a worker thread (:func:`.worker.run_in_worker`: the event loop
never blocks, pause and cancel are honoured between units of work), writes its
artifacts into the project folder, records itself in ``summary.json`` and
returns JSON-serialisable outputs for the steps after it.

Outputs by step::

    theme_selection       selected_theme (Theme dict), theme_candidates, project_dir
    script_generation     script (Script dict), script_path
    title_generation      title, thumbnail_text, title_info (TitleInfo dict)
    tts_generation        audio_track (AudioTrack dict), audio_path, audio_duration
    subtitle_generation   subtitles_path, subtitle_cues
    video_composition     video_path, video (encoder stats)
    thumbnail_generation  thumbnail_path, thumbnail (image stats)

A :class:`~.errors.PipelineError` raised anywhere below gets the step's name
filled in, so the engine records e.g. ``tts_generation: line 3 of 12 (魔理沙:
'…') could not be synthesised: … (field 'script.lines[2].text'); fix: …``.
The same message is noted under ``failed`` in the project's ``summary.json``
(a cancellation is not a failure and is not noted).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .errors import PipelineEnvironmentError, PipelineError, PipelineInputError
from .inputs import (
    read_readings,
    read_seed,
    read_target_minutes,
    read_upstream,
    read_video_settings,
    read_voice_settings,
)
from .models import AudioTrack, Theme, TitleInfo
from .project import ProjectLayout
from .providers import Providers
from .script import validate_script
from .subtitles import write_srt
from .track import build_voice_track
from .worker import StepControl, run_in_worker

__all__ = ["make_processors", "STEP_NAMES"]

STEP_NAMES = (
    "theme_selection",
    "script_generation",
    "title_generation",
    "tts_generation",
    "subtitle_generation",
    "video_composition",
    "thumbnail_generation",
)

Processor = Callable[[Any, dict[str, Any]], Awaitable[dict[str, Any]]]


def _named(step: str):
    """Decorator: give PipelineErrors the step's name; mark the function with it."""

    def decorate(fn):
        @functools.wraps(fn)
        async def wrapper(context, input_data):
            try:
                return await fn(context, input_data)
            except PipelineError as exc:
                raise exc.with_step(step)

        wrapper.step_name = step
        return wrapper

    return decorate


def _preferences(data: dict[str, Any]) -> dict[str, Any]:
    prefs = data.get("user_preferences") or {}
    if not isinstance(prefs, dict):
        raise PipelineInputError(
            f"user_preferences must be a mapping, got {type(prefs).__name__}",
            field="user_preferences",
            fix="pass a dict with preferred_genres, target_audience and content_style",
        )
    return prefs


def make_processors(providers: Providers, output_dir: str | Path) -> dict[str, Processor]:
    """Build the seven processors, bound to ``providers`` and writing under ``output_dir``."""

    def layout(context) -> ProjectLayout:
        return ProjectLayout(output_dir, context.project_id).ensure()

    @_named("theme_selection")
    async def theme_selection(context, data):
        project = layout(context)
        prefs = _preferences(data)
        seed = read_seed(data)
        theme_id = data.get("theme_id")

        def work(control: StepControl):
            if theme_id:
                getter = getattr(providers.themes, "get", None)
                if getter is None:
                    raise PipelineInputError(
                        f"theme_id {theme_id!r} given but the theme provider cannot look themes up by id",
                        field="theme_id",
                        fix="leave theme_id out, or use the built-in ThemeBank",
                    )
                return getter(theme_id), [(theme_id, 0.0)]
            selection = providers.themes.select(prefs, seed=seed)
            return selection.theme, list(selection.candidates)

        theme, candidates = await run_in_worker(context, work)
        project.record_step("theme_selection", {"theme_id": theme.id, "theme_title": theme.title})
        return {
            "selected_theme": theme.model_dump(mode="json"),
            "theme_candidates": [[tid, score] for tid, score in candidates[:5]],
            "project_dir": str(project.root),
        }

    @_named("script_generation")
    async def script_generation(context, data):
        project = layout(context)
        theme = read_upstream(data, "selected_theme", Theme, "theme_selection")
        minutes = read_target_minutes(data)
        prefs = _preferences(data)
        seed = read_seed(data)
        given = data.get("script")

        def work(control: StepControl):
            if given is not None:
                return validate_script(given)
            control.progress(0.1, f"「{theme.title}」の台本を作成中")
            script = providers.script.generate(theme, target_minutes=minutes, preferences=prefs, seed=seed)
            return validate_script(script)

        script = await run_in_worker(context, work)
        dumped = script.model_dump(mode="json")
        project.write_json(project.script, dumped)
        project.record_step(
            "script_generation",
            {"lines": len(script.lines), "estimated_seconds": script.estimated_seconds, "generator": script.generator},
            {"script": project.script},
        )
        return {"script": dumped, "script_path": str(project.script)}

    @_named("title_generation")
    async def title_generation(context, data):
        project = layout(context)
        theme = read_upstream(data, "selected_theme", Theme, "theme_selection")
        minutes = read_target_minutes(data)
        prefs = _preferences(data)
        seed = read_seed(data)

        def work(control: StepControl):
            return providers.title.generate(theme, None, preferences=prefs, seed=seed, target_minutes=minutes)

        title: TitleInfo = await run_in_worker(context, work)
        project.record_step("title_generation", {"title": title.title, "thumbnail_text": title.thumbnail_text})
        return {"title": title.title, "thumbnail_text": title.thumbnail_text, "title_info": title.model_dump(mode="json")}

    @_named("tts_generation")
    async def tts_generation(context, data):
        project = layout(context)
        if data.get("script") is None:
            raise PipelineInputError(
                "no 'script' in the input; it is produced by step 'script_generation'",
                field="script",
                fix="make tts_generation depend on script_generation, or pass 'script' in initial_input",
            )
        script = validate_script(data["script"])
        voice = read_voice_settings(data)
        readings = read_readings(data)
        settings = read_video_settings(data)

        def work(control: StepControl):
            return build_voice_track(
                script,
                providers.tts,
                project.audio_dir,
                voice=voice,
                readings=readings,
                lead_in=settings.title_card_seconds,
                tail=settings.tail_seconds,
                progress=control.progress,
                check=control.check,
            )

        track: AudioTrack = await run_in_worker(context, work)
        project.record_step(
            "tts_generation",
            {"lines": len(track.lines), "duration": round(track.duration, 3), "sample_rate": track.sample_rate},
            {"audio": project.audio_dir, "voice_track": track.path},
        )
        return {"audio_track": track.model_dump(mode="json"), "audio_path": track.path, "audio_duration": track.duration}

    @_named("subtitle_generation")
    async def subtitle_generation(context, data):
        project = layout(context)
        track = read_upstream(data, "audio_track", AudioTrack, "tts_generation")

        def work(control: StepControl):
            return write_srt(track, project.subtitles)

        path = await run_in_worker(context, work)
        project.record_step("subtitle_generation", {"cues": len(track.lines)}, {"subtitles": path})
        return {"subtitles_path": str(path), "subtitle_cues": len(track.lines)}

    @_named("video_composition")
    async def video_composition(context, data):
        project = layout(context)
        track = read_upstream(data, "audio_track", AudioTrack, "tts_generation")
        title = read_upstream(data, "title_info", TitleInfo, "title_generation")
        settings = read_video_settings(data)
        if not Path(track.path).exists():
            raise PipelineEnvironmentError(
                f"the voice track {track.path} is missing",
                field="audio_track.path",
                fix="run the workflow again with fresh=True so that tts_generation re-creates it",
            )

        def work(control: StepControl):
            return providers.video.compose(
                title=title,
                track=track,
                settings=settings,
                out_path=project.video,
                progress=control.progress,
                check=control.check,
            )

        stats = await run_in_worker(context, work)
        project.record_step("video_composition", stats, {"video": project.video})
        return {"video_path": str(project.video), "video": stats}

    @_named("thumbnail_generation")
    async def thumbnail_generation(context, data):
        project = layout(context)
        theme = read_upstream(data, "selected_theme", Theme, "theme_selection")
        title = read_upstream(data, "title_info", TitleInfo, "title_generation")

        def work(control: StepControl):
            return providers.thumbnail.render(title=title, theme=theme, out_path=project.thumbnail)

        stats = await run_in_worker(context, work)
        project.record_step("thumbnail_generation", stats, {"thumbnail": project.thumbnail})
        return {"thumbnail_path": str(project.thumbnail), "thumbnail": stats}

    def noting_failures(step: str, fn: Processor) -> Processor:
        @functools.wraps(fn)  # keeps fn.step_name
        async def wrapper(context, data):
            try:
                return await fn(context, data)
            except Exception as exc:  # CancelledError is a BaseException: not a failure
                message = str(exc) if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
                with contextlib.suppress(OSError):  # the disk may be what failed: the engine still has the error
                    layout(context).record_failure(step, message)
                raise

        return wrapper

    processors = {
        "theme_selection": theme_selection,
        "script_generation": script_generation,
        "title_generation": title_generation,
        "tts_generation": tts_generation,
        "subtitle_generation": subtitle_generation,
        "video_composition": video_composition,
        "thumbnail_generation": thumbnail_generation,
    }
    assert tuple(processors) == STEP_NAMES
    return {step: noting_failures(step, fn) for step, fn in processors.items()}
