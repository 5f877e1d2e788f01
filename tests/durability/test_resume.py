"""Resume in one process: what is reused, what runs again, and why."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from yukkuri_nb.core import StepStatus, WorkflowEngine
from yukkuri_nb.core.store import SQLiteRunStore
from yukkuri_nb.core.workflow_step import StepResult, WorkflowStepDefinition as W

from .helpers import assert_engine_idle, assert_no_pending_tasks


class Diamond:
    """a -> (b, c) -> d; every step writes an artifact; ``d`` fails while ``fail_d`` is set."""

    def __init__(self, tmp: Path, store: Any) -> None:
        self.tmp = tmp
        self.ran: list[str] = []
        self.fail_d = True
        self.extra: dict[str, Any] = {}
        self.engine = WorkflowEngine(max_concurrent_steps=2, run_store=store)
        self.engine.register_workflow("diamond", [
            W(name="a", display_name="テーマ"), W(name="b", dependencies=["a"]), W(name="c", dependencies=["a"]),
            W(name="d", display_name="動画", dependencies=["b", "c"]),
        ])
        for name in "abcd":
            self.engine.register_step_processor(name, self._make(name))

    def _make(self, name: str):
        def process(context, data):
            self.ran.append(name)
            if name == "d" and self.fail_d:
                raise RuntimeError("エンコーダが落ちた")
            path = self.tmp / f"{name}.txt"
            path.write_text(f"{name}:{sorted(k for k in data if k.endswith('_file'))}", encoding="utf-8")
            return {f"{name}_file": str(path), **self.extra.get(name, {})}

        return process

    def run(self, **kwargs: Any):
        async def main():
            result = await self.engine.execute_workflow("diamond", "p-1", {"theme": "ゆっくり"}, **kwargs)
            await assert_no_pending_tasks()
            return result

        result = asyncio.run(main())
        assert_engine_idle(self.engine)
        return result


def test_failed_run_resumes_only_the_failed_part(tmp_path: Path) -> None:
    wf = Diamond(tmp_path, str(tmp_path / "runs.db"))
    first = wf.run()
    assert first.status is StepStatus.FAILED and wf.ran.count("d") == 1
    wf.ran.clear()
    wf.fail_d = False
    second = wf.run()
    assert second.status is StepStatus.COMPLETED
    assert wf.ran == ["d"]
    assert second.resumed_steps == ["a", "b", "c"]
    assert second.completed_steps == 4 and second.completion_percentage == 100.0
    # Restored outputs flowed on: d saw the files of a, b and c.
    assert (tmp_path / "d.txt").read_text(encoding="utf-8") == "d:['a_file', 'b_file', 'c_file']"
    assert second.step_results["b"].output_data == {"b_file": str(tmp_path / "b.txt")}
    restored = [e for e in wf.engine.events("p-1") if e.kind.value == "step_completed" and e.data.get("restored")]
    assert [e.step for e in restored] == ["a", "b", "c"]


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "delete"])
def test_damaged_artifact_reruns_exactly_that_step(tmp_path: Path, damage: str) -> None:
    wf = Diamond(tmp_path, str(tmp_path / "runs.db"))
    wf.run()
    target = tmp_path / "c.txt"
    if damage == "corrupt":  # same size, one byte changed: only the checksum notices
        data = bytearray(target.read_bytes())
        data[0] ^= 0x01
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(b"")
    else:
        target.unlink()
    wf.ran.clear()
    wf.fail_d = False
    result = wf.run()
    assert result.status is StepStatus.COMPLETED
    assert sorted(wf.ran) == ["c", "d"]
    assert result.resumed_steps == ["a", "b"]
    assert target.read_text(encoding="utf-8").startswith("c:")
    notes = [e.data["message"] for e in wf.engine.events("p-1") if e.kind.value == "log"]
    assert any("'c' runs again: artifact" in n for n in notes), notes


def test_damaged_upstream_artifact_reruns_everything_below_it(tmp_path: Path) -> None:
    wf = Diamond(tmp_path, str(tmp_path / "runs.db"))
    wf.run()
    (tmp_path / "a.txt").write_text("壊れた", encoding="utf-8")
    wf.ran.clear()
    wf.fail_d = False
    result = wf.run()
    assert sorted(wf.ran) == ["a", "b", "c", "d"]
    assert result.resumed_steps == []


def test_fresh_starts_over(tmp_path: Path) -> None:
    wf = Diamond(tmp_path, str(tmp_path / "runs.db"))
    wf.run()
    wf.ran.clear()
    wf.fail_d = False
    result = wf.run(fresh=True)
    assert sorted(wf.ran) == ["a", "b", "c", "d"] and result.resumed_steps == []
    runs = wf.engine.run_store.list_runs("p-1")
    assert runs[0]["fresh"] == 1 and runs[0]["resumed_from"] is None


def test_completed_run_is_not_resumed(tmp_path: Path) -> None:
    wf = Diamond(tmp_path, str(tmp_path / "runs.db"))
    wf.fail_d = False
    wf.run()
    wf.ran.clear()
    result = wf.run()
    assert sorted(wf.ran) == ["a", "b", "c", "d"] and result.resumed_steps == []


def test_cancelled_run_resumes(tmp_path: Path) -> None:
    wf = Diamond(tmp_path, str(tmp_path / "runs.db"))
    wf.fail_d = False

    def cancel_after_b(state):
        if state.step_statuses["b"] is StepStatus.COMPLETED and state.step_statuses["c"] is StepStatus.COMPLETED:
            wf.engine.cancel_workflow("p-1", "止めた")

    first = wf.run(progress_callback=cancel_after_b)
    assert first.status is StepStatus.CANCELLED
    wf.ran.clear()
    second = wf.run()
    assert wf.ran == ["d"] and second.status is StepStatus.COMPLETED


def test_non_json_output_marks_step_not_resumable(tmp_path: Path) -> None:
    wf = Diamond(tmp_path, str(tmp_path / "runs.db"))
    wf.extra = {"b": {"voices": {"霊夢", "魔理沙"}}, "c": {"pair": ("x", 1), "where": tmp_path / "c.txt"}}
    wf.run()
    store = wf.engine.run_store
    run_id = store.list_runs("p-1")[0]["run_id"]
    stored = store.outputs(run_id)
    assert stored["b"]["voices"] == {"__yukkuri_repr__": repr({"霊夢", "魔理沙"})}
    assert stored["c"]["where"] == tmp_path / "c.txt"  # a Path comes back as a Path
    wf.ran.clear()
    wf.fail_d = False
    result = wf.run()
    # b's set cannot be stored exactly: b runs again (and d, which needs it); c is reused.
    assert sorted(wf.ran) == ["b", "d"]
    assert result.step_results["c"].output_data["pair"] == ["x", 1]
    assert result.step_results["c"].output_data["where"] == tmp_path / "c.txt"
    assert result.step_results["b"].output_data["voices"] == {"霊夢", "魔理沙"}


def test_redefined_dependencies_rerun_the_step(tmp_path: Path) -> None:
    wf = Diamond(tmp_path, str(tmp_path / "runs.db"))
    wf.run()
    wf.engine.register_workflow("diamond", [
        W(name="a"), W(name="b", dependencies=["a"]), W(name="c"), W(name="d", dependencies=["b", "c"]),
    ])
    wf.ran.clear()
    wf.fail_d = False
    wf.run()
    assert sorted(wf.ran) == ["c", "d"]


def test_completion_is_committed_before_dependents_start(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    seen: dict[str, list[str]] = {}
    engine = WorkflowEngine(run_store=str(db))
    engine.register_workflow("chain", [W(name="x"), W(name="y", dependencies=["x"]), W(name="z", dependencies=["y"])])

    def probe(name: str):
        def process(context, data):
            # Another connection (as another process would) sees the parent committed.
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                seen[name] = sorted(r[0] for r in conn.execute("SELECT step FROM outputs"))
            finally:
                conn.close()
            return {name: 1}

        return process

    for n in "xyz":
        engine.register_step_processor(n, probe(n))
    asyncio.run(engine.execute_workflow("chain", "p", {}))
    assert seen == {"x": [], "y": ["x"], "z": ["x", "y"]}


def test_store_object_and_events_match_engine(tmp_path: Path) -> None:
    store = SQLiteRunStore(tmp_path / "sub" / "runs.db")  # parent folder is created
    wf = Diamond(tmp_path, store)
    wf.fail_d = False
    result = wf.run()
    assert wf.engine.run_store is store
    stored = store.events(result.run_id)
    assert stored == wf.engine.events("p-1")
    assert [e.kind.value for e in stored][0] == "run_started"
    assert stored[-1].kind.value == "run_finished"


def test_restored_result_keeps_metadata_and_attempts(tmp_path: Path) -> None:
    wf = Diamond(tmp_path, str(tmp_path / "runs.db"))

    async def b_with_meta(context, data):
        wf.ran.append("b")
        return StepResult.success("b", {"b_file": "none"}, {"tokens": 42})

    wf.engine.register_step_processor("b", b_with_meta)
    first = wf.run()
    wf.fail_d = False
    second = wf.run()
    b = second.step_results["b"]
    assert b.status is StepStatus.COMPLETED and b.metadata["tokens"] == 42
    assert b.metadata["resumed_from_run"] == first.run_id
    assert b.attempts == 1 and len(b.attempt_history) == 1
