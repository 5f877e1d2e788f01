"""Profile the engine on workload A, B or C with pyinstrument (``pip install yukkuri_nb[bench]``).

``python -m benchmarks.profile A [--html out.html]`` prints the call tree of one
engine run (graph construction excluded), the profile that guided the
hot-path work recorded in ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import contenders as C
from . import spec

SHAPES = {"A": lambda: spec.independent(10_000), "B": lambda: spec.layered(100, 100), "C": lambda: spec.chain(2_000)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("workload", choices=sorted(SHAPES))
    parser.add_argument("--html", help="also write an HTML report here")
    parser.add_argument("--cprofile", action="store_true", help="use cProfile (flat, by own time) instead")
    args = parser.parse_args(argv)
    w = SHAPES[args.workload]()
    engine = C.build_engine(w)
    coro = engine.execute_workflow("bench", "profiled", {})
    if args.cprofile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        asyncio.run(coro)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return 0
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is not installed: pip install 'yukkuri_nb[bench]'", file=sys.stderr)
        return 2
    profiler = Profiler(interval=0.0002, async_mode="disabled")
    profiler.start()
    asyncio.run(coro)
    profiler.stop()
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    if args.html:
        with open(args.html, "w") as f:
            f.write(profiler.output_html())
    return 0


if __name__ == "__main__":
    sys.exit(main())
