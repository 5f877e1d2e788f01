"""The benchmark suite executes end to end in its quick smoke mode (no timings are judged)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_mode_runs_every_workload_and_writes_results(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((tmp_path / "quick.json").read_text())
    assert doc["quick"] is True
    assert [r["workload"] for r in doc["results"]] == list("ABCDEFGH")
    by_name = {r["workload"]: r for r in doc["results"]}
    for name in "ABC":
        assert {"engine", "floor"} <= set(by_name[name]["medians"]), name
    # Virtual-time workloads are deterministic: the engine's schedule is never
    # worse than a phase-by-phase barrier, and never beats the lower bound.
    for name in "FG":
        medians = by_name[name]["medians"]
        assert medians["engine"] <= medians["phase_barrier"] + 1e-9, (name, medians)
    for row in by_name["F"]["metrics"]["instances"]:
        assert row["engine"] >= row["lower_bound"] - 1e-9, row
        # schedule="makespan" follows the best of its candidates: never behind the default or FIFO
        assert row["engine makespan"] <= min(row["engine"], row["fifo"]) + 1e-6, row
    assert {"engine", "floor", "timers only"} <= set(by_name["D"]["medians"])
    table = (tmp_path / "quick.md").read_text()
    assert "| **A**" in table and "| **H**" in table


def test_unknown_workload_is_rejected_with_the_valid_names(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "Z", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown workload(s) Z; choose from A, B, C, D, E, F, G, H" in proc.stderr
