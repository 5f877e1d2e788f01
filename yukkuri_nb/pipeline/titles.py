"""Offline title generation: the video title, the title card subtitle and the thumbnail text."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from .models import Script, Theme, TitleInfo

__all__ = ["TemplateTitleGenerator"]

_PATTERNS = [
    "【ゆっくり解説】{title}｜{summary}",
    "【ゆっくり解説】{minutes}でわかる{title}",
    "【ゆっくり解説】{title}をざっくり解説",
]
_AUDIENCE_TAGS = {"初心者": "初心者向け", "子ども": "子どもにも", "エンジニア": "エンジニア向け", "ビジネス": "仕事に効く"}


class TemplateTitleGenerator:
    """Writes titles from templates (implements ``TitleGenerator``).

    The title reads like a typical ゆっくり解説 upload, e.g.
    ``【ゆっくり解説】Pythonの非同期処理｜待ち時間の間に…``; the thumbnail text is
    the theme's catch phrase (short enough for big letters).
    """

    name = "template"

    def generate(
        self,
        theme: Theme,
        script: Script | None = None,
        *,
        preferences: Mapping[str, Any] | None = None,
        seed: int | None = None,
        target_minutes: float | None = None,
    ) -> TitleInfo:
        """Return the :class:`TitleInfo` for ``theme``.

        ``script`` (when already written) gives the length; otherwise
        ``target_minutes`` does.  The choice among patterns is seeded.
        """
        rng = random.Random(0 if seed is None else seed)
        minutes = None
        if script is not None and script.estimated_seconds:
            minutes = script.estimated_seconds / 60.0
        elif target_minutes:
            minutes = float(target_minutes)
        patterns = _PATTERNS if minutes and minutes >= 1 else [p for p in _PATTERNS if "{minutes}" not in p]
        summary = theme.summary if len(theme.summary) <= 24 else theme.summary[:23] + "…"
        title = rng.choice(patterns).format(
            title=theme.title, summary=summary, minutes=f"{max(1, round(minutes or 1))}分"
        )
        audience = ""
        wanted = (preferences or {}).get("target_audience")
        if isinstance(wanted, str):
            audience = next((tag for key, tag in _AUDIENCE_TAGS.items() if key in wanted), "")
        subtitle = f"{audience}｜{theme.summary}" if audience else theme.summary
        thumbnail = theme.thumbnail or theme.title
        return TitleInfo(title=title, thumbnail_text=thumbnail, subtitle=subtitle)
