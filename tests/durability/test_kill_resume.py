"""A process killed mid-run loses nothing it finished: the next run reuses it."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from yukkuri_nb.core.store import SQLiteRunStore

from .helpers import start_worker, step_status, wait_until


def _executions(workdir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in (workdir / "executions.log").read_text(encoding="utf-8").split():
        counts[line] = counts.get(line, 0) + 1
    return counts


def test_sigkill_mid_run_then_rerun_skips_completed_steps(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    proc = start_worker("chain", str(db), str(tmp_path), "slow", cwd=tmp_path)
    try:
        # Kill once s2's completion is committed and s3 has begun its long sleep.
        wait_until(lambda: step_status(db, "s2") == "completed"
                   and "s3" in (tmp_path / "executions.log").read_text(encoding="utf-8").split(), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert _executions(tmp_path) == {"s1": 1, "s2": 1, "s3": 1}

    second = start_worker("chain", str(db), str(tmp_path), "fast", cwd=tmp_path)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    result = json.loads(out)

    assert result["status"] == "completed"
    assert result["resumed_steps"] == ["s1", "s2"]
    assert result["store_errors"] == 0
    # s1 and s2 ran once in all; s3 ran again because it never finished.
    assert _executions(tmp_path) == {"s1": 1, "s2": 1, "s3": 2, "s4": 1}
    assert result["outputs"]["s4"]["value"] == "s1>s2>s3>s4"
    for k, step in enumerate(["s1", "s2", "s3", "s4"]):
        path = Path(result["outputs"][step][f"{step}_file"])
        assert path.read_text(encoding="utf-8") == ">".join(["s1", "s2", "s3", "s4"][: k + 1])

    store = SQLiteRunStore(db, readonly=True)
    runs = store.list_runs("kill-test")
    assert [r["status"] for r in runs] == ["completed", "interrupted"]
    assert runs[0]["resumed_from"] == runs[1]["run_id"]
    assert runs[0]["resumed_steps"] == 2
    steps = {s["step"]: s for s in store.steps(runs[0]["run_id"])}
    assert {n: (s["status"], s["restored"]) for n, s in steps.items()} == {
        "s1": ("completed", 1), "s2": ("completed", 1), "s3": ("completed", 0), "s4": ("completed", 0),
    }
    killed = {s["step"]: s["status"] for s in store.steps(runs[1]["run_id"])}
    assert killed["s1"] == killed["s2"] == "completed"
    assert killed.get("s3") in (None, "ready", "running")  # never finished


def test_rerun_after_completed_run_starts_over(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    for _ in range(2):
        proc = start_worker("chain", str(db), str(tmp_path), "fast", cwd=tmp_path)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert json.loads(out)["resumed_steps"] == []
    assert _executions(tmp_path) == {"s1": 2, "s2": 2, "s3": 2, "s4": 2}
    assert os.path.exists(db)
