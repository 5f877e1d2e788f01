"""Safety: hostile project ids stay data (in SQL and in file names), and the store never unpickles."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import os
import pickle
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import yukkuri_nb.core.store as store_module
from yukkuri_nb.cli import main as cli_main
from yukkuri_nb.core import StepStatus, WorkflowEngine
from yukkuri_nb.core.store import RunStoreError, SQLiteRunStore
from yukkuri_nb.core.workflow_step import WorkflowStepDefinition as W
from yukkuri_nb.runs_cli import safe_file_stem

HOSTILE = [
    "../../etc/passwd", "/etc/passwd", "..", ".", "a/../../b", "..\\..\\windows", "x'); DROP TABLE runs; --",
    "%", "_", "動画/../../1", "nul\0byte", "\n", " ", "~root", "$(touch pwned)",
]


def _engine(db: Path) -> WorkflowEngine:
    engine = WorkflowEngine(run_store=str(db))
    engine.register_workflow("one", [W(name="only")])
    engine.register_step_processor("only", lambda context, data: {"project": context.project_id})
    return engine


def _export_into(folder: Path, db: Path, run: str) -> list[Path]:
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["runs", "export", run, "--db", str(db), "-o", str(folder) + os.sep]) == 0
    return list(folder.iterdir())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(project_id=st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=40)))
def test_hostile_project_ids_are_stored_as_data_and_exported_inside_the_folder(tmp_path_factory, project_id: str) -> None:
    tmp = tmp_path_factory.mktemp("ids")
    db = tmp / "runs.db"
    engine = _engine(db)
    result = asyncio.run(engine.execute_workflow("one", project_id, {}))
    engine.close()
    assert result.status is StepStatus.COMPLETED

    store = SQLiteRunStore(db, readonly=True)
    runs = store.list_runs(project_id)
    assert [r["project_id"] for r in runs] == [project_id]  # the id round-trips exactly
    assert store.resolve_run_id(result.run_id) == result.run_id
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.close()
    assert {"runs", "steps", "attempts", "events", "outputs", "artifacts"} <= tables

    out = tmp / "exports"
    out.mkdir()
    files = _export_into(out, db, result.run_id)
    assert len(files) == 1 and files[0].parent == out and files[0].is_file()
    assert files[0].name == f"{safe_file_stem(project_id)}-{result.run_id[:12]}.json"


def test_like_wildcards_in_a_run_id_match_nothing_by_accident(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    engine = _engine(db)
    for pid in ("a", "b"):
        asyncio.run(engine.execute_workflow("one", pid, {}))
    engine.close()
    store = SQLiteRunStore(db, readonly=True)
    for pattern in ("%", "_", "%%", "\\"):
        with pytest.raises(RunStoreError, match=r"^no run .* in run store"):
            store.resolve_run_id(pattern)


@pytest.mark.parametrize("text", ["../../etc/passwd", "..", "", ".hidden", "a/b\\c", "x" * 500, "動画 1"])
def test_safe_file_stem_stays_in_its_folder(tmp_path: Path, text: str) -> None:
    stem = safe_file_stem(text)
    assert stem and "/" not in stem and "\\" not in stem and not stem.startswith(".") and len(stem) <= 80
    assert (tmp_path / stem).resolve().parent == tmp_path.resolve()


def test_the_store_module_never_imports_an_unpickler() -> None:
    tree = ast.parse(Path(store_module.__file__).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert not called & {"eval", "exec", "__import__"}


class _Payload:
    """Unpickling this writes a marker file: proof that something unpickled stored data."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def test_a_pickle_planted_in_the_store_is_never_loaded(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    ran: list[str] = []
    engine = WorkflowEngine(run_store=str(db))
    engine.register_workflow("two", [W(name="first"), W(name="second", dependencies=["first"])])
    fail = {"second": True}

    def make(name: str):
        def process(context, data):
            ran.append(name)
            if fail.get(name):
                raise RuntimeError("later")
            return {name: 1}

        return process

    for n in ("first", "second"):
        engine.register_step_processor(n, make(n))
    asyncio.run(engine.execute_workflow("two", "p", {}))
    marker = tmp_path / "pwned.txt"
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE outputs SET output = ? WHERE step = 'first'", (pickle.dumps(_Payload(str(marker))),))
        conn.execute("UPDATE events SET data = ? WHERE kind = 'step_completed'", (pickle.dumps(_Payload(str(marker))),))
    conn.close()

    fail["second"] = False
    ran.clear()
    result = asyncio.run(engine.execute_workflow("two", "p", {}))
    assert result.status is StepStatus.COMPLETED
    assert ran == ["first", "second"]  # the unreadable stored output is not trusted: the step runs again
    assert not marker.exists()
    store = SQLiteRunStore(db, readonly=True)
    first_run = store.list_runs("p")[-1]["run_id"]
    # JSON only: the planted records read as notes, never as objects; the rest of the history stays readable.
    completed = [e for e in store.events(first_run) if e.kind.value == "step_completed"]
    assert completed and all(e.data == {"__yukkuri_repr__": f"<unreadable data of event {e.seq}: not JSON>"} for e in completed)
    assert store.outputs(first_run)["first"] == {"__yukkuri_repr__": "<unreadable output of step 'first': not JSON>"}
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli_main(["runs", "export", first_run, "--db", str(db)]) == 0
    assert not marker.exists()
