"""Reading past runs back from the run store: lists, steps, events, outputs, exports.

:class:`StoreReader` is a part of :class:`~yukkuri_nb.core.store.SQLiteRunStore`
(a mixin).  Every read opens its own read-only connection (``_read``), so
reading history never waits for, or disturbs, a run that is writing; a
damaged record reads as a note, not an exception.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from .events import Event, EventKind
from .store_codec import _json_default, _loads_or_note, _pid_alive
from .store_schema import RunStoreError

__all__ = ["StoreReader"]


class StoreReader:
    """The read side of the run store (see the module docstring)."""

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
