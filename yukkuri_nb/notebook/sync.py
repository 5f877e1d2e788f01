"""Running a coroutine to completion from synchronous code, also inside Jupyter's running loop.

Outside a running loop, :func:`run_sync` is :func:`asyncio.run`.  Inside one
(a Jupyter cell, where ipykernel's loop is already running) a plain
``loop.run_until_complete`` raises "This event loop is already running", so
the loop is first made re-entrant with ``nest_asyncio2`` -- the maintained
fork that ipykernel itself uses.  The archived ``nest_asyncio`` is never used:
under ipykernel 7 it fails with "cannot enter context".  The patch is applied
lazily, on the first call that needs it, to that loop only, never at import.

A blocking call holds the kernel: widget clicks (Pause, Cancel) are only
handled once it returns.  In notebooks prefer the non-blocking forms,
``run = engine.start(...)`` and ``await run`` / ``await engine.execute_workflow(...)``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine, TypeVar

__all__ = ["run_sync", "NESTED_LOOP_HINT"]

T = TypeVar("T")

NESTED_LOOP_HINT = (
    "running a coroutine synchronously inside an already running event loop (Jupyter) needs "
    "nest-asyncio2; install it with `pip install nest-asyncio2`, or use `await ...` in the cell instead"
)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result, whether or not a loop is running.

    Raises whatever ``coro`` raises; ``ImportError`` (with an install hint) if
    a loop is running and ``nest_asyncio2`` is missing; ``RuntimeError`` if
    asyncio was already patched by the archived ``nest_asyncio``.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    try:
        make_reentrant(loop)
    except BaseException:
        coro.close()  # never leave a "coroutine was never awaited" warning behind
        raise
    return loop.run_until_complete(coro)


def make_reentrant(loop: asyncio.AbstractEventLoop) -> None:
    """Patch ``loop`` with ``nest_asyncio2`` so ``run_until_complete`` works while it runs (idempotent)."""
    if getattr(loop, "_nest_patched", False) and hasattr(loop, "_nest_asyncio2"):
        return
    if hasattr(asyncio, "_nest_patched") and not hasattr(asyncio, "_nest_asyncio2"):
        raise RuntimeError(
            "asyncio was patched by the archived nest_asyncio package, which breaks under ipykernel 7 "
            "('cannot enter context'); remove `nest_asyncio.apply()` from the notebook and restart the kernel "
            "(yukkuri_nb uses nest-asyncio2 when it needs to)"
        )
    try:
        import nest_asyncio2
    except ImportError as exc:
        raise ImportError(NESTED_LOOP_HINT) from exc
    nest_asyncio2.apply(loop)
