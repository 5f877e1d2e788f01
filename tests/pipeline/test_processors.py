"""Processors called directly with a fake context; project folders; the worker bridge."""

import asyncio
import json
import threading
from pathlib import Path

import pytest

from yukkuri_nb.pipeline.errors import PipelineCancelled, PipelineError, PipelineInputError
from yukkuri_nb.pipeline.inputs import read_video_settings, read_voice_settings
from yukkuri_nb.pipeline.processors import STEP_NAMES, make_processors
from yukkuri_nb.pipeline.project import ProjectLayout, safe_project_id
from yukkuri_nb.pipeline.providers import default_providers
from yukkuri_nb.pipeline.worker import run_in_worker

from .helpers import FakeContext, ToneSynth, tiny_script

INPUT = {
    "user_preferences": {"preferred_genres": ["歴史"], "target_audience": "初心者", "content_style": "ゆるい"},
    "target_length_minutes": 0.2,
    "video_settings": {"resolution": "320x180", "title_card_seconds": 0.5},
    "seed": 3,
}


def _run_chain(processors, context, data):
    async def chain():
        merged = dict(data)
        for name in STEP_NAMES:
            context.step_name = name
            merged.update(await processors[name](context, dict(merged)))
        return merged

    return asyncio.run(chain())


@pytest.mark.parametrize("project_id", ["../../etc", "a/b", "..", "", ".hidden", "x" * 300, "動画/../../1"])
def test_project_ids_cannot_escape_the_output_folder(tmp_path, project_id):
    layout = ProjectLayout(tmp_path, project_id)
    assert layout.root.parent == tmp_path.resolve()
    assert not layout.root.name.startswith(".") and "/" not in layout.root.name


def test_safe_ids_are_kept_and_distinct():
    assert safe_project_id("video-001") == "video-001"
    assert safe_project_id("動画_1") == "動画_1"
    assert safe_project_id("a/b") != safe_project_id("a_b")


def test_whole_chain_with_fake_context_writes_every_artifact(tmp_path):
    providers = default_providers().replace(tts=ToneSynth(rate=16000))
    context = FakeContext("p/1")
    out = _run_chain(make_processors(providers, tmp_path), context, INPUT)

    root = Path(out["project_dir"])
    assert root.parent == tmp_path.resolve() and root.name.startswith("p_1-")
    for name in ("video.mp4", "subtitles.srt", "script.json", "thumbnail.png", "summary.json", "audio/voice.wav"):
        assert (root / name).exists(), name
    assert "歴史" in out["selected_theme"]["genres"]
    script = json.loads((root / "script.json").read_text("utf-8"))
    assert script == out["script"] and len(script["lines"]) == len(out["audio_track"]["lines"])
    summary = json.loads((root / "summary.json").read_text("utf-8"))
    assert set(summary["steps"]) == set(STEP_NAMES)
    assert summary["files"]["video"] == str(root / "video.mp4")
    assert out["audio_track"]["lead_in"] == pytest.approx(0.5)
    # sub-progress: one report per TTS line, and video progress up to 1.0
    lines = len(script["lines"])
    tts_reports = [f for f, m in context.progress if "/" in m and m.split("/")[0].isdigit() and "frames" not in m]
    assert tts_reports[:lines] == pytest.approx([(i + 1) / lines for i in range(lines)])
    assert any(m.endswith("frames") for _, m in context.progress)
    json.dumps(out)  # every output is JSON-serialisable (run store, resume)


def test_given_script_is_used_and_empty_script_is_refused(tmp_path):
    processors = make_processors(default_providers().replace(tts=ToneSynth()), tmp_path)
    context = FakeContext()
    theme = asyncio.run(processors["theme_selection"](context, INPUT))
    given = tiny_script().model_dump(mode="json")
    out = asyncio.run(processors["script_generation"](context, {**INPUT, **theme, "script": given}))
    assert out["script"]["lines"] == given["lines"]
    with pytest.raises(PipelineInputError, match=r"^script_generation: the script has no lines \(field 'script\.lines'\); fix: "):
        asyncio.run(processors["script_generation"](context, {**INPUT, **theme, "script": {"lines": []}}))


def test_errors_name_the_step_field_and_fix(tmp_path):
    processors = make_processors(default_providers(), tmp_path)
    context = FakeContext()
    with pytest.raises(PipelineInputError, match=r"^theme_selection: unknown genre '魔法' \(field 'user_preferences\.preferred_genres'\); fix: use one or more"):
        asyncio.run(processors["theme_selection"](context, {"user_preferences": {"preferred_genres": ["魔法"]}}))
    with pytest.raises(PipelineInputError, match=r"^tts_generation: no 'script' in the input; it is produced by step 'script_generation' \(field 'script'\)"):
        asyncio.run(processors["tts_generation"](context, {}))
    with pytest.raises(PipelineInputError, match=r"^video_composition: no 'audio_track' in the input; it is produced by step 'tts_generation'"):
        asyncio.run(processors["video_composition"](context, {}))


def test_one_failing_tts_line_keeps_the_lines_before_it(tmp_path):
    processors = make_processors(default_providers().replace(tts=ToneSynth(fail_on="またね")), tmp_path)
    context = FakeContext("p2")
    data = {**INPUT, "script": tiny_script().model_dump(mode="json")}
    with pytest.raises(PipelineError, match=r"^tts_generation: line 3 of 3 \(霊夢: 'またね。'\) could not be synthesised: .*\(field 'script\.lines\[2\]\.text'\)"):
        asyncio.run(processors["tts_generation"](context, data))
    audio = tmp_path / "p2" / "audio"
    assert (audio / "line_000.wav").exists() and (audio / "line_001.wav").exists()
    assert len(context.progress) == 2


def test_a_failed_step_is_noted_in_the_summary_until_it_succeeds(tmp_path):
    processors = make_processors(default_providers().replace(tts=ToneSynth(fail_on="またね")), tmp_path)
    context = FakeContext("p3")
    data = {**INPUT, "script": tiny_script().model_dump(mode="json")}
    with pytest.raises(PipelineError):
        asyncio.run(processors["tts_generation"](context, data))
    summary = json.loads((tmp_path / "p3" / "summary.json").read_text("utf-8"))
    assert summary["failed"]["tts_generation"]["error"].startswith("tts_generation: line 3 of 3")
    fixed = make_processors(default_providers().replace(tts=ToneSynth()), tmp_path)
    asyncio.run(fixed["tts_generation"](context, data))
    summary = json.loads((tmp_path / "p3" / "summary.json").read_text("utf-8"))
    assert "failed" not in summary and "tts_generation" in summary["steps"]


def test_a_step_cancelled_while_working_is_not_noted_as_failed(tmp_path):
    release = threading.Event()

    class GatedSynth(ToneSynth):
        def synthesize(self, text, **kw):
            if self.calls:  # every line after the first waits until the step has been cancelled
                release.wait(timeout=30)
            return super().synthesize(text, **kw)

    processors = make_processors(default_providers().replace(tts=GatedSynth()), tmp_path)
    context = FakeContext("p4")
    data = {**INPUT, "script": tiny_script().model_dump(mode="json")}

    async def cancel_after_the_first_line():
        task = asyncio.ensure_future(processors["tts_generation"](context, data))
        while not context.progress:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0)  # let the cancellation reach the worker bridge
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_after_the_first_line())
    assert len(context.progress) < 3  # stopped part-way
    summary = tmp_path / "p4" / "summary.json"
    assert not summary.exists() or "failed" not in json.loads(summary.read_text("utf-8"))


@pytest.mark.parametrize(
    "settings, field",
    [({"resolution": "640x361"}, "video_settings.resolution"), ({"fps": 0}, "video_settings.fps"),
     ({"preset": "turbo"}, "video_settings.preset")],
)
def test_bad_video_settings_name_the_field(settings, field):
    with pytest.raises(PipelineInputError, match=rf"\(field '{field}'\)"):
        read_video_settings({"video_settings": settings})


def test_bad_voice_settings_name_the_field():
    with pytest.raises(PipelineInputError, match=r"\(field 'voice_settings\.marisa_speed'\); fix: speeds are multipliers"):
        read_voice_settings({"voice_settings": {"marisa_speed": 0}})


def test_worker_does_not_block_the_event_loop():
    loop_ran = threading.Event()

    def work(control):
        # Only the event loop can set the flag: if the work blocked the loop, this would time out.
        return loop_ran.wait(timeout=10)

    async def main():
        async def on_loop():
            await asyncio.sleep(0)
            loop_ran.set()

        helper = asyncio.create_task(on_loop())
        result = await run_in_worker(FakeContext(), work)
        await helper
        return result

    assert asyncio.run(main()) is True


def test_cancelling_the_step_stops_the_worker_before_returning():
    started, stopped = threading.Event(), threading.Event()

    def work(control):
        started.set()
        try:
            while True:
                control.check()
                threading.Event().wait(0.01)
        except PipelineCancelled:
            stopped.set()
            raise

    async def main():
        task = asyncio.create_task(run_in_worker(FakeContext(), work))
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return stopped.is_set()

    assert asyncio.run(main()) is True


def test_worker_waits_while_paused():
    class PausableContext(FakeContext):
        def __init__(self):
            super().__init__()
            self.resume = None

        async def checkpoint(self):
            self.checkpoints += 1
            if self.resume is None:
                self.resume = asyncio.get_running_loop().create_future()
            await self.resume

    context = PausableContext()
    progress = []

    def work(control):
        control.check()  # blocks until the loop resolves the checkpoint
        progress.append("after")
        return "done"

    async def main():
        task = asyncio.create_task(run_in_worker(context, work))
        while context.resume is None:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert progress == []  # still paused
        context.resume.set_result(None)
        return await task

    assert asyncio.run(main()) == "done" and progress == ["after"]
