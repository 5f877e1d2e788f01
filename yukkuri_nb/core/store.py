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

Modules: this one records and resumes; :mod:`~yukkuri_nb.core.store_schema`
has the tables and their migrations, :mod:`~yukkuri_nb.core.store_codec` the
JSON encoding of values, :mod:`~yukkuri_nb.core.store_read` the reading of
past runs.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from .definitions import StepStatus
from .events import Event, EventKind
from .results import StepAttempt, StepResult
from .store_codec import (
    _dumps,
    _dumps_data,
    _encode,
    _iso,
    _loads,
    _parse_iso,
    _pid_alive,
    _sha256,
    _status,
)
from .store_read import StoreReader
from .store_schema import MIGRATIONS, SCHEMA_VERSION, RunStoreError

if TYPE_CHECKING:  # pragma: no cover
    from .engine import WorkflowEngine
    from .graph import WorkflowGraph

__all__ = ["SQLiteRunStore", "RunStoreError", "SCHEMA_VERSION", "MIGRATIONS"]

log = logging.getLogger("yukkuri_nb.store")



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


class SQLiteRunStore(StoreReader):
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

    def __repr__(self) -> str:
        state = "healthy" if self.healthy else f"failing ({self.errors} errors)"
        return f"<SQLiteRunStore {str(self.path)!r} {state}, {self.pending} pending>"


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass
