"""A store that cannot write (full disk, read-only file, lock held elsewhere) never breaks a run.

Documented behaviour (see ``yukkuri_nb.core.store``): the run goes on and
ends as it would without a store; the store warns once (a ``log`` event
naming the file and the fix, and the ``yukkuri_nb.store`` logger), keeps
every record in memory and commits them all once writing works again.  A
store that cannot be opened at all raises before any step runs.

The faults are real SQLite errors on a real file, made in ways that also work
as root (which ignores file modes): ``PRAGMA max_page_count`` makes the
database full, ``PRAGMA query_only`` makes the connection read-only, and a
second connection holding the write lock makes it locked.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Callable

import pytest

from yukkuri_nb.core import StepStatus, WorkflowEngine
from yukkuri_nb.core.store import RunStoreError, SQLiteRunStore
from yukkuri_nb.core.workflow_step import WorkflowStepDefinition as W

from .helpers import assert_engine_idle

STEPS = [f"s{k}" for k in range(5)]


def _engine(store: SQLiteRunStore, ran: list[str], fail: set[str] = frozenset()) -> WorkflowEngine:
    engine = WorkflowEngine(run_store=store)
    engine.register_workflow("chain", [W(name=s, dependencies=[STEPS[k - 1]] if k else []) for k, s in enumerate(STEPS)])

    def make(name: str):
        def process(context, data):
            ran.append(name)
            if name in fail:
                raise RuntimeError(f"{name} broke")
            return {name: "x" * 3000}  # a few pages per step, so a full file notices

        return process

    for s in STEPS:
        engine.register_step_processor(s, make(s))
    return engine


def _full(conn: sqlite3.Connection) -> Callable[[], None]:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    return lambda: conn.execute("PRAGMA max_page_count = 1073741823")


def _read_only(conn: sqlite3.Connection) -> Callable[[], None]:
    conn.execute("PRAGMA query_only = 1")
    return lambda: conn.execute("PRAGMA query_only = 0")


def _locked(db: Path) -> Callable[[sqlite3.Connection], Callable[[], None]]:
    def fault(conn: sqlite3.Connection) -> Callable[[], None]:
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock

        def release() -> None:
            other.execute("ROLLBACK")
            other.close()

        return release

    return fault


@pytest.mark.parametrize("fault", ["full", "read_only", "locked"])
def test_run_completes_while_the_store_cannot_write_and_nothing_is_lost(tmp_path: Path, fault: str) -> None:
    db = tmp_path / "runs.db"
    store = SQLiteRunStore(db, busy_timeout=0, retry_interval=0)
    ran: list[str] = []
    engine = _engine(store, ran)
    make_fault = {"full": _full, "read_only": _read_only, "locked": _locked(db)}[fault]
    repair = make_fault(store._connection())  # the store's own connection, as a full disk would hit it

    result = asyncio.run(engine.execute_workflow("chain", "p", {}))

    assert result.status is StepStatus.COMPLETED and ran == STEPS
    assert_engine_idle(engine)
    assert not store.healthy and store.errors >= 1 and store.pending > 0
    warnings = [e.data for e in engine.events("p") if e.kind.value == "log" and e.data.get("source") == "run_store"]
    assert len(warnings) == 1 and warnings[0]["level"] == "warning"  # told once, not per record
    assert f"run store {str(db)!r} cannot write" in warnings[0]["message"]
    assert "free disk space or make the file writable" in warnings[0]["message"]

    repair()
    assert store.flush() is True
    assert store.healthy and store.pending == 0
    assert store.events(result.run_id) == engine.events("p")  # every event, the warning included
    assert [r["status"] for r in store.list_runs("p")] == ["completed"]
    engine.close()


def test_completions_lost_with_the_process_only_cost_a_rerun(tmp_path: Path) -> None:
    """Full from the start, the run fails at s3 and the process 'dies' (the store is dropped unflushed):
    the next process (a new store on the file) finds no record of that run, so it runs everything again."""
    db = tmp_path / "runs.db"
    store = SQLiteRunStore(db, busy_timeout=0)
    ran: list[str] = []
    engine = _engine(store, ran, fail={"s3"})
    _full(store._connection())
    first = asyncio.run(engine.execute_workflow("chain", "p", {}))
    assert first.status is StepStatus.FAILED and store.pending > 0

    ran2: list[str] = []
    second = asyncio.run(_engine(SQLiteRunStore(db), ran2).execute_workflow("chain", "p", {}))
    assert second.status is StepStatus.COMPLETED and ran2 == STEPS and second.resumed_steps == []


def test_store_recovering_mid_run_is_reported(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    store = SQLiteRunStore(db, busy_timeout=0, retry_interval=0)
    ran: list[str] = []
    engine = _engine(store, ran)
    repair = _full(store._connection())

    def free_space_after_s1(state: Any) -> None:
        if state.step_statuses["s1"] is StepStatus.COMPLETED:
            repair()

    result = asyncio.run(engine.execute_workflow("chain", "p", {}, progress_callback=free_space_after_s1))
    assert result.status is StepStatus.COMPLETED
    notes = [(e.data["level"], e.data["message"]) for e in engine.events("p") if e.kind.value == "log"]
    assert [level for level, _ in notes] == ["warning", "info"]
    assert "recovered" in notes[1][1]
    assert store.healthy and store.pending == 0
    assert store.events(result.run_id) == engine.events("p")


def test_store_that_cannot_be_created_raises_before_any_run(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be", encoding="utf-8")
    path = blocker / "runs.db"
    with pytest.raises(RunStoreError, match=r"^cannot open run store .*not-a-folder/runs\.db.*pass a writable path, or run_store=None"):
        WorkflowEngine(run_store=str(path))


def test_a_file_that_is_not_a_store_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(RunStoreError, match=r"it is not a yukkuri_nb run store|not a database"):
        SQLiteRunStore(path)
    assert path.read_bytes() == b"not sqlite at all" * 100


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    SQLiteRunStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(RunStoreError, match=r"schema version 99 was written by a newer yukkuri_nb.*upgrade yukkuri_nb"):
        SQLiteRunStore(path)
    with pytest.raises(RunStoreError, match=r"schema version 99 is newer"):
        SQLiteRunStore(path, readonly=True)


def test_read_only_store_reads_but_refuses_to_record(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with pytest.raises(RunStoreError, match=r"does not exist; run a workflow with run_store"):
        SQLiteRunStore(path, readonly=True)
    ran: list[str] = []
    engine = _engine(SQLiteRunStore(path), ran)
    asyncio.run(engine.execute_workflow("chain", "p", {}))
    engine.close()
    reader = SQLiteRunStore(path, readonly=True)
    assert [r["status"] for r in reader.list_runs()] == ["completed"]
    with pytest.raises(RunStoreError, match=r"opened with readonly=True and cannot record runs"):
        WorkflowEngine(run_store=reader)
