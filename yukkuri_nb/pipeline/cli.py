"""``yukkuri-nb make-video``: make ゆっくり videos offline from the command line.

::

    yukkuri-nb make-video --out out --minutes 1 --genre 宇宙 --projects 2 --size 1280x720

Every project runs the ``yukkuri_video`` workflow on one engine (they share
the pools); progress is printed live, one line per step change and throttled
sub-progress lines (TTS per line, video per second rendered); at the end the
files of each project are listed.

Runs are recorded in a run store, ``<out>/runs.db`` unless ``--store PATH``
or ``--no-store``: running the same command again after a crash, a Ctrl-C or
a failed step reuses every step that finished (``--fresh`` starts over), and
``yukkuri-nb runs list --db <out>/runs.db`` shows past runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import IO, Any

__all__ = ["add_make_video_parser", "run_make_video"]


def add_make_video_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``make-video`` sub-command to an ``argparse`` sub-parsers object."""
    parser = subparsers.add_parser(
        "make-video",
        help="make yukkuri videos offline (theme -> script -> voice -> subtitles -> mp4)",
        description="Make 霊夢 and 魔理沙 explainer videos offline: one folder per project with "
        "video.mp4, subtitles.srt, script.json, thumbnail.png, audio/ and summary.json.",
    )
    parser.add_argument("--out", default="out", metavar="DIR", help="output folder (default: out)")
    parser.add_argument("--minutes", type=float, default=1.0, metavar="M", help="target length in minutes (default 1)")
    parser.add_argument("--genre", action="append", default=None, metavar="GENRE",
                        help="preferred genre, repeatable (see --list-genres); default: any")
    parser.add_argument("--audience", default="初心者", help="target audience, e.g. 初心者 (default)")
    parser.add_argument("--style", default="分かりやすい", help="content style, e.g. 分かりやすい (default)")
    parser.add_argument("--projects", type=int, default=1, metavar="N", help="videos to make at once (default 1)")
    parser.add_argument("--size", default="1920x1080", metavar="WxH", help="video size (default 1920x1080)")
    parser.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed; project k uses S+k (default 0)")
    parser.add_argument("--concurrency", type=int, default=3, help="max steps running at once (default 3)")
    parser.add_argument("--reimu-speed", type=float, default=1.0, help="霊夢's speed multiplier (default 1.0)")
    parser.add_argument("--marisa-speed", type=float, default=1.0, help="魔理沙's speed multiplier (default 1.0)")
    parser.add_argument("--llm", action="store_true",
                        help="write scripts with an OpenAI-compatible endpoint (YUKKURI_LLM_BASE_URL, "
                        "YUKKURI_LLM_MODEL, YUKKURI_LLM_API_KEY)")
    parser.add_argument("--prefix", default="video", help="project id prefix (default: video -> video-001, ...)")
    parser.add_argument("--store", default=None, metavar="PATH",
                        help="run store (SQLite) recording every run, so an interrupted or failed batch resumes "
                        "where it stopped (default: <out>/runs.db)")
    parser.add_argument("--no-store", action="store_true", help="record nothing; every run starts from scratch")
    parser.add_argument("--fresh", action="store_true", help="ignore unfinished runs in the store and start over")
    parser.add_argument("--list-genres", action="store_true", help="print the known genres and exit")
    parser.set_defaults(func=run_make_video)
    return parser


class _Printer:
    """Fallback progress observer: one compact line per step change / sub-progress."""

    def __init__(self, engine: Any, stream: IO[str]):
        self.stream = stream
        self._last: dict[tuple[str, str], float] = {}
        self._unsubscribe = engine.subscribe(self)

    def __call__(self, event: Any) -> None:
        kind = getattr(event.kind, "value", str(event.kind))
        if kind in ("step_queued", "log"):
            return
        if kind == "step_progress":
            key = (event.project_id, event.step)
            if event.time - self._last.get(key, -1e9) < 0.5 and event.data.get("fraction", 0) < 1:
                return
            self._last[key] = event.time
            print(f"  {event.project_id} {event.step}: {event.data.get('fraction', 0):4.0%} {event.data.get('message', '')}",
                  file=self.stream, flush=True)
            return
        detail = event.data.get("error") or event.data.get("reason") or event.data.get("status") or ""
        print(f"{event.project_id} {event.step or ''} {kind} {detail}".rstrip(), file=self.stream, flush=True)

    def close(self) -> None:
        self._unsubscribe()


def _progress(engine: Any, stream: IO[str]) -> Any:
    try:
        from yukkuri_nb.console import TerminalProgress
    except ImportError:
        return _Printer(engine, stream)
    return TerminalProgress(engine, stream, progress_interval=0.5)


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _report(result: Any, out: IO[str]) -> None:
    outputs: dict[str, Any] = {}
    for step_result in result.step_results.values():
        outputs.update(step_result.output_data or {})
    folder = outputs.get("project_dir")
    status = getattr(result.status, "value", result.status)
    print(f"\n■ {result.project_id}: {status} in {result.execution_time_seconds:.1f}s", file=out)
    if outputs.get("title"):
        print(f"  タイトル: {outputs['title']}", file=out)
    if folder:
        print(f"  folder:   {folder}", file=out)
    for label, key in (("video", "video_path"), ("subtitles", "subtitles_path"), ("script", "script_path"),
                       ("thumbnail", "thumbnail_path"), ("audio", "audio_path")):
        path = outputs.get(key)
        if path and Path(path).exists():
            extra = ""
            if key == "video_path" and isinstance(outputs.get("video"), dict):
                extra = f" ({outputs['video'].get('duration', 0):.1f}s, {outputs['video'].get('resolution', '')})"
            print(f"  {label + ':':10}{path}  [{_human_size(Path(path).stat().st_size)}]{extra}", file=out)
    if folder and (Path(folder) / "summary.json").exists():
        print(f"  {'summary:':10}{Path(folder) / 'summary.json'}", file=out)
    for step, message in (getattr(result, "error_summary", None) or {}).items():
        print(f"  ✘ {step}: {message}", file=out)


def run_make_video(args: argparse.Namespace, *, stream: IO[str] | None = None) -> int:
    """Run ``make-video`` with parsed ``args``; return the exit code (0 ok, 1 a run failed, 2 bad arguments)."""
    out = stream or sys.stdout
    err = stream or sys.stderr
    from .errors import PipelineError
    from .models import parse_size
    from .themes import ThemeBank

    bank = ThemeBank.builtin()
    if getattr(args, "list_genres", False):
        print("known genres: " + ", ".join(bank.genres), file=out)
        return 0
    try:
        size = parse_size(args.size)
    except ValueError as exc:
        print(f"make-video: --size: {exc}", file=err)
        return 2
    if not 0 < args.minutes <= 60:
        print(f"make-video: --minutes {args.minutes:g} is out of range; give (0, 60]", file=err)
        return 2
    if args.projects < 1 or args.concurrency < 1:
        print("make-video: --projects and --concurrency must be at least 1", file=err)
        return 2
    preferences = {"preferred_genres": args.genre or [], "target_audience": args.audience, "content_style": args.style}
    try:
        bank.select(preferences, seed=args.seed)  # fail fast on an unknown genre, before any work
    except PipelineError as exc:
        print(f"make-video: --genre: {exc.problem}; {exc.fix}", file=err)
        return 2

    from yukkuri_nb.core import WorkflowEngine

    from .providers import default_providers
    from .tts import load_pyopenjtalk
    from .workflow import WORKFLOW_NAME, register_yukkuri_workflow

    providers = default_providers()
    if args.llm:
        from .llm import OpenAIChatScriptGenerator

        try:
            providers = providers.replace(script=OpenAIChatScriptGenerator.from_env())
        except PipelineError as exc:
            print(f"make-video: --llm: {exc.problem}; {exc.fix}", file=err)
            return 2
    try:
        load_pyopenjtalk()  # import now, quietly, rather than in the middle of the progress display
    except PipelineError as exc:
        print(f"make-video: {exc}", file=err)
        return 2

    from yukkuri_nb.core.store import RunStoreError

    store_path = None if getattr(args, "no_store", False) else (getattr(args, "store", None) or Path(args.out) / "runs.db")
    try:
        engine = WorkflowEngine(max_concurrent_steps=args.concurrency, default_timeout_seconds=7200, run_store=store_path)
    except RunStoreError as exc:
        print(f"make-video: --store: {exc}", file=err)
        return 2
    register_yukkuri_workflow(
        engine, output_dir=args.out, providers=providers, target_minutes=args.minutes, resolution=size, fps=args.fps
    )
    project_ids = [f"{args.prefix}-{k + 1:03d}" for k in range(args.projects)]
    plan = engine.plan_execution(WORKFLOW_NAME, project_ids[0])
    print(f"🎬 {args.projects} video(s), ~{args.minutes:g} min each, {size[0]}x{size[1]} @ {args.fps} fps "
          f"-> {Path(args.out).resolve()}", file=out)
    print(f"   estimated ~{plan.estimated_total_time:.0f}s per video (critical path: "
          f"{' -> '.join(plan.critical_path) if plan.critical_path else 'n/a'})", file=out, flush=True)

    # Give each project of the batch its own theme while the bank allows: the
    # choice is made here with the same seeded selection the workflow repeats.
    avoid: list[list[str]] = []
    chosen: list[str] = []
    for k in range(args.projects):
        avoid.append(list(chosen))
        chosen.append(bank.select({**preferences, "avoid_themes": chosen}, seed=args.seed + k).theme.id)

    def initial_input(k: int) -> dict[str, Any]:
        return {
            "user_preferences": {**preferences, "avoid_themes": avoid[k]},
            "target_length_minutes": args.minutes,
            "video_settings": {"resolution": f"{size[0]}x{size[1]}", "fps": args.fps},
            "voice_settings": {"reimu_speed": args.reimu_speed, "marisa_speed": args.marisa_speed},
            "seed": args.seed + k,
        }

    async def run_all() -> list[Any]:
        return await asyncio.gather(*(
            engine.execute_workflow(WORKFLOW_NAME, pid, initial_input(k), fresh=getattr(args, "fresh", False))
            for k, pid in enumerate(project_ids)
        ))

    progress = _progress(engine, out)
    try:
        results = asyncio.run(run_all())
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished files are kept in {Path(args.out).resolve()}"
              + ("; run the same command again to resume" if store_path is not None else ""), file=err)
        return 130
    finally:
        progress.close()
        engine.close()
    for result in results:
        _report(result, out)
    ok = all(r.is_successful for r in results)
    if store_path is not None:
        resumed = sum(len(r.resumed_steps) for r in results)
        store = engine.run_store
        note = f", {resumed} step(s) reused from an unfinished run" if resumed else ""
        if not store.healthy or store.pending:
            note += f"; WARNING: {store.pending} record(s) could not be written ({store.last_error})"
        print(f"runs recorded in {store.path}{note}", file=out)
    print(f"\n{'✔ done' if ok else '✘ some steps failed'}: files are in {Path(args.out).resolve()}", file=out)
    return 0 if ok else 1
