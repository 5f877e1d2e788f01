"""``yukkuri-nb runs list|show|export``: past runs from a run store.

The store is opened read-only, so these commands work on a copy, on a
read-only medium, and while another process is writing to it.  ``--db``
defaults to ``$YUKKURI_NB_RUN_STORE``, else ``out/runs.db`` (the pipeline's
output folder).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_runs_parser", "safe_file_stem"]

_UNSAFE = re.compile(r"[^\w.-]+")


def safe_file_stem(text: str, *, limit: int = 80) -> str:
    """A file name made from ``text`` that stays inside its folder.

    Path separators, ``..``, control characters and other unsafe characters
    become ``_``; leading dots are dropped; never empty.
    """
    stem = _UNSAFE.sub("_", str(text)).lstrip(".")[:limit]
    return stem or "run"


def _default_db() -> str:
    return os.environ.get("YUKKURI_NB_RUN_STORE") or os.path.join("out", "runs.db")


def _open(args: argparse.Namespace) -> Any:
    from .core.store import SQLiteRunStore

    return SQLiteRunStore(args.db, readonly=True)


def _fmt_time(value: Any) -> str:
    return "" if value is None else f"{value:.2f}s"


def _list(args: argparse.Namespace) -> int:
    store = _open(args)
    rows = store.list_runs(args.project, args.workflow, status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print(f"no runs in {store.path}")
        return 0
    header = f"{'run id':<12} {'project':<24} {'workflow':<26} {'status':<11} {'steps':>9} {'resumed':>7}  started"
    print(header)
    print("-" * len(header))
    for r in rows:
        steps = f"{r['completed_steps']}/{r['total_steps']}"
        print(
            f"{r['run_id'][:12]:<12} {r['project_id'][:24]:<24} {r['workflow_name'][:26]:<26} {r['status']:<11} "
            f"{steps:>9} {r['resumed_steps']:>7}  {r['started_at']}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    store = _open(args)
    run = store.get_run(args.run)
    if args.json:
        print(json.dumps(run, ensure_ascii=False, indent=2))
        return 0
    print(f"run {run['run_id']}  project {run['project_id']!r}  workflow {run['workflow_name']!r}")
    print(f"status: {run['status']}" + (f" ({run['reason']})" if run.get("reason") else ""))
    print(f"started: {run['started_at']}   finished: {run['finished_at'] or '-'}")
    if run.get("resumed_from"):
        reused = sum(1 for s in run["steps"] if s["restored"])
        print(f"resumed from run {run['resumed_from']} ({reused} steps reused)")
    print()
    print(f"{'step':<28} {'status':<10} {'attempts':>8} {'duration':>10}  note")
    for s in run["steps"]:
        note = "restored" if s["restored"] else (s["error"] or "")
        print(f"{s['step'][:28]:<28} {s['status']:<10} {s['attempts']:>8} {_fmt_time(s['duration']):>10}  {note[:80]}")
    return 0


def _export(args: argparse.Namespace) -> int:
    store = _open(args)
    run_id = store.resolve_run_id(args.run)
    text = store.export(run_id, args.format, table=args.table)
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    if out.is_dir() or args.output.endswith(("/", os.sep)):
        run = store.get_run(run_id)
        suffix = "" if args.format == "json" else f"-{args.table}"
        name = f"{safe_file_stem(run['project_id'])}-{run_id[:12]}{suffix}.{args.format}"
        out = out / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


def _guarded(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from .core.store import RunStoreError

        try:
            return fn(args)
        except RunStoreError as exc:
            print(f"yukkuri-nb runs: {exc}", file=sys.stderr)
            return 2

    return run


def add_runs_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``runs`` command (``list``, ``show``, ``export``) to a CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=_default_db(), help="run store file (default: $YUKKURI_NB_RUN_STORE or out/runs.db)")
    runs = subparsers.add_parser("runs", help="list, show and export past runs from a run store")
    sub = runs.add_subparsers(dest="runs_command", required=True)

    p = sub.add_parser("list", parents=[common], help="stored runs, newest first")
    p.add_argument("--project", help="only this project id")
    p.add_argument("--workflow", help="only this workflow")
    p.add_argument("--status", help="only runs with this status (running, completed, failed, cancelled, interrupted)")
    p.add_argument("--limit", type=int, default=None, help="at most this many runs")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_guarded(_list))

    p = sub.add_parser("show", parents=[common], help="one run and its steps")
    p.add_argument("run", help="run id, unique prefix of one, or a project id (its latest run)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_guarded(_show))

    p = sub.add_parser("export", parents=[common], help="a run's history as JSON or CSV")
    p.add_argument("run", help="run id, unique prefix of one, or a project id (its latest run)")
    p.add_argument("--format", choices=["json", "csv"], default="json")
    p.add_argument("--table", choices=["events", "steps", "attempts"], default="events", help="CSV only: which table")
    p.add_argument("-o", "--output", help="file or existing folder to write (default: stdout)")
    p.set_defaults(func=_guarded(_export))
    return runs
