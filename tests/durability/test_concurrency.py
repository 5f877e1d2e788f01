"""Many runs and several processes on one store: every event lands exactly once, records stay consistent."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from pathlib import Path

from yukkuri_nb.core.store import SQLiteRunStore
from yukkuri_nb.demo import build_demo_engine

from .helpers import assert_engine_idle, assert_no_pending_tasks, start_worker

WORKFLOW = "complete_video_generation"


def _stored_events(db: Path) -> list[tuple[str, int, str, str | None]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT project_id, seq, kind, step FROM events WHERE project_id IS NOT NULL").fetchall()
    finally:
        conn.close()


def test_fifty_concurrent_projects_lose_no_event(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    engine = build_demo_engine(scale=0.00002, max_concurrent_steps=8, seed=3)
    store = SQLiteRunStore(db, max_batch=64)
    engine.run_store = store
    store.attach(engine)
    ids = [f"動画-{k:03d}" for k in range(50)]

    async def main():
        results = await asyncio.gather(*[engine.execute_workflow(WORKFLOW, pid, {"user_preferences": {}}) for pid in ids])
        await assert_no_pending_tasks()
        return results

    results = asyncio.run(main())
    assert_engine_idle(engine)
    assert all(r.is_successful for r in results)
    store.close()

    stored = _stored_events(db)
    seqs = Counter(seq for _, seq, _, _ in stored)
    assert all(n == 1 for n in seqs.values()), [s for s, n in seqs.items() if n > 1][:5]
    expected = {(pid, e.seq, e.kind.value, e.step) for pid in ids for e in engine.events(pid)}
    assert set(stored) == expected and len(stored) == len(expected)
    reader = SQLiteRunStore(db, readonly=True)
    runs = reader.list_runs(workflow_name=WORKFLOW)
    assert len(runs) == 50 and {r["status"] for r in runs} == {"completed"}
    assert {r["completed_steps"] for r in runs} == {5}


def test_two_processes_writing_one_store_stay_consistent(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    go = tmp_path / "go"
    workers = {prefix: start_worker("demo", str(db), prefix, "12", str(go), cwd=tmp_path) for prefix in ("a", "b")}
    go.touch()  # both start together (after their imports), so their writes interleave
    reports = {}
    for prefix, proc in workers.items():
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        reports[prefix] = json.loads(out)

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    reader = SQLiteRunStore(db, readonly=True)
    runs = {r["run_id"]: r for r in reader.list_runs()}
    assert len(runs) == 24
    for prefix, report in reports.items():
        assert report["store_errors"] == 0
        assert set(report["statuses"]) == {"completed"}
        for pid, run_id in report["run_ids"].items():
            run = runs[run_id]
            assert run["project_id"] == pid and run["status"] == "completed" and run["completed_steps"] == 5
            # The process's own view of the run, event for event, in order.
            stored = [[e.seq, e.kind.value, e.step] for e in reader.events(run_id)]
            assert stored == report["events"][pid]
    # Sequence numbers are per engine: the two processes overlap, the runs never mix.
    assert len({r["pid"] for r in runs.values()}) == 2
