"""The run store's SQLite schema, as migrations keyed by ``user_version``.

A new version adds one entry to :data:`MIGRATIONS`; opening a store runs the
entries above the file's ``user_version`` in one transaction, and a file
written by newer code (a higher ``user_version``) is refused.
"""

from __future__ import annotations

from .workflow_exceptions import WorkflowEngineError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "RunStoreError"]


class RunStoreError(WorkflowEngineError):
    """The run store cannot be opened, or a run / record asked for does not exist."""


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
