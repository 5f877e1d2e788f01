"""Command line: ``yukkuri-nb demo`` and ``yukkuri-nb make-video`` (and more)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Sequence

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from .console import TerminalProgress
    from .demo import build_demo_engine, format_report

    engine = build_demo_engine(scale=args.scale, max_concurrent_steps=args.concurrency, seed=args.seed)
    plan = engine.plan_execution("complete_video_generation", "demo")
    print("📋 実行計画 (execution plan)")
    print(plan.describe())
    print(f"   predicted makespan for one project: {plan.estimated_total_time * args.scale:.1f}s "
          f"(estimates x {args.scale})\n")

    async def run_all():
        return await asyncio.gather(*[
            engine.execute_workflow("complete_video_generation", f"video-{k + 1:03d}", {"user_preferences": {"preferred_genres": ["プログラミング"]}})
            for k in range(args.projects)
        ])

    with TerminalProgress(engine):
        results = asyncio.run(run_all())
    for result in results:
        print()
        print(format_report(result))
    return 0 if all(r.is_successful for r in results) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yukkuri-nb", description="yukkuri_nb: async workflows for ゆっくり動画")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the seed workflow with simulated steps for a few projects")
    demo.add_argument("--projects", type=int, default=3, help="projects to run at once (default 3)")
    demo.add_argument("--scale", type=float, default=0.005, help="seconds slept per estimated second (default 0.005)")
    demo.add_argument("--concurrency", type=int, default=3, help="max_concurrent_steps (default 3)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    try:
        from .pipeline.cli import add_make_video_parser
    except ImportError:
        pass
    else:
        add_make_video_parser(sub)
    from .runs_cli import add_runs_parser

    add_runs_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
