"""Subprocess worker for the durability tests (run as a script, killed with SIGKILL).

``python worker.py chain DB WORKDIR slow|fast`` runs the chain s1 -> s2 -> s3 -> s4
with a run store; every step appends its name to WORKDIR/executions.log when
it starts and writes WORKDIR/artifacts/<step>.txt; in ``slow`` mode s3 sleeps
for a long time (the test kills the process then).  Prints the result as JSON.

``python worker.py demo DB PREFIX N [GO]`` runs N projects of the seed workflow at
once on one engine with a run store and prints every project's events; with
GO, it first waits until the file GO exists (so two workers write together).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from yukkuri_nb.core import WorkflowEngine
from yukkuri_nb.core.store import SQLiteRunStore
from yukkuri_nb.core.workflow_step import WorkflowStepDefinition

CHAIN = ["s1", "s2", "s3", "s4"]


def chain_engine(db: str, workdir: Path, slow: bool) -> WorkflowEngine:
    engine = WorkflowEngine(max_concurrent_steps=2, run_store=db)
    engine.register_workflow("chain", [
        WorkflowStepDefinition(name=s, display_name=f"段階{k + 1}", dependencies=[CHAIN[k - 1]] if k else [])
        for k, s in enumerate(CHAIN)
    ])
    (workdir / "artifacts").mkdir(parents=True, exist_ok=True)

    def make(step: str):
        def process(context, data):
            with open(workdir / "executions.log", "a", encoding="utf-8") as f:
                f.write(step + "\n")
                f.flush()
                os.fsync(f.fileno())
            if slow and step == "s3":
                time.sleep(600)  # killed here
            value = (data.get("value") + ">" if data.get("value") else "") + step
            path = workdir / "artifacts" / f"{step}.txt"
            path.write_text(value, encoding="utf-8")
            return {"value": value, f"{step}_file": str(path)}

        return process

    for s in CHAIN:
        engine.register_step_processor(s, make(s))
    return engine


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "chain":
        db, workdir, speed = argv[1], Path(argv[2]), argv[3]
        engine = chain_engine(db, workdir, speed == "slow")
        result = asyncio.run(engine.execute_workflow("chain", "kill-test", {}))
        engine.close()
        print(json.dumps({
            "status": result.status.value,
            "resumed_steps": result.resumed_steps,
            "outputs": {k: r.output_data for k, r in result.step_results.items()},
            "store_errors": engine.run_store.errors,
        }, ensure_ascii=False))
        return 0
    if mode == "demo":
        from yukkuri_nb.demo import build_demo_engine

        db, prefix, n = argv[1], argv[2], int(argv[3])
        engine = build_demo_engine(scale=0.00005, max_concurrent_steps=6)
        store = SQLiteRunStore(db, busy_timeout=30)
        engine.run_store = store
        store.attach(engine)
        ids = [f"{prefix}-{k:03d}" for k in range(n)]
        if len(argv) > 4:
            go = Path(argv[4])
            deadline = time.monotonic() + 120
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.01)

        async def run_all():
            return await asyncio.gather(*[
                engine.execute_workflow("complete_video_generation", pid, {"user_preferences": {}}) for pid in ids
            ])

        results = asyncio.run(run_all())
        store.close()
        print(json.dumps({
            "statuses": [r.status.value for r in results],
            "run_ids": {r.project_id: r.run_id for r in results},
            "events": {pid: [[e.seq, e.kind.value, e.step] for e in engine.events(pid)] for pid in ids},
            "store_errors": store.errors,
        }))
        return 0
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
