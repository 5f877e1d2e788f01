"""Command line: ``python -m benchmarks [--quick] [--only A,B] [--runs N] [--out DIR]``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from .contenders import dask_available
from .report import markdown
from .workloads import WORKLOADS

FULL = {
    "runs": 5, "d_runs": 11, "a_steps": 10_000, "b_shape": (100, 100), "c_steps": 2_000, "d_steps": 200,
    "e_sizes": (1_000, 10_000, 100_000), "f_instances": 200, "g_projects": 20,
}
QUICK = {
    "runs": 1, "d_runs": 1, "a_steps": 200, "b_shape": (10, 10), "c_steps": 50, "d_steps": 16,
    "e_sizes": (100, 400), "f_instances": 4, "g_projects": 3,
}


def environment() -> dict:
    import pydantic

    import yukkuri_nb

    versions = {"python": platform.python_version(), "pydantic": pydantic.VERSION, "yukkuri_nb": getattr(yukkuri_nb, "__version__", "?")}
    try:
        import dask

        versions["dask"] = dask.__version__
    except ImportError:
        versions["dask"] = None
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import subprocess

        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    return {
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu})",
        "versions": versions, "commit": commit, "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke mode: tiny sizes, one run, targets not judged")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. A,B,F (default: all)")
    parser.add_argument("--runs", type=int, default=None, help="runs per contender (default 5, D at least 11; quick 1)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"), help="directory for latest.json / latest.md")
    parser.add_argument("--no-dask", action="store_true", help="skip the Dask baseline")
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.runs is not None:
        cfg["runs"] = args.runs
    cfg["dask"] = not args.no_dask and dask_available()
    chosen = [w.strip().upper() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    results = []
    for name in chosen:
        t0 = time.perf_counter()
        print(f"[{name}] running...", file=sys.stderr, flush=True)
        result = WORKLOADS[name](cfg)
        print(f"[{name}] done in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
        results.append(result)
    env = environment()
    doc = {"quick": args.quick, "config": {k: v for k, v in cfg.items()}, "environment": env, "results": [r.to_dict() for r in results]}
    table = markdown(doc)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "quick" if args.quick else "latest"
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False, default=str))
    (out / f"{stem}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
