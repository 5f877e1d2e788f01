"""The run store: runs, steps, attempts, events and outputs recorded in SQLite.

``WorkflowEngine(run_store="runs.db")`` opens a :class:`SQLiteRunStore` and
subscribes it to the engine's event stream.  Nothing else in the engine
writes to disk, and without a run store nothing is written at all.

What is recorded (tables; the schema version is SQLite's ``user_version``
and :data:`MIGRATIONS` brings an older file up to date on open):

``runs``
    one row per run: ``run_id``, project, workflow, status (``running``,
    ``completed``, ``failed``, ``cancelled``, or ``interrupted`` for a run
    whose process died), reason, wall-clock start and end, the run it resumed.
``steps`` / ``attempts``
    the last status of every step, and every attempt with its slot, clock
    times, status and error.
``events``
    every :class:`~yukkuri_nb.core.events.Event` (``data`` as JSON).
``outputs`` / ``artifacts``
    the ``output_data`` and ``metadata`` of every completed step, as JSON.
    **Artifact convention**: every output value (at any depth of dicts and
    lists) that is a ``str`` or :class:`os.PathLike` naming an existing
    regular file when the step completes is recorded as an artifact: its
    absolute path, size and SHA-256.  The file stays where the step wrote it;
    the store only references it.

Resume (:meth:`SQLiteRunStore.load_completed`, called by the engine at the
start of every run unless ``fresh=True``): when the latest stored run of the
same project and workflow did not complete (failed, cancelled, or left
``running`` by a process that died), every step it completed is offered
back, except a step

* whose output was not exactly representable in JSON (see below),
* whose dependencies changed since (the step was redefined),
* any of whose artifacts is missing or no longer matches its size and SHA-256.

The engine restores a step only when its parents were restored too, so such
a step re-runs together with everything downstream of it.

Outputs that JSON cannot hold exactly (sets, bytes, dicts with non-string
keys, arbitrary objects, ...) are stored as a ``repr`` for the history, and
the step is marked *not resumable*: it simply runs again on resume.
``pathlib`` paths round-trip as paths; tuples come back as lists.

Durability and batching: the store writes on the event loop's thread, in
short transactions.  A step's completion is committed in the observer call
that sees its ``step_completed`` event, i.e. before the engine queues any of
its dependents.  Other events are batched and committed at the next step
completion or failure, at the end of a run, when ``max_batch`` events are
waiting, or when the oldest waiting event is ``max_delay`` seconds old.  A
run's first row is committed together with the steps it restored, so a
process killed during a resume leaves the previous run as the latest.  The
default ``synchronous="NORMAL"`` (in WAL mode) survives a killed process;
pass ``synchronous="FULL"`` to also survive a power cut.

When writing fails (disk full, file made read-only, database locked beyond
``busy_timeout``): the run goes on; the records stay in memory and are
retried at the next commit point (at most every ``retry_interval`` seconds,
and always at the end of a run and on :meth:`close`); :attr:`errors` counts
the failures, the ``yukkuri_nb.store`` logger logs them, and every live run
gets one ``log`` event with ``level="warning"`` when the store starts failing
(and one when it recovers).  Completions that could not be committed are not
lost while the process lives; if the process dies before the store recovers,
those steps simply run again on the next resume.  A store that cannot be
opened or created at all raises :class:`RunStoreError` at once (before any
run starts).

Security: the store only ever stores and parses JSON (never pickle), and
every SQL statement is parameterised.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import pathlib
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

from .definitions import StepStatus
from .events import Event, EventKind
from .results import StepAttempt, StepResult
from .workflow_exceptions import WorkflowEngineError

if TYPE_CHECKING:  # pragma: no cover
    from .engine import WorkflowEngine
    from .graph import WorkflowGraph

__all__ = ["SQLiteRunStore", "RunStoreError", "SCHEMA_VERSION", "MIGRATIONS"]

log = logging.getLogger("yukkuri_nb.store")

_PATH_KEY = "__yukkuri_path__"
_REPR_KEY = "__yukkuri_repr__"
_REPR_LIMIT = 2000

#: ``user_version`` -> DDL statements that bring a store from the previous version to it.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL UNIQUE,
            project_id TEXT NOT NULL,
            workflow_name TEXT NOT NULL,
            status TEXT NOT NULL,
            reason TEXT,
            total_steps INTEGER NOT NULL,
            fresh INTEGER NOT NULL DEFAULT 0,
            resumed_from TEXT,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            clock_start REAL,
            clock_end REAL,
            host TEXT,
            pid INTEGER
        )""",
        "CREATE INDEX runs_by_project ON runs (project_id, workflow_name, id)",
        """CREATE TABLE steps (
            run_id TEXT NOT NULL,
            step TEXT NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            queued_time REAL,
            started_time REAL,
            finished_time REAL,
            restored INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            error_type TEXT,
            PRIMARY KEY (run_id, step)
        ) WITHOUT ROWID""",
        """CREATE TABLE attempts (
            run_id TEXT NOT NULL,
            step TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            slot INTEGER,
            started_time REAL,
            finished_time REAL,
            status TEXT NOT NULL,
            error TEXT,
            error_type TEXT,
            PRIMARY KEY (run_id, step, attempt)
        ) WITHOUT ROWID""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT,
            seq INTEGER NOT NULL,
            time REAL NOT NULL,
            kind TEXT NOT NULL,
            project_id TEXT,
            workflow_name TEXT,
            step TEXT,
            data TEXT NOT NULL
        )""",
        "CREATE INDEX events_by_run ON events (run_id, seq)",
        """CREATE TABLE outputs (
            run_id TEXT NOT NULL,
            step TEXT NOT NULL,
            output TEXT NOT NULL,
            metadata TEXT NOT NULL,
            resumable INTEGER NOT NULL,
            dependencies TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            execution_time REAL,
            started_at TEXT,
            completed_at TEXT,
            PRIMARY KEY (run_id, step)
        ) WITHOUT ROWID""",
        """CREATE TABLE artifacts (
            run_id TEXT NOT NULL,
            step TEXT NOT NULL,
            path TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            PRIMARY KEY (run_id, step, path)
        ) WITHOUT ROWID""",
    ),
}

#: The schema this code writes; a file with a newer ``user_version`` is refused.
SCHEMA_VERSION = max(MIGRATIONS)


class RunStoreError(WorkflowEngineError):
    """The run store cannot be opened, or a run / record asked for does not exist."""


# --------------------------------------------------------------------------- JSON
def _encode(value: Any, paths: list[str], depth: int = 0) -> tuple[Any, bool]:
    """``(JSON-ready value, exact)``; collects candidate artifact paths into ``paths``."""
    if value is None or isinstance(value, bool):
        return value, True
    if isinstance(value, str):
        if 0 < len(value) < 1024 and "\n" not in value and "\0" not in value:
            paths.append(value)
        return str(value), True
    if isinstance(value, int):
        return int(value), True
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value), True
        return {_REPR_KEY: repr(value)}, False
    if isinstance(value, pathlib.PurePath):
        paths.append(str(value))
        return {_PATH_KEY: str(value)}, True
    if depth < 64:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            exact = True
            for k, v in value.items():
                if not isinstance(k, str) or k in (_PATH_KEY, _REPR_KEY):
                    exact = False
                    k = str(k)
                out[k], ok = _encode(v, paths, depth + 1)
                exact = exact and ok
            return out, exact
        if isinstance(value, (list, tuple)):
            items = []
            exact = True
            for v in value:
                enc, ok = _encode(v, paths, depth + 1)
                items.append(enc)
                exact = exact and ok
            return items, exact
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the store
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return {_REPR_KEY: text[:_REPR_LIMIT]}, False


def _decode_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _PATH_KEY in obj:
        return pathlib.Path(obj[_PATH_KEY])
    return obj


def _loads(text: str | None) -> Any:
    return json.loads(text, object_hook=_decode_hook) if text else {}


def _loads_or_note(text: Any, what: str) -> Any:
    """:func:`_loads` for reading history: a damaged record reads as a note, not an exception."""
    try:
        return _loads(text)
    except ValueError:  # not JSON (JSONDecodeError, or bytes that are not UTF-8)
        log.warning("run store: %s is not JSON; it reads as a note", what)
        return {_REPR_KEY: f"<unreadable {what}: not JSON>"}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr, allow_nan=False)


def _dumps_data(data: Any) -> str:
    try:
        return json.dumps(data, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return json.dumps({_REPR_KEY: repr(data)[:_REPR_LIMIT]})


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _parse_iso(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


# --------------------------------------------------------------------------- per-run bookkeeping
@dataclass(slots=True)
class _LiveRun:
    run_id: str
    project_id: str
    engine: Any
    graph: Any
    restoring: bool = True
    resumed_from: str | None = None


_UPSERT_STEP = (
    "INSERT INTO steps (run_id, step, status, attempts, queued_time, started_time, finished_time, restored, error, error_type) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, step) DO UPDATE SET status = excluded.status, "
    "attempts = max(steps.attempts, excluded.attempts), "
    "queued_time = coalesce(steps.queued_time, excluded.queued_time), "
    "started_time = coalesce(excluded.started_time, steps.started_time), "
    "finished_time = excluded.finished_time, restored = excluded.restored, "
    "error = excluded.error, error_type = excluded.error_type"
)
_INSERT_EVENT = (
    "INSERT INTO events (run_id, seq, time, kind, project_id, workflow_name, step, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_START_ATTEMPT = (
    "INSERT OR REPLACE INTO attempts (run_id, step, attempt, slot, started_time, finished_time, status, error, error_type) "
    "VALUES (?, ?, ?, ?, ?, NULL, 'running', NULL, NULL)"
)
_END_ATTEMPT = (
    "UPDATE attempts SET finished_time = ?, status = ?, error = ?, error_type = ? "
    "WHERE run_id = ? AND step = ? AND attempt = ?"
)
_CANCEL_ATTEMPTS = (
    "UPDATE attempts SET finished_time = ?, status = 'cancelled' WHERE run_id = ? AND step = ? AND status = 'running'"
)
_INSERT_RUN = (
    "INSERT OR REPLACE INTO runs (run_id, project_id, workflow_name, status, reason, total_steps, fresh, resumed_from, "
    "started_at, finished_at, clock_start, clock_end, host, pid) VALUES (?, ?, ?, 'running', NULL, ?, ?, NULL, ?, NULL, ?, NULL, ?, ?)"
)
_FINISH_RUN = "UPDATE runs SET status = ?, reason = ?, finished_at = ?, clock_end = ? WHERE run_id = ?"
_RESUMED_FROM = "UPDATE runs SET resumed_from = ? WHERE run_id = ?"
_INSERT_OUTPUT = (
    "INSERT OR REPLACE INTO outputs (run_id, step, output, metadata, resumable, dependencies, attempts, execution_time, "
    "started_at, completed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_ARTIFACT = "INSERT OR REPLACE INTO artifacts (run_id, step, path, size, sha256) VALUES (?, ?, ?, ?, ?)"


class SQLiteRunStore:
    """Records runs in an SQLite file and offers completed steps back for resume.

    Parameters:
        path: the database file (created with its parent folder if missing).
        readonly: open for reading only (``runs list`` on a read-only medium);
            attaching a read-only store to an engine raises.
        synchronous: SQLite ``synchronous`` level, ``"NORMAL"`` (survives a
            killed process) or ``"FULL"`` (also survives a power cut).
        max_batch: events kept in memory before a commit (> 0).
        max_delay: seconds the oldest uncommitted event may wait, checked
            whenever an event arrives (> 0).
        busy_timeout: seconds to wait for another process holding the write lock.
        retry_interval: seconds between attempts to write while writing fails.

    Raises :class:`RunStoreError` when the file cannot be opened or created,
    is not an SQLite database, or was written by a newer schema.

    Attributes: ``errors`` (failed writes so far), ``last_error``,
    ``dropped`` (records given up on: only records SQLite itself rejects as
    invalid, never records that failed for lack of space or permission),
    ``pending`` (records not yet committed), ``healthy``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        synchronous: str = "NORMAL",
        max_batch: int = 256,
        max_delay: float = 1.0,
        busy_timeout: float = 10.0,
        retry_interval: float = 1.0,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise RunStoreError(f"run store path must be a file path, got {path!r}")
        if synchronous not in ("NORMAL", "FULL"):
            raise RunStoreError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise RunStoreError(f"max_batch must be an int >= 1, got {max_batch!r}")
        for name, value in (("max_delay", max_delay), ("busy_timeout", busy_timeout), ("retry_interval", retry_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise RunStoreError(f"{name} must be a number of seconds >= 0, got {value!r}")
        self.path = pathlib.Path(os.fspath(path)).expanduser().absolute()
        self.readonly = readonly
        self.synchronous = synchronous
        self.max_batch = max_batch
        self.max_delay = float(max_delay)
        self.busy_timeout = float(busy_timeout)
        self.retry_interval = float(retry_interval)
        self.errors = 0
        self.dropped = 0
        self.last_error: str | None = None
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[str, tuple]] = []
        self._oldest = 0.0
        self._failing = False
        self._next_retry = 0.0
        self._live: dict[tuple[int, str], _LiveRun] = {}
        self._engines: list[tuple[Any, Any]] = []
        self._digests: dict[tuple[str, int, int], str] = {}
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._connection()

    # ------------------------------------------------------------------ opening
    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            if self.readonly:
                conn = self._open_readonly()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
                )
                self._enable_wal(conn)
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
                self._migrate(conn)
        except (sqlite3.Error, OSError) as exc:
            hint = (
                "move the file away (it is not a yukkuri_nb run store) or pass another path"
                if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc)
                else "pass a writable path, or run_store=None to run without a store"
            )
            raise RunStoreError(f"cannot open run store {str(self.path)!r}: {exc}; {hint}") from exc
        self._conn = conn
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL needs an exclusive lock, and SQLite
        # answers "database is locked" at once, without its busy handler,
        # while another process holds one (two processes opening one new
        # store together).  Retry until busy_timeout, as every other
        # statement waits.
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.1)

    def _open_readonly(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise RunStoreError(f"run store {str(self.path)!r} does not exist; run a workflow with run_store=... first")
        uri = self.path.as_uri()
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError:
            # A WAL file in a read-only folder cannot get its -shm file: read it as immutable.
            conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None, check_same_thread=False)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this yukkuri_nb's {SCHEMA_VERSION}")
        if version < 1:
            raise sqlite3.DatabaseError("it has no run store schema")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} was written by a newer yukkuri_nb (this one reads up to {SCHEMA_VERSION}); upgrade yukkuri_nb"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for target in sorted(MIGRATIONS):
                if target > version:
                    for ddl in MIGRATIONS[target]:
                        conn.execute(ddl)
                    conn.execute(f"PRAGMA user_version = {int(target)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        """The ``user_version`` of the open file."""
        with self._lock:
            return self._connection().execute("PRAGMA user_version").fetchone()[0]

    @property
    def pending(self) -> int:
        """Records waiting in memory for the next commit."""
        return len(self._pending)

    @property
    def healthy(self) -> bool:
        """False while writes are failing (see :attr:`errors`, :attr:`last_error`)."""
        return not self._failing

    # ------------------------------------------------------------------ engine hooks
    def attach(self, engine: "WorkflowEngine") -> None:
        """Subscribe to ``engine``'s events (called by ``WorkflowEngine(run_store=...)``)."""
        if self.readonly:
            raise RunStoreError(
                f"run store {str(self.path)!r} was opened with readonly=True and cannot record runs; "
                "open it without readonly to attach it to an engine"
            )
        key = id(engine)
        unsubscribe = engine.subscribe(lambda event: self._on_event(engine, key, event))
        self._engines.append((engine, unsubscribe))

    def detach(self, engine: "WorkflowEngine") -> None:
        """Stop recording ``engine``'s events (pending records are committed)."""
        for eng, unsubscribe in list(self._engines):
            if eng is engine:
                unsubscribe()
                self._engines.remove((eng, unsubscribe))
        self.flush(force=True)

    def _on_event(self, engine: Any, key: int, event: Event) -> None:
        with self._lock:
            live = self._live.get((key, event.project_id)) if event.project_id is not None else None
            kind = event.kind
            if kind is EventKind.RUN_STARTED:
                live = self._start_run(engine, key, event)
            run_id = live.run_id if live else None
            self._pending_event(run_id, event)
            if live is not None:
                self._record(live, event)
            if not self._pending:
                return
            commit = False
            if live is not None and live.restoring and kind is not EventKind.RUN_STARTED:
                if not (kind is EventKind.STEP_COMPLETED and event.data.get("restored")) and kind is not EventKind.LOG:
                    live.restoring = False  # the restore is over: commit the run with what it restored
                    commit = True
            if kind is EventKind.STEP_COMPLETED and not event.data.get("restored"):
                commit = True
            elif kind in (EventKind.STEP_FAILED, EventKind.RUN_FINISHED):
                commit = True
            elif not any(r.restoring for r in self._live.values()):
                commit = len(self._pending) >= self.max_batch or time.monotonic() - self._oldest >= self.max_delay
            if kind is EventKind.RUN_FINISHED and live is not None:
                self._live.pop((key, event.project_id), None)
            if commit:
                self._flush_locked(force=kind is EventKind.RUN_FINISHED, live_engine=engine)

    def _start_run(self, engine: Any, key: int, event: Event) -> _LiveRun:
        data = event.data
        try:
            graph = engine.get_workflow(event.workflow_name)
        except Exception:
            graph = None
        live = _LiveRun(str(data.get("run_id") or f"{event.project_id}-{event.seq}"), event.project_id, engine, graph)
        self._live[(key, event.project_id)] = live
        wall = _iso(engine.clock.wall())
        self._add(
            _INSERT_RUN,
            (live.run_id, event.project_id, event.workflow_name, int(data.get("total_steps") or 0),
             int(bool(data.get("fresh"))), wall, event.time, self._host, self._pid),
        )
        return live

    def _pending_event(self, run_id: str | None, event: Event) -> None:
        self._add(
            _INSERT_EVENT,
            (run_id, event.seq, event.time, event.kind.value, event.project_id, event.workflow_name, event.step,
             _dumps_data(event.data)),
        )

    def _add(self, sql: str, params: tuple) -> None:
        if not self._pending:
            self._oldest = time.monotonic()
        self._pending.append((sql, params))

    def _record(self, live: _LiveRun, event: Event) -> None:
        kind = event.kind
        run_id = live.run_id
        step = event.step
        data = event.data
        t = event.time
        if kind is EventKind.STEP_QUEUED:
            self._add(_UPSERT_STEP, (run_id, step, "ready", 0, t, None, None, 0, None, None))
        elif kind is EventKind.STEP_STARTED:
            attempt = int(data.get("attempt", 1))
            self._add(_UPSERT_STEP, (run_id, step, "running", attempt, None, t, None, 0, None, None))
            self._add(_START_ATTEMPT, (run_id, step, attempt, data.get("slot"), t))
        elif kind is EventKind.STEP_RETRYING:
            attempt = int(data.get("attempt", 1))
            error = str(data.get("error", ""))
            self._add(_END_ATTEMPT, (t, "failed", error, data.get("error_type"), run_id, step, attempt))
            self._add(_UPSERT_STEP, (run_id, step, "retrying", attempt, None, None, None, 0, error, data.get("error_type")))
        elif kind is EventKind.STEP_COMPLETED:
            restored = bool(data.get("restored"))
            attempt = int(data.get("attempt") or 0)
            if not restored:
                self._add(_END_ATTEMPT, (t, "completed", None, None, run_id, step, attempt))
            self._add(_UPSERT_STEP, (run_id, step, "completed", attempt, None, None, t, int(restored), None, None))
            self._record_output(live, step, restored)
        elif kind is EventKind.STEP_FAILED:
            attempt = int(data.get("attempt", 1))
            error = str(data.get("error", ""))
            self._add(_END_ATTEMPT, (t, "failed", error, data.get("error_type"), run_id, step, attempt))
            self._add(_UPSERT_STEP, (run_id, step, "failed", attempt, None, None, t, 0, error, data.get("error_type")))
        elif kind is EventKind.STEP_SKIPPED:
            self._add(_UPSERT_STEP, (run_id, step, "skipped", 0, None, None, t, 0, str(data.get("reason", "")), None))
        elif kind is EventKind.STEP_CANCELLED:
            self._add(_CANCEL_ATTEMPTS, (t, run_id, step))
            self._add(_UPSERT_STEP, (run_id, step, "cancelled", 0, None, None, t, 0, str(data.get("reason") or ""), None))
        elif kind is EventKind.RUN_FINISHED:
            wall = _iso(live.engine.clock.wall())
            self._add(_FINISH_RUN, (str(data.get("status")), data.get("reason"), wall, t, run_id))

    def _record_output(self, live: _LiveRun, step: str, restored: bool) -> None:
        result = live.engine.get_step_result(live.project_id, step)
        if result is None:
            return
        paths: list[str] = []
        output, exact = _encode(result.output_data, paths)
        metadata, _ = _encode(result.metadata, [])
        deps: list[str] = []
        graph = live.graph
        if graph is not None and step in graph.index:
            deps = sorted(graph.steps[graph.index[step]].dependencies)
        self._add(
            _INSERT_OUTPUT,
            (live.run_id, step, _dumps(output), _dumps(metadata), int(exact), json.dumps(deps), int(result.attempts or 0),
             result.execution_time, _iso(result.started_at), _iso(result.completed_at)),
        )
        for path, size, digest in self._artifacts(paths, trust_cache=restored):
            self._add(_INSERT_ARTIFACT, (live.run_id, step, path, size, digest))

    def _artifacts(self, candidates: Iterable[str], *, trust_cache: bool) -> list[tuple[str, int, str]]:
        out: dict[str, tuple[str, int, str]] = {}
        for candidate in candidates:
            try:
                p = os.path.abspath(candidate)
                if p in out:
                    continue
                st = os.stat(p)
            except (OSError, ValueError):
                continue
            if not os.path.isfile(p):
                continue
            cache_key = (p, st.st_size, st.st_mtime_ns)
            digest = self._digests.get(cache_key) if trust_cache else None
            if digest is None:
                try:
                    digest = _sha256(p)
                except OSError as exc:
                    log.warning("run store: cannot read artifact %r (%s); it is not recorded", p, exc)
                    continue
                self._digests[cache_key] = digest
            out[p] = (p, st.st_size, digest)
        return list(out.values())

    # ------------------------------------------------------------------ committing
    def flush(self, *, force: bool = True) -> bool:
        """Commit every waiting record now; True if nothing is left waiting.

        Without ``force``, a store whose writes are failing only retries after
        ``retry_interval`` seconds.
        """
        with self._lock:
            return self._flush_locked(force=force, live_engine=None)

    def _flush_locked(self, *, force: bool, live_engine: Any) -> bool:
        if not self._pending or self.readonly:
            return not self._pending
        if self._failing and not force and time.monotonic() < self._next_retry:
            return False
        batch = self._pending
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in batch:
                    conn.execute(sql, params)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
        except (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError) as exc:
            # A record SQLite rejects as invalid would block every later one:
            # write the batch one by one and give up on the bad records only.
            if not self._write_one_by_one(batch, exc):
                self._write_failed(exc, live_engine)
                return False
        except (sqlite3.Error, RunStoreError, OSError) as exc:
            self._write_failed(exc, live_engine)
            return False
        self._pending = []
        if self._failing:
            self._failing = False
            log.warning("run store %r is writable again; every record kept in memory is now committed", str(self.path))
            self._warn_runs(live_engine, "run store recovered: every record kept in memory is now committed", "info")
        return True

    def _write_one_by_one(self, batch: list[tuple[str, tuple]], first: BaseException) -> bool:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for sql, params in batch:
                conn.execute("SAVEPOINT one")
                try:
                    conn.execute(sql, params)
                    conn.execute("RELEASE one")
                except (sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError) as exc:
                    conn.execute("ROLLBACK TO one")
                    conn.execute("RELEASE one")
                    self.dropped += 1
                    self.errors += 1
                    self.last_error = str(exc)
                    log.error("run store %r rejected a record (%s): %.200s %r", str(self.path), exc, sql, params)
            conn.execute("COMMIT")
            return True
        except sqlite3.Error:
            _rollback(conn)
            return False

    def _write_failed(self, exc: BaseException, live_engine: Any) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._next_retry = time.monotonic() + self.retry_interval
        if self._failing:
            log.debug("run store %r still cannot write: %s", str(self.path), exc)
            return
        self._failing = True
        message = (
            f"run store {str(self.path)!r} cannot write ({exc}); the run goes on, {len(self._pending)} records are "
            "kept in memory and retried; free disk space or make the file writable (then engine.run_store.flush()), "
            "or steps completed meanwhile run again if this process dies first"
        )
        log.error("%s", message)
        self._warn_runs(live_engine, message, "warning")

    def _warn_runs(self, engine: Any, message: str, level: str) -> None:
        # Only from an observer call: we are then on the engine's loop thread.
        if engine is None:
            return
        runs = getattr(engine, "_runs", {})
        for run in list(runs.values()):
            try:
                engine._emit_if_active(run, EventKind.LOG, None, {"level": level, "source": "run_store", "message": message, "store_errors": self.errors})
            except Exception:  # pragma: no cover - telling must never break the run
                log.exception("run store: could not emit a warning event")

    def close(self) -> None:
        """Commit what is waiting and close the file (it reopens on next use)."""
        with self._lock:
            if not self._flush_locked(force=True, live_engine=None):
                log.error(
                    "run store %r closed with %d records it could not write (%s)",
                    str(self.path), len(self._pending), self.last_error,
                )
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None

    # ------------------------------------------------------------------ resume
    def load_completed(self, workflow_name: str, project_id: str, graph: "WorkflowGraph") -> dict[str, StepResult]:
        """Completed steps of the latest unfinished run of ``project_id``, reusable now.

        Returns ``{}`` when there is no stored run, or the latest one
        completed.  Steps with changed dependencies, non-JSON outputs, or a
        missing or altered artifact are left out (they run again).
        """
        with self._lock:
            try:
                return self._load_completed(workflow_name, project_id, graph)
            except sqlite3.Error as exc:
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error(
                    "run store %r cannot be read (%s); project %r runs from the start", str(self.path), exc, project_id
                )
                return {}

    def _load_completed(self, workflow_name: str, project_id: str, graph: "WorkflowGraph") -> dict[str, StepResult]:
        # No flush here: the new run's first records wait to be committed
        # together with the steps it restores.
        with self._lock:
            conn = self._connection()
            current = {r.run_id for r in self._live.values() if r.project_id == project_id}
            row = None
            for cand in conn.execute(
                "SELECT run_id, status, host, pid FROM runs WHERE project_id = ? AND workflow_name = ? ORDER BY id DESC LIMIT ?",
                (project_id, workflow_name, len(current) + 1),
            ):
                if cand[0] not in current:
                    row = cand
                    break
            if row is None or row[1] == "completed":
                return {}
            prev_id, status, host, pid = row
            notes: list[str] = []
            if status == "running" and host == self._host and pid != self._pid and not _pid_alive(pid):
                self._add("UPDATE runs SET status = 'interrupted', reason = ? WHERE run_id = ? AND status = 'running'",
                          (f"process {pid} died during the run", prev_id))
            elif status == "running" and (host != self._host or pid != self._pid):
                notes.append(f"run {prev_id} of project {project_id!r} may still be running in process {pid} on {host}")
            artifacts: dict[str, list[tuple[str, int, str]]] = {}
            for step, path, size, digest in conn.execute(
                "SELECT step, path, size, sha256 FROM artifacts WHERE run_id = ?", (prev_id,)
            ):
                artifacts.setdefault(step, []).append((path, size, digest))
            attempts: dict[str, list[StepAttempt]] = {}
            for step, attempt, t0, t1, st, err, etype in conn.execute(
                "SELECT step, attempt, started_time, finished_time, status, error, error_type FROM attempts "
                "WHERE run_id = ? ORDER BY step, attempt", (prev_id,)
            ):
                attempts.setdefault(step, []).append(
                    StepAttempt(attempt, t0 or 0.0, t1 if t1 is not None else (t0 or 0.0), _status(st), err, etype)
                )
            done: dict[str, StepResult] = {}
            for step, output, metadata, resumable, deps, n_attempts, exec_time, started, completed in conn.execute(
                "SELECT step, output, metadata, resumable, dependencies, attempts, execution_time, started_at, completed_at "
                "FROM outputs WHERE run_id = ?", (prev_id,)
            ):
                i = graph.index.get(step)
                if i is None:
                    continue
                if not resumable:
                    notes.append(f"step {step!r} runs again: its output was not JSON-serialisable")
                    continue
                if json.loads(deps) != sorted(graph.steps[i].dependencies):
                    notes.append(f"step {step!r} runs again: its dependencies changed since run {prev_id}")
                    continue
                bad = self._check_artifacts(artifacts.get(step, ()))
                if bad:
                    notes.append(f"step {step!r} runs again: artifact {bad}")
                    continue
                try:
                    result = StepResult(
                        step, StepStatus.COMPLETED, _loads(output), _loads(metadata),
                        execution_time=exec_time, started_at=_parse_iso(started), completed_at=_parse_iso(completed),
                        attempts=int(n_attempts or 0), attempt_history=attempts.get(step, []),
                    )
                except (ValueError, TypeError) as exc:
                    notes.append(f"step {step!r} runs again: its stored output cannot be read ({exc})")
                    continue
                result.metadata.setdefault("resumed_from_run", prev_id)
                done[step] = result
            for live in self._live.values():
                if live.run_id in current:
                    live.resumed_from = prev_id
                    self._add(_RESUMED_FROM, (prev_id, live.run_id))
            for note in notes:
                log.info("run store: %s", note)
            self._note_runs(project_id, notes)
            return done

    def _check_artifacts(self, items: Iterable[tuple[str, int, str]]) -> str | None:
        for path, size, digest in items:
            try:
                st = os.stat(path)
            except OSError:
                return f"{path!r} is missing"
            if st.st_size != size:
                return f"{path!r} changed size ({size} -> {st.st_size} bytes)"
            try:
                actual = _sha256(path)
            except OSError as exc:
                return f"{path!r} cannot be read ({exc})"
            if actual != digest:
                return f"{path!r} changed (SHA-256 differs)"
            self._digests[(path, st.st_size, st.st_mtime_ns)] = actual
        return None

    def _note_runs(self, project_id: str, notes: list[str]) -> None:
        if not notes:
            return
        for engine, _ in self._engines:
            run = getattr(engine, "_runs", {}).get(project_id)
            if run is not None and getattr(run, "loop_thread", None) == threading.get_ident():
                for note in notes:
                    engine._emit_if_active(run, EventKind.LOG, None, {"level": "info", "source": "run_store", "message": note})

    # ------------------------------------------------------------------ reading the past
    def _read(self, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            self._flush_locked(force=False, live_engine=None)
            conn = self._connection()
            cur = conn.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def list_runs(
        self, project_id: str | None = None, workflow_name: str | None = None, *, status: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Stored runs, newest first, as dicts (``run_id``, ``project_id``, ``status``, counts, times, ...).

        A ``running`` run whose process is known to be dead reads ``interrupted``.
        """
        where, params = [], []
        for col, value in (("r.project_id", project_id), ("r.workflow_name", workflow_name)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        sql = (
            "SELECT r.*, "
            "(SELECT count(*) FROM steps s WHERE s.run_id = r.run_id AND s.status = 'completed') AS completed_steps, "
            "(SELECT count(*) FROM steps s WHERE s.run_id = r.run_id AND s.status = 'completed' AND s.restored) AS resumed_steps, "
            "(SELECT count(*) FROM steps s WHERE s.run_id = r.run_id AND s.status = 'failed') AS failed_steps "
            "FROM runs r" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY r.id DESC"
        )
        rows = [self._live_status(r) for r in self._read(sql, tuple(params))]
        if status is not None:
            rows = [r for r in rows if r["status"] == status]
        return rows[:limit] if limit is not None else rows

    def _live_status(self, row: dict[str, Any]) -> dict[str, Any]:
        row.pop("id", None)
        if row["status"] == "running" and row.get("host") == self._host and row.get("pid") != self._pid:
            if row.get("pid") is not None and not _pid_alive(row["pid"]):
                row["status"] = "interrupted"
        return row

    def resolve_run_id(self, run_id: str) -> str:
        """The full id of the run ``run_id`` names: an id, a unique prefix, or a project id (its latest run).

        Raises :class:`RunStoreError` when nothing or several runs match.
        """
        if not isinstance(run_id, str) or not run_id:
            raise RunStoreError(f"a run id must be a non-empty string, got {run_id!r}")
        rows = self._read("SELECT run_id FROM runs WHERE run_id = ?", (run_id,))
        if rows:
            return rows[0]["run_id"]
        escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._read("SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' LIMIT 3", (escaped + "%",))
        if len(rows) == 1:
            return rows[0]["run_id"]
        if len(rows) > 1:
            raise RunStoreError(f"run id prefix {run_id!r} matches several runs; give more characters")
        rows = self._read("SELECT run_id FROM runs WHERE project_id = ? ORDER BY id DESC LIMIT 1", (run_id,))
        if rows:
            return rows[0]["run_id"]
        raise RunStoreError(
            f"no run {run_id!r} in run store {str(self.path)!r} (neither a run id, a prefix of one, nor a project id); "
            "list them with `yukkuri-nb runs list`"
        )

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run: its row plus ``steps`` (list of dicts) and ``attempts``; ``run_id`` as in :meth:`resolve_run_id`."""
        rid = self.resolve_run_id(run_id)
        run = self._run_row(rid)
        run["steps"] = self.steps(rid)
        run["attempts"] = self._read("SELECT * FROM attempts WHERE run_id = ? ORDER BY started_time, step, attempt", (rid,))
        return run

    def _run_row(self, run_id: str) -> dict[str, Any]:
        rows = self._read("SELECT * FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise RunStoreError(f"no run {run_id!r} in run store {str(self.path)!r}")
        return self._live_status(rows[0])

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        """Per-step rows of a run (status, attempts, clock times, error, restored)."""
        rid = self.resolve_run_id(run_id)
        return self._read(
            "SELECT step, status, attempts, queued_time, started_time, finished_time, "
            "finished_time - started_time AS duration, restored, error, error_type FROM steps WHERE run_id = ? "
            "ORDER BY coalesce(queued_time, finished_time), step", (rid,)
        )

    def events(self, run_id: str) -> list[Event]:
        """The run's events as :class:`Event` objects in ``seq`` order (what ``engine.events`` returned)."""
        rid = self.resolve_run_id(run_id)
        out = []
        for r in self._read(
            "SELECT seq, time, kind, project_id, workflow_name, step, data FROM events WHERE run_id = ? ORDER BY seq", (rid,)
        ):
            try:
                kind = EventKind(r["kind"])
            except ValueError:
                continue  # a kind from a newer yukkuri_nb
            data = _loads_or_note(r["data"], f"data of event {r['seq']}")
            if isinstance(data, dict) and isinstance(data.get("pools"), list):  # JSON has no tuples; the engine's events carry one
                data["pools"] = tuple(data["pools"])
            out.append(Event(r["seq"], r["time"], kind, r["project_id"], r["workflow_name"], r["step"], data))
        return out

    def outputs(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Step name -> stored ``output_data`` (paths as :class:`pathlib.Path`, non-JSON values as ``{"__yukkuri_repr__": ...}``)."""
        rid = self.resolve_run_id(run_id)
        return {r["step"]: _loads_or_note(r["output"], f"output of step {r['step']!r}") for r in self._read("SELECT step, output FROM outputs WHERE run_id = ?", (rid,))}

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        """Files referenced by the run's outputs: ``step``, ``path``, ``size``, ``sha256``."""
        rid = self.resolve_run_id(run_id)
        return self._read("SELECT step, path, size, sha256 FROM artifacts WHERE run_id = ? ORDER BY step, path", (rid,))

    def export(self, run_id: str, fmt: str = "json", *, table: str = "events") -> str:
        """A run's history as text.

        ``fmt="json"``: one document with ``run``, ``steps``, ``attempts``,
        ``events``, ``outputs`` and ``artifacts``.  ``fmt="csv"``: one table,
        ``table="events"`` (``data`` as a JSON column), ``"steps"`` or ``"attempts"``.
        """
        if fmt not in ("json", "csv"):
            raise RunStoreError(f"export format must be 'json' or 'csv', got {fmt!r}")
        run = self.get_run(run_id)
        rid = run["run_id"]
        if fmt == "json":
            doc = {
                "format": "yukkuri_nb.run/1",
                "run": {k: v for k, v in run.items() if k not in ("steps", "attempts")},
                "steps": run["steps"],
                "attempts": run["attempts"],
                "events": [e.to_dict() for e in self.events(rid)],
                "outputs": self.outputs(rid),
                "artifacts": self.artifacts(rid),
            }
            return json.dumps(doc, ensure_ascii=False, indent=2, default=_json_default)
        if table == "events":
            rows = [dict(e.to_dict(), data=json.dumps(e.data, ensure_ascii=False)) for e in self.events(rid)]
            columns = ["seq", "time", "kind", "project_id", "workflow_name", "step", "data"]
        elif table in ("steps", "attempts"):
            rows = run[table]
            columns = list(rows[0]) if rows else []
        else:
            raise RunStoreError(f"export table must be 'events', 'steps' or 'attempts', got {table!r}")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()

    def __repr__(self) -> str:
        state = "healthy" if self.healthy else f"failing ({self.errors} errors)"
        return f"<SQLiteRunStore {str(self.path)!r} {state}, {self.pending} pending>"


def _json_default(value: Any) -> Any:
    if isinstance(value, pathlib.PurePath):
        return str(value)
    return repr(value)


def _status(text: str) -> StepStatus:
    try:
        return StepStatus(text)
    except ValueError:
        return StepStatus.FAILED


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
