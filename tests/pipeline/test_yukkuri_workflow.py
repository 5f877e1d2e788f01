"""The yukkuri_video workflow on the real engine: definitions, a short real run, failures."""

import asyncio
import json

import numpy as np
import pytest

from yukkuri_nb.core import WorkflowEngine
from yukkuri_nb.core.workflow_step import StepPriority, StepStatus
from yukkuri_nb.pipeline import encoder as encoder_module
from yukkuri_nb.pipeline import fonts
from yukkuri_nb.pipeline.audio import read_wav
from yukkuri_nb.pipeline.models import AudioTrack, TitleInfo, VideoSettings
from yukkuri_nb.pipeline.providers import default_providers
from yukkuri_nb.pipeline.subtitles import parse_srt
from yukkuri_nb.pipeline.video import FfmpegVideoComposer
from yukkuri_nb.pipeline.workflow import DEFAULT_POOL_CAPACITIES, register_yukkuri_workflow, yukkuri_steps

from .helpers import ToneSynth, decode_frame, ffprobe, rms

SIZE = (320, 180)
INPUT = {
    "user_preferences": {"preferred_genres": ["プログラミング", "AI"], "target_audience": "初心者", "content_style": "分かりやすい"},
    "target_length_minutes": 0.2,
    "video_settings": {"resolution": "320x180", "fps": 30, "title_card_seconds": 1.0},
    "voice_settings": {"reimu_speed": 1.0, "marisa_speed": 1.0},
    "seed": 0,
}


def test_step_definitions_follow_the_seed_shape():
    steps = {s.name: s for s in yukkuri_steps()}
    assert list(steps) == ["theme_selection", "script_generation", "title_generation", "tts_generation",
                           "subtitle_generation", "video_composition", "thumbnail_generation"]
    deps = {name: set(s.dependencies) for name, s in steps.items()}
    assert deps == {
        "theme_selection": set(),
        "script_generation": {"theme_selection"},
        "title_generation": {"theme_selection"},
        "tts_generation": {"script_generation"},
        "subtitle_generation": {"tts_generation"},
        "video_composition": {"subtitle_generation", "title_generation"},
        "thumbnail_generation": {"title_generation"},
    }
    pools = set().union(*(s.required_resources for s in steps.values()))
    assert pools == {"llm_api", "tts_api", "video_encoder", "storage"}
    assert steps["video_composition"].required_resources == {"video_encoder", "storage"}
    assert steps["theme_selection"].priority is StepPriority.HIGH
    assert all(s.display_name != s.name and s.estimated_duration > 0 for s in steps.values())
    longer = {s.name: s.estimated_duration for s in yukkuri_steps(target_minutes=5)}
    assert longer["video_composition"] > steps["video_composition"].estimated_duration
    assert longer["tts_generation"] > steps["tts_generation"].estimated_duration
    small = {s.name: s.estimated_duration for s in yukkuri_steps(resolution="320x180")}
    assert small["video_composition"] < steps["video_composition"].estimated_duration


def test_registration_plans_script_and_title_in_parallel(tmp_path):
    engine = WorkflowEngine(max_concurrent_steps=3)
    register_yukkuri_workflow(engine, output_dir=tmp_path / "out")
    plan = engine.plan_execution("yukkuri_video", "p")
    assert plan.phases[0] == ["theme_selection"]
    assert set(plan.phases[1]) == {"script_generation", "title_generation"}
    assert plan.resource_requirements["llm_api"] == {"theme_selection", "script_generation", "title_generation"}
    for pool, units in DEFAULT_POOL_CAPACITIES.items():
        assert engine.resource_manager.capacity(pool) == units
    engine.close()


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """One short real run (plus a faster-voiced twin) on the real engine."""
    out = tmp_path_factory.mktemp("videos")
    engine = WorkflowEngine(max_concurrent_steps=3)
    register_yukkuri_workflow(engine, output_dir=out, resolution="320x180", target_minutes=0.2)
    events = []
    engine.subscribe(events.append)
    ticks: list[float] = []  # loop times at which a heartbeat coroutine got to run

    async def heartbeat():
        loop = asyncio.get_running_loop()
        while True:
            ticks.append(loop.time())
            await asyncio.sleep(0.02)

    async def main():
        beat = asyncio.create_task(heartbeat())
        first = await engine.execute_workflow("yukkuri_video", "p1", INPUT)
        fast = await engine.execute_workflow(
            "yukkuri_video", "p1-fast", {**INPUT, "voice_settings": {"reimu_speed": 2.0, "marisa_speed": 2.0}}
        )
        beat.cancel()
        return first, fast

    first, fast = asyncio.run(main())
    engine.close()
    REAL_RUN_TICKS[:] = ticks
    return out, first, fast, events


REAL_RUN_TICKS: list[float] = []


def _outputs(result):
    merged = {}
    for step in result.step_results.values():
        merged.update(step.output_data or {})
    return merged


def test_real_run_completes_with_every_artifact(real_run):
    out, result, _, events = real_run
    assert result.status is StepStatus.COMPLETED, result.error_summary
    folder = out / "p1"
    for name in ("video.mp4", "subtitles.srt", "script.json", "thumbnail.png", "summary.json", "audio/voice.wav"):
        assert (folder / name).is_file(), name
    assert len(list((folder / "audio").glob("line_*.wav"))) == len(json.loads((folder / "script.json").read_text())["lines"])
    summary = json.loads((folder / "summary.json").read_text("utf-8"))
    assert len(summary["steps"]) == 7 and summary["files"]["video"] == str(folder.resolve() / "video.mp4")
    # sub-progress reached the engine's event stream for TTS and video
    progressed = {e.step for e in events if e.kind.value == "step_progress" and e.project_id == "p1"}
    assert {"tts_generation", "video_composition"} <= progressed


def test_mp4_streams_size_fps_and_duration(real_run):
    out, result, _, _ = real_run
    info = ffprobe(out / "p1" / "video.mp4")
    video = [s for s in info["streams"] if s["codec_type"] == "video"]
    audio = [s for s in info["streams"] if s["codec_type"] == "audio"]
    assert len(video) == 1 and len(audio) == 1
    assert video[0]["codec_name"] == "h264" and video[0]["pix_fmt"] == "yuv420p"
    assert (video[0]["width"], video[0]["height"]) == SIZE
    assert video[0]["r_frame_rate"] == "30/1" and video[0]["avg_frame_rate"] == "30/1"
    assert audio[0]["codec_name"] == "aac"
    samples, rate = read_wav(out / "p1" / "audio" / "voice.wav")
    assert abs(float(info["format"]["duration"]) - samples.size / rate) < 0.2
    assert abs(float(video[0]["duration"]) - samples.size / rate) < 0.2


def test_srt_cues_match_the_real_audio(real_run):
    out, result, _, _ = real_run
    track = AudioTrack.model_validate(_outputs(result)["audio_track"])
    cues = parse_srt((out / "p1" / "subtitles.srt").read_text("utf-8"))
    assert len(cues) == len(track.lines) >= 3
    samples, rate = read_wav(out / "p1" / "audio" / "voice.wav")
    for (start, end, text), line in zip(cues, track.lines):
        assert start == pytest.approx(line.start, abs=0.001) and end == pytest.approx(line.end, abs=0.001)
        assert line.text in text
        # speech inside the cue, silence in the pause after it
        assert rms(samples[int(start * rate):int(end * rate)]) > 1000
        assert rms(samples[int(end * rate) + 10:int(line.next_start * rate) - 10]) < 50
        # the cue covers exactly the line's audio
        line_samples, _ = read_wav(line.wav)
        assert end - start == pytest.approx(line_samples.size / rate, abs=0.001)
    assert rms(samples[: int(0.99 * rate)]) < 50  # the silent title card


def test_tts_audio_is_speech_and_scales_with_speed(real_run):
    out, result, fast, _ = real_run
    assert fast.status is StepStatus.COMPLETED
    normal_track = AudioTrack.model_validate(_outputs(result)["audio_track"])
    fast_track = AudioTrack.model_validate(_outputs(fast)["audio_track"])
    assert [l.text for l in normal_track.lines] == [l.text for l in fast_track.lines]
    for line in normal_track.lines:
        samples, _ = read_wav(line.wav)
        assert rms(samples) > 1000
    speech = lambda track: sum(l.end - l.start for l in track.lines)
    assert 0.4 < speech(fast_track) / speech(normal_track) < 0.65


def test_frame_at_a_known_time_shows_the_subtitle(real_run):
    out, result, _, _ = real_run
    outputs = _outputs(result)
    track = AudioTrack.model_validate(outputs["audio_track"])
    title = TitleInfo.model_validate(outputs["title_info"])
    timeline, renderer = FfmpegVideoComposer().plan(title=title, track=track, settings=VideoSettings(resolution="320x180"))
    line = track.lines[1]
    index = int((line.start + line.end) / 2 * 30)
    assert timeline.state_at_frame(index).line == 1
    decoded = decode_frame(out / "p1" / "video.mp4", index, SIZE).astype(np.int16)
    expected = np.asarray(renderer.render(timeline.state_at_frame(index)), dtype=np.int16)
    neighbour = np.asarray(renderer.render(timeline.state_at_frame(int(track.lines[2].start * 30) + 2)), dtype=np.int16)
    assert np.abs(decoded - expected).mean() < 4
    differs = np.abs(expected - neighbour).max(axis=-1) > 60
    assert differs.sum() > 100
    assert np.abs(decoded - expected)[differs].mean() < 0.25 * np.abs(decoded - neighbour)[differs].mean()


def test_unknown_genre_fails_the_first_step_and_skips_the_rest(tmp_path):
    engine = WorkflowEngine()
    register_yukkuri_workflow(engine, output_dir=tmp_path)
    bad = {**INPUT, "user_preferences": {"preferred_genres": ["魔法"]}}
    result = asyncio.run(engine.execute_workflow("yukkuri_video", "bad", bad))
    engine.close()
    assert result.status is StepStatus.FAILED
    message = result.step_results["theme_selection"].error_message
    assert "theme_selection: unknown genre '魔法' (field 'user_preferences.preferred_genres'); fix: use one or more" in message
    assert {result.step_results[s].status for s in result.step_results if s != "theme_selection"} == {StepStatus.SKIPPED}
    summary = json.loads((tmp_path / "bad" / "summary.json").read_text("utf-8"))
    assert summary["steps"] == {} and summary["failed"]["theme_selection"]["error"].startswith(
        "theme_selection: unknown genre '魔法'")


def test_ffmpeg_failure_keeps_finished_artifacts(tmp_path, monkeypatch):
    monkeypatch.setattr(encoder_module, "ffmpeg_exe", lambda: "/bin/false")
    engine = WorkflowEngine(max_concurrent_steps=2)
    register_yukkuri_workflow(engine, output_dir=tmp_path)
    script = {"lines": [{"speaker": "reimu", "text": "ゆっくり霊夢よ。"}, {"speaker": "marisa", "text": "魔理沙だぜ。"}]}
    result = asyncio.run(engine.execute_workflow("yukkuri_video", "p", {**INPUT, "script": script}))
    engine.close()
    video = result.step_results["video_composition"]
    assert video.status is StepStatus.FAILED
    assert "video_composition: ffmpeg failed while" in video.error_message and "(field 'ffmpeg'); fix:" in video.error_message
    folder = tmp_path / "p"
    for name in ("script.json", "subtitles.srt", "thumbnail.png", "audio/voice.wav", "audio/line_001.wav"):
        assert (folder / name).is_file(), name
    assert not (folder / "video.mp4").exists() and not (folder / "video.mp4.part").exists()
    summary = json.loads((folder / "summary.json").read_text("utf-8"))
    assert "video_composition" not in summary["steps"] and "tts_generation" in summary["steps"]
    # the run summary says what failed and how to fix it
    assert list(summary["failed"]) == ["video_composition"]
    assert summary["failed"]["video_composition"]["error"].startswith("video_composition: ffmpeg failed while")
    assert "(field 'ffmpeg'); fix:" in summary["failed"]["video_composition"]["error"]


def test_heavy_steps_leave_the_event_loop_free(real_run):
    # Open JTalk and the frame drawing / encoding run in worker threads: while
    # they work, other coroutines on the loop (the dashboard, other projects'
    # steps) keep running.  Engine event times and loop.time() are both
    # time.monotonic(), so the heartbeat's ticks can be placed inside each step.
    _, _, _, events = real_run
    for step in ("tts_generation", "video_composition"):
        start = next(e.time for e in events if e.project_id == "p1" and e.step == step and e.kind.value == "step_started")
        end = next(e.time for e in events if e.project_id == "p1" and e.step == step and e.kind.value == "step_completed")
        middle = (start + end) / 2
        first_half = [t for t in REAL_RUN_TICKS if start < t < middle]
        second_half = [t for t in REAL_RUN_TICKS if middle <= t < end]
        # A step that blocked the loop would see no tick at all; one that blocked
        # for part of its time would leave a half empty.
        assert first_half and second_half and len(first_half) + len(second_half) >= 5, (step, end - start)


def _missing_fonts(monkeypatch):
    monkeypatch.setattr(fonts, "KNOWN_FONT_PATHS", ())
    monkeypatch.setattr(fonts, "_fc_match", lambda: [])
    monkeypatch.delenv("YUKKURI_FONT", raising=False)
    fonts.find_japanese_font.cache_clear()


def test_missing_font_fails_the_drawing_steps_by_name_and_keeps_the_audio(tmp_path, monkeypatch):
    _missing_fonts(monkeypatch)
    try:
        engine = WorkflowEngine(max_concurrent_steps=2)
        register_yukkuri_workflow(engine, output_dir=tmp_path, providers=default_providers().replace(tts=ToneSynth()))
        result = asyncio.run(engine.execute_workflow("yukkuri_video", "p", INPUT))
        engine.close()
    finally:
        fonts.find_japanese_font.cache_clear()
    assert result.status is StepStatus.FAILED
    for step in ("video_composition", "thumbnail_generation"):
        assert result.step_results[step].status is StepStatus.FAILED
        # the engine records "<ErrorType>: <message>"; the message names the step, the field and the fix
        assert result.step_results[step].error_message.startswith(
            f"PipelineEnvironmentError: {step}: no Japanese font found (looked for Noto Sans CJK via fc-match and in "
            "/usr/share/fonts) (field 'font'); fix: install it with `sudo apt-get install fonts-noto-cjk`"
        ), result.step_results[step].error_message
    folder = tmp_path / "p"
    for name in ("script.json", "subtitles.srt", "audio/voice.wav", "audio/line_000.wav"):
        assert (folder / name).is_file(), name
    assert not (folder / "video.mp4").exists() and not (folder / "thumbnail.png").exists()
    summary = json.loads((folder / "summary.json").read_text("utf-8"))
    assert {"tts_generation", "subtitle_generation"} <= set(summary["steps"])
    assert set(summary["failed"]) == {"video_composition", "thumbnail_generation"}
    assert "fonts-noto-cjk" in summary["failed"]["thumbnail_generation"]["error"]


def test_tts_failure_on_one_line_names_the_line_and_keeps_the_finished_work(tmp_path):
    engine = WorkflowEngine(max_concurrent_steps=2)
    register_yukkuri_workflow(engine, output_dir=tmp_path,
                              providers=default_providers().replace(tts=ToneSynth(fail_on="魔理沙だぜ")))
    script = {"lines": [{"speaker": "reimu", "text": "ゆっくり霊夢よ。"}, {"speaker": "marisa", "text": "魔理沙だぜ。"},
                        {"speaker": "reimu", "text": "またね。"}]}
    result = asyncio.run(engine.execute_workflow("yukkuri_video", "p", {**INPUT, "script": script}))
    engine.close()
    tts = result.step_results["tts_generation"]
    assert tts.status is StepStatus.FAILED
    assert tts.error_message.startswith("PipelineError: tts_generation: line 2 of 3 (魔理沙: '魔理沙だぜ。') could not be synthesised: ")
    assert "(field 'script.lines[1].text'); fix: edit the line's text or give it a kana 'reading'" in tts.error_message
    assert {result.step_results[s].status for s in ("subtitle_generation", "video_composition")} == {StepStatus.SKIPPED}
    folder = tmp_path / "p"
    # the finished line, the script and the thumbnail (its branch does not need audio) are kept
    for name in ("script.json", "audio/line_000.wav", "thumbnail.png"):
        assert (folder / name).is_file(), name
    assert not (folder / "audio/line_001.wav").exists()
