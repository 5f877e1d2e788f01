import argparse
import contextlib
import io
import json

import yukkuri_nb.core
from yukkuri_nb.pipeline.cli import add_make_video_parser, run_make_video
from yukkuri_nb.pipeline.workflow import DEFAULT_POOL_CAPACITIES


def _parse(argv):
    parser = argparse.ArgumentParser(prog="yukkuri-nb")
    add_make_video_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["make-video", *argv])


def _intervals(events, step):
    """(start, end) of ``step`` in each project, from the engine's events."""
    spans = {}
    for e in events:
        if e.step == step and e.kind.value in ("step_started", "step_completed"):
            spans.setdefault(e.project_id, []).append(e.time)
    return sorted(tuple(v) for v in spans.values())


def test_make_video_runs_a_batch_and_prints_progress_and_files(tmp_path, monkeypatch):
    engines = []

    class RecordingEngine(yukkuri_nb.core.WorkflowEngine):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            engines.append(self)

    monkeypatch.setattr(yukkuri_nb.core, "WorkflowEngine", RecordingEngine)
    out = io.StringIO()
    args = _parse(["--out", str(tmp_path), "--minutes", "0.2", "--genre", "宇宙", "--projects", "2",
                   "--size", "320x180", "--seed", "5"])
    assert args.func is run_make_video
    assert run_make_video(args, stream=out) == 0
    text = out.getvalue()
    themes = set()
    for pid in ("video-001", "video-002"):
        folder = tmp_path / pid
        assert (folder / "video.mp4").is_file() and (folder / "thumbnail.png").is_file()
        assert f"{folder / 'video.mp4'}" in text
        themes.add(json.loads((folder / "summary.json").read_text("utf-8"))["steps"]["theme_selection"]["theme_id"])
    assert len(themes) == 2  # a batch gets different themes while the genre allows
    assert "tts_generation" in text and "video_composition" in text  # live step lines
    assert "frames" in text  # sub-progress of the video step
    assert f"files are in {tmp_path.resolve()}" in text
    # One engine ran the batch: the projects overlapped, yet shared the pools
    # (one TTS engine, one video encoder at a time).
    (engine,) = engines
    events = [e for pid in ("video-001", "video-002") for e in engine.events(pid)]
    for pool, units in DEFAULT_POOL_CAPACITIES.items():
        assert engine.resource_manager.capacity(pool) == units
    first, second = _intervals(events, "theme_selection")
    assert second[0] < first[1], "the two projects did not run at the same time"
    for step in ("tts_generation", "video_composition"):
        first, second = _intervals(events, step)
        assert first[1] <= second[0], f"two {step} steps ran at once on a pool of one"
    # The batch is recorded in the output folder's run store, readable by `yukkuri-nb runs`.
    assert f"runs recorded in {tmp_path.resolve() / 'runs.db'}" in text
    from yukkuri_nb.cli import main

    listing = io.StringIO()
    with contextlib.redirect_stdout(listing):
        assert main(["runs", "list", "--db", str(tmp_path / "runs.db"), "--json"]) == 0
    runs = json.loads(listing.getvalue())
    assert sorted((r["project_id"], r["status"], r["completed_steps"]) for r in runs) == [
        ("video-001", "completed", runs[0]["total_steps"]), ("video-002", "completed", runs[0]["total_steps"]),
    ]


def test_bad_arguments_exit_with_2_and_say_why(tmp_path):
    out = io.StringIO()
    assert run_make_video(_parse(["--out", str(tmp_path), "--genre", "魔法"]), stream=out) == 2
    assert "unknown genre '魔法'" in out.getvalue() and "プログラミング" in out.getvalue()
    out = io.StringIO()
    assert run_make_video(_parse(["--size", "321x180"]), stream=out) == 2
    assert "--size" in out.getvalue() and "even" in out.getvalue()
    assert not any(tmp_path.iterdir())


def test_list_genres():
    out = io.StringIO()
    assert run_make_video(_parse(["--list-genres"]), stream=out) == 0
    assert "プログラミング" in out.getvalue() and "宇宙" in out.getvalue()
