"""Shared helpers of the durability tests."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("worker.py")


def assert_engine_idle(engine: Any) -> None:
    """Every pool unit is back and no run is live."""
    for name, stats in engine.resource_statistics().items():
        assert stats.in_use == 0, f"pool {name!r} still has {stats.in_use} units in use"
    assert " 0 running" in repr(engine), repr(engine)


async def assert_no_pending_tasks() -> None:
    """No asyncio task but the caller's is left on the running loop."""
    for _ in range(5):
        await asyncio.sleep(0)
    me = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
    assert pending == [], pending


def start_worker(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_until(predicate: Any, proc: subprocess.Popen | None = None, limit: float = 120.0) -> None:
    """Poll ``predicate()`` until true; fail if ``proc`` exits first or after ``limit`` seconds (a hang guard)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached (hang guard)")
        time.sleep(0.02)


def step_status(db: Path, step: str) -> str | None:
    """The stored status of ``step`` in the newest run, read as another process would."""
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT s.status FROM steps s JOIN runs r ON r.run_id = s.run_id WHERE s.step = ? ORDER BY r.id DESC LIMIT 1",
            (step,),
        ).fetchone()
    except sqlite3.OperationalError:
        return None  # schema not created yet
    finally:
        conn.close()
    return row[0] if row else None
