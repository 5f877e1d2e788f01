"""How the run store writes values: JSON that round-trips paths, and notes for what it cannot hold.

``_encode`` turns an output value into JSON-ready data and says whether that
is exact (a set, bytes, a dict with non-string keys, an arbitrary object or
a non-finite float is stored as a ``repr`` note, and the step is then not
resumable); it also collects the strings and paths that may name artifact
files.  ``pathlib`` paths are tagged so they come back as paths.  Only JSON
is ever parsed (never pickle).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import pathlib
from datetime import datetime
from typing import Any

from .definitions import StepStatus

log = logging.getLogger("yukkuri_nb.store")

_PATH_KEY = "__yukkuri_path__"
_REPR_KEY = "__yukkuri_repr__"
_REPR_LIMIT = 2000


def _encode(value: Any, paths: list[str], depth: int = 0) -> tuple[Any, bool]:
    """``(JSON-ready value, exact)``; collects candidate artifact paths into ``paths``."""
    if value is None or isinstance(value, bool):
        return value, True
    if isinstance(value, str):
        if 0 < len(value) < 1024 and "\n" not in value and "\0" not in value:
            paths.append(value)
        return str(value), True
    if isinstance(value, int):
        return int(value), True
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value), True
        return {_REPR_KEY: repr(value)}, False
    if isinstance(value, pathlib.PurePath):
        paths.append(str(value))
        return {_PATH_KEY: str(value)}, True
    if depth < 64:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            exact = True
            for k, v in value.items():
                if not isinstance(k, str) or k in (_PATH_KEY, _REPR_KEY):
                    exact = False
                    k = str(k)
                out[k], ok = _encode(v, paths, depth + 1)
                exact = exact and ok
            return out, exact
        if isinstance(value, (list, tuple)):
            items = []
            exact = True
            for v in value:
                enc, ok = _encode(v, paths, depth + 1)
                items.append(enc)
                exact = exact and ok
            return items, exact
    try:
        text = repr(value)
    except Exception as exc:  # a broken __repr__ must not break the store
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return {_REPR_KEY: text[:_REPR_LIMIT]}, False


def _decode_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _PATH_KEY in obj:
        return pathlib.Path(obj[_PATH_KEY])
    return obj


def _loads(text: str | None) -> Any:
    return json.loads(text, object_hook=_decode_hook) if text else {}


def _loads_or_note(text: Any, what: str) -> Any:
    """:func:`_loads` for reading history: a damaged record reads as a note, not an exception."""
    try:
        return _loads(text)
    except ValueError:  # not JSON (JSONDecodeError, or bytes that are not UTF-8)
        log.warning("run store: %s is not JSON; it reads as a note", what)
        return {_REPR_KEY: f"<unreadable {what}: not JSON>"}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=repr, allow_nan=False)


def _dumps_data(data: Any) -> str:
    try:
        return json.dumps(data, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):
        return json.dumps({_REPR_KEY: repr(data)[:_REPR_LIMIT]})


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _parse_iso(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _json_default(value: Any) -> Any:
    if isinstance(value, pathlib.PurePath):
        return str(value)
    return repr(value)


def _status(text: str) -> StepStatus:
    try:
        return StepStatus(text)
    except ValueError:
        return StepStatus.FAILED
