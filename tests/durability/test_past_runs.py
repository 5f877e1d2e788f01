"""Past runs: `yukkuri-nb runs list|show|export` and the analysis frames, read back from a real store file."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from yukkuri_nb.analysis import attempts_frame, events_frame, steps_frame
from yukkuri_nb.core import StepStatus, WorkflowEngine
from yukkuri_nb.core.workflow_step import WorkflowStepDefinition as W


def _record_two_runs(db: Path, project_id: str = "解説-1") -> tuple[WorkflowEngine, list]:
    """A failed run of a -> b -> c (c fails), then its resume (a, b restored; c runs)."""
    engine = WorkflowEngine(run_store=str(db))
    engine.register_workflow("chain", [W(name="a", display_name="テーマ"), W(name="b", dependencies=["a"]),
                                       W(name="c", display_name="動画", dependencies=["b"])])
    fail = {"c": True}

    def make(name: str):
        def process(context, data):
            if fail.get(name):
                raise RuntimeError("ffmpeg が見つからない")
            return {name: name.upper()}

        return process

    for n in "abc":
        engine.register_step_processor(n, make(n))
    results = [asyncio.run(engine.execute_workflow("chain", project_id, {}))]
    fail["c"] = False
    results.append(asyncio.run(engine.execute_workflow("chain", project_id, {})))
    engine.close()
    return engine, results


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yukkuri_nb", "runs", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_runs_list_show_export_on_a_real_store(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    _, (failed, resumed) = _record_two_runs(db)
    assert failed.status is StepStatus.FAILED and resumed.resumed_steps == ["a", "b"]

    listing = _cli("list", "--db", str(db))
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:4] == ["run", "id", "project", "workflow"]
    assert [line.split()[0] for line in lines[2:]] == [resumed.run_id[:12], failed.run_id[:12]]  # newest first
    assert "completed" in lines[2] and "3/3" in lines[2] and lines[2].split()[-2] == "2"  # 2 steps resumed
    assert "failed" in lines[3] and "2/3" in lines[3]

    as_json = json.loads(_cli("list", "--db", str(db), "--json", "--status", "failed").stdout)
    assert [r["run_id"] for r in as_json] == [failed.run_id]

    show = _cli("show", failed.run_id[:8], "--db", str(db))  # a unique prefix is enough
    assert show.returncode == 0, show.stderr
    assert f"run {failed.run_id}  project '解説-1'  workflow 'chain'" in show.stdout
    assert "status: failed" in show.stdout and "RuntimeError: ffmpeg が見つからない" in show.stdout
    show_latest = _cli("show", "解説-1", "--db", str(db))  # a project id means its latest run
    assert f"resumed from run {failed.run_id} (2 steps reused)" in show_latest.stdout

    exported = json.loads(_cli("export", resumed.run_id, "--db", str(db)).stdout)
    assert exported["format"] == "yukkuri_nb.run/1"
    assert exported["run"]["status"] == "completed" and exported["run"]["resumed_from"] == failed.run_id
    assert exported["outputs"] == {"a": {"a": "A"}, "b": {"b": "B"}, "c": {"c": "C"}}
    assert [e["kind"] for e in exported["events"]][0] == "run_started"
    assert [(e["step"], e["data"].get("restored")) for e in exported["events"] if e["kind"] == "step_completed"] == [
        ("a", True), ("b", True), ("c", None)]

    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    wrote = _cli("export", failed.run_id, "--db", str(db), "--format", "csv", "--table", "steps", "-o", str(out_dir))
    assert wrote.returncode == 0, wrote.stderr
    files = list(out_dir.iterdir())
    assert [f.name for f in files] == [f"解説-1-{failed.run_id[:12]}-steps.csv"]
    rows = list(csv.DictReader(io.StringIO(files[0].read_text(encoding="utf-8"))))
    assert [(r["step"], r["status"]) for r in rows] == [("a", "completed"), ("b", "completed"), ("c", "failed")]


def test_runs_cli_errors_name_the_store_and_the_fix(tmp_path: Path) -> None:
    missing = _cli("list", "--db", str(tmp_path / "nope.db"))
    assert missing.returncode == 2
    assert f"run store {str(tmp_path / 'nope.db')!r} does not exist; run a workflow with run_store=... first" in missing.stderr
    db = tmp_path / "runs.db"
    _record_two_runs(db)
    unknown = _cli("show", "zzz-no-such-run", "--db", str(db))
    assert unknown.returncode == 2
    assert "no run 'zzz-no-such-run' in run store" in unknown.stderr and "yukkuri-nb runs list" in unknown.stderr
    # The default store is out/runs.db under the working directory, or $YUKKURI_NB_RUN_STORE.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "runs.db").write_bytes(db.read_bytes())
    assert _cli("list", "--json", cwd=tmp_path).returncode == 0
    assert len(json.loads(_cli("list", "--json", cwd=tmp_path).stdout)) == 2


def test_frames_are_built_from_a_store_file(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    engine, (failed, resumed) = _record_two_runs(db)
    _record_two_runs(db, "other")

    for source in (db, str(db)):
        steps = steps_frame(source, "解説-1")
        assert list(steps["run_id"].unique()) == [failed.run_id, resumed.run_id]  # oldest first
        by_run = {rid: dict(zip(g["step"], zip(g["status"], g["restored"]))) for rid, g in steps.groupby("run_id")}
        assert by_run[failed.run_id] == {"a": ("completed", False), "b": ("completed", False), "c": ("failed", False)}
        assert by_run[resumed.run_id] == {"a": ("completed", True), "b": ("completed", True), "c": ("completed", False)}

    # The stored events make the same frame as the engine's own (latest run).
    live = events_frame(engine, "解説-1")
    stored = events_frame(db, "解説-1")
    stored = stored[stored["run_id"] == resumed.run_id].reset_index(drop=True)
    pd.testing.assert_frame_equal(stored[["seq", "kind", "step", "t"]], live[["seq", "kind", "step", "t"]])
    # With the engine, the frames know display names; a store object works as a source too.
    named = steps_frame(engine.run_store, "解説-1", engine=engine)
    assert set(named.loc[named["step"] == "c", "display_name"]) == {"動画"}
    assert set(steps_frame(db)["project_id"]) == {"解説-1", "other"}
    failed_attempts = attempts_frame(db, "解説-1")
    assert failed_attempts.loc[failed_attempts["step"] == "c", "status"].tolist() == ["failed", "completed"]


def test_frames_of_a_missing_store_file_say_so(tmp_path: Path) -> None:
    from yukkuri_nb.core.store import RunStoreError

    with pytest.raises(RunStoreError, match=r"does not exist"):
        steps_frame(tmp_path / "nope.db")
