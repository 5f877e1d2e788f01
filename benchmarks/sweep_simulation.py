"""Benchmark: a simulated concurrency sweep of 20 projects x 8 settings (goal: under 1 s).

Run ``python -m benchmarks.sweep_simulation [--runs N]``.  Prints the median
wall time of ``yukkuri_nb.analysis.sweep(..., mode="simulate")`` on the seed's
``complete_video_generation`` workflow (5 steps, four pools) with four
``max_concurrent_steps`` values times two pool settings, and the median of
the simulation-vs-real makespan ratio of a small sleep-based batch.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--agreement", action="store_true", help="also compare with real sleep-based runs (~2 s each)")
    args = parser.parse_args(argv)

    from yukkuri_nb.analysis import sweep
    from yukkuri_nb.demo import build_demo_engine

    engine = build_demo_engine()
    kw = dict(max_concurrent_values=[1, 2, 3, 4], pool_capacities=[None, {"video_encoder": 2}], projects=20)
    sweep(engine, **kw)  # warm-up (imports)
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        df = sweep(engine, **kw)
        times.append(time.perf_counter() - t0)
    steps = int(df["projects"].sum()) * len(engine.get_workflow("complete_video_generation"))
    print(f"sweep 20 projects x {len(df)} settings ({steps} steps): median {statistics.median(times) * 1000:.1f} ms "
          f"over {args.runs} runs (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}); goal < 1000 ms")
    if args.agreement:
        ratios = []
        scale = 0.002  # 1 estimated second = 2 ms: a batch of 3 runs takes about 2 s
        for _ in range(3):
            akw = dict(max_concurrent_values=[3], projects=3, time_scale=scale)
            sim = sweep(engine.get_workflow("complete_video_generation"), pool_capacities=[{"llm_api": 3, "tts_api": 2, "storage": 5}], **akw)
            real = sweep(engine.get_workflow("complete_video_generation"), pool_capacities=[{"llm_api": 3, "tts_api": 2, "storage": 5}], mode="real", **akw)
            ratios.append(real.loc[0, "makespan"] / sim.loc[0, "makespan"])
        print(f"real / simulated makespan: median {statistics.median(ratios):.4f} ({', '.join(f'{r:.4f}' for r in ratios)}); goal within 10%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
