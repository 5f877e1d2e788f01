"""One folder per project, and the run summary inside it.

::

    <output_dir>/<safe project id>/
        script.json  subtitles.srt  video.mp4  thumbnail.png  summary.json
        audio/line_000.wav ... audio/voice.wav

Project ids come from users (and from the command line), so they are made
safe before they touch the file system: anything but letters, digits, ``.``,
``_`` and ``-`` becomes ``_``, leading dots are dropped, and when the id had to
change a short hash of the original is appended so that ``a/b`` and ``a_b``
never share a folder.  The result always lies inside ``output_dir``.

``summary.json`` is updated by every step as it finishes (under a lock, by
atomic replace), so it always describes the artifacts that exist, even after
a failure; a step that failed is listed under ``failed`` with its error
(which names the field and the fix) until it succeeds on a later run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

__all__ = ["safe_project_id", "ProjectLayout"]

_UNSAFE = re.compile(r"[^\w.\-]", re.UNICODE)
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def safe_project_id(project_id: str) -> str:
    """A folder name for ``project_id`` that cannot escape its parent folder.

    Raises:
        ValueError: ``project_id`` is not a string.
    """
    if not isinstance(project_id, str):
        raise ValueError(f"project id must be a string, got {type(project_id).__name__}")
    cleaned = _UNSAFE.sub("_", project_id).lstrip(".")[:80]
    if cleaned != project_id or not cleaned:
        digest = hashlib.sha256(project_id.encode("utf-8")).hexdigest()[:8]
        cleaned = f"{cleaned or 'project'}-{digest}"
    return cleaned


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(str(path), threading.Lock())


class ProjectLayout:
    """Paths of one project's artifacts under ``output_dir``.

    Raises:
        ValueError: the resolved folder would lie outside ``output_dir``
            (cannot happen with :func:`safe_project_id`; checked anyway).
    """

    def __init__(self, output_dir: str | Path, project_id: str):
        self.output_dir = Path(output_dir).resolve()
        self.project_id = project_id
        self.root = (self.output_dir / safe_project_id(project_id)).resolve()
        if self.root.parent != self.output_dir:
            raise ValueError(f"project folder {self.root} is not inside {self.output_dir}")

    def ensure(self) -> "ProjectLayout":
        """Create the project and audio folders."""
        self.audio_dir.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def audio_dir(self) -> Path:
        return self.root / "audio"

    @property
    def script(self) -> Path:
        return self.root / "script.json"

    @property
    def subtitles(self) -> Path:
        return self.root / "subtitles.srt"

    @property
    def video(self) -> Path:
        return self.root / "video.mp4"

    @property
    def thumbnail(self) -> Path:
        return self.root / "thumbnail.png"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def write_json(self, path: Path, data: Any) -> Path:
        """Write ``data`` as pretty UTF-8 JSON, atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
        os.replace(tmp, path)
        return path

    def read_summary(self) -> dict[str, Any]:
        """The current summary (empty skeleton if there is none yet)."""
        try:
            data = json.loads(self.summary.read_text("utf-8"))
            if isinstance(data, dict):
                return data
        except (OSError, ValueError):
            pass
        return {"project_id": self.project_id, "folder": str(self.root), "steps": {}, "files": {}}

    def record_step(self, step: str, outputs: dict[str, Any], files: dict[str, str | Path] | None = None) -> None:
        """Merge one finished step (a small dict of facts, and the files it wrote) into summary.json."""
        with _lock_for(self.summary):
            summary = self.read_summary()
            summary["project_id"] = self.project_id
            summary["folder"] = str(self.root)
            summary.setdefault("steps", {})[step] = {"finished_at": _now(), **outputs}
            for name, path in (files or {}).items():
                summary.setdefault("files", {})[name] = str(path)
            failed = summary.get("failed") or {}
            failed.pop(step, None)  # it failed before and has now succeeded
            if failed:
                summary["failed"] = failed
            else:
                summary.pop("failed", None)
            summary["updated_at"] = summary["steps"][step]["finished_at"]
            self.write_json(self.summary, summary)

    def record_failure(self, step: str, error: str) -> None:
        """Note in summary.json that ``step`` failed with ``error``; finished steps stay listed."""
        with _lock_for(self.summary):
            summary = self.read_summary()
            summary["project_id"] = self.project_id
            summary["folder"] = str(self.root)
            summary.setdefault("steps", {})
            summary.setdefault("failed", {})[step] = {"failed_at": _now(), "error": error}
            summary["updated_at"] = summary["failed"][step]["failed_at"]
            self.write_json(self.summary, summary)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
