"""Offline theme selection: a built-in bank of Japanese themes scored against preferences.

Preferences (``initial_input["user_preferences"]``)::

    {"preferred_genres": ["プログラミング", "AI"],   # list or one string; each must be a known genre
     "target_audience": "初心者",                  # free text, matched against audience tags
     "content_style": "分かりやすい"}               # free text, matched against style tags

Also recognised: ``"avoid_themes": [theme ids]`` (themes already used, e.g. by
earlier projects of a batch) are chosen only when nothing else fits.

Scoring: a theme must share at least one genre with ``preferred_genres`` (when
given); it earns 3 points per shared genre, 2 when an audience tag matches and
1 when a style tag matches (a tag matches when one contains the other, after
NFKC normalisation).  A seeded jitter below 1 point breaks ties, so the same
seed always picks the same theme while different seeds vary among equals.
"""

from __future__ import annotations

import json
import random
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

from .errors import PipelineInputError
from .models import Theme
from .providers import ThemeSelection

__all__ = ["ThemeBank", "normalise_tag"]

_GENRE_WEIGHT = 3.0
_AUDIENCE_WEIGHT = 2.0
_STYLE_WEIGHT = 1.0
_AVOID_PENALTY = 100.0
_JITTER = 0.9  # < 1 point: only ever reorders themes with equal scores


def normalise_tag(tag: str) -> str:
    """NFKC-normalise and strip a tag so that full-width / half-width variants compare equal."""
    return unicodedata.normalize("NFKC", str(tag)).strip().lower()


def _as_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, Iterable):
        items = list(value)
        if all(isinstance(item, str) for item in items):
            return [item for item in items if item.strip()]
    raise PipelineInputError(
        f"{value!r} is neither a string nor a list of strings",
        field=field,
        fix="give a string or a list of strings",
    )


def _tag_matches(wanted: list[str], tags: list[str]) -> bool:
    return any(w in t or t in w for w in wanted for t in tags)


class ThemeBank:
    """A selectable collection of :class:`Theme` objects (implements ``ThemeSelector``).

    Args:
        themes: the themes; ids must be unique.

    Raises:
        ValueError: empty bank or duplicate theme ids.
    """

    _builtin: "ThemeBank | None" = None
    _builtin_lock = threading.Lock()

    def __init__(self, themes: Iterable[Theme]):
        self.themes: tuple[Theme, ...] = tuple(themes)
        if not self.themes:
            raise ValueError("a ThemeBank needs at least one theme")
        ids = [theme.id for theme in self.themes]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate theme ids in the bank: {duplicates}")
        self._by_id = {theme.id: theme for theme in self.themes}

    @classmethod
    def builtin(cls) -> "ThemeBank":
        """The bank shipped in ``yukkuri_nb/pipeline/assets/themes.json`` (loaded once)."""
        with cls._builtin_lock:
            if cls._builtin is None:
                text = resources.files(__package__).joinpath("assets/themes.json").read_text("utf-8")
                cls._builtin = cls(Theme.model_validate(item) for item in json.loads(text))
            return cls._builtin

    @property
    def genres(self) -> list[str]:
        """Every genre tag in the bank, sorted."""
        return sorted({genre for theme in self.themes for genre in theme.genres})

    def get(self, theme_id: str) -> Theme:
        """Return the theme with ``theme_id``.

        Raises:
            PipelineInputError: no such theme (the message lists the ids).
        """
        try:
            return self._by_id[theme_id]
        except KeyError:
            raise PipelineInputError(
                f"unknown theme id {theme_id!r}",
                field="theme_id",
                fix=f"use one of: {', '.join(sorted(self._by_id))}",
            ) from None

    def score(self, theme: Theme, preferences: Mapping[str, Any]) -> float:
        """Score one theme against ``preferences`` (no jitter); 0 when no genre matches."""
        genres, audiences, styles = self._read_preferences(preferences)
        theme_genres = {normalise_tag(g) for g in theme.genres}
        shared = len(theme_genres & set(genres))
        if genres and not shared:
            return 0.0
        score = _GENRE_WEIGHT * shared
        if audiences and _tag_matches(audiences, [normalise_tag(a) for a in theme.audiences]):
            score += _AUDIENCE_WEIGHT
        if styles and _tag_matches(styles, [normalise_tag(s) for s in theme.styles]):
            score += _STYLE_WEIGHT
        return score

    def select(self, preferences: Mapping[str, Any], *, seed: int | None = None) -> ThemeSelection:
        """Choose the best theme for ``preferences``; ``seed`` (default 0) breaks ties.

        Raises:
            PipelineInputError: ``preferences`` is not a mapping, or a preferred
                genre is unknown (the message lists the known genres).
        """
        if preferences is None:
            preferences = {}
        if not isinstance(preferences, Mapping):
            raise PipelineInputError(
                f"user_preferences must be a mapping, got {type(preferences).__name__}",
                field="user_preferences",
                fix="pass a dict with preferred_genres, target_audience and content_style",
            )
        genres, _, _ = self._read_preferences(preferences)
        avoid = set(_as_list(preferences.get("avoid_themes"), "user_preferences.avoid_themes"))
        rng = random.Random(0 if seed is None else seed)
        scored: list[tuple[float, float, str]] = []
        for theme in self.themes:
            base = self.score(theme, preferences)
            jitter = rng.random() * _JITTER  # drawn for every theme: stable across preference changes
            if genres and base == 0.0:
                continue
            penalty = _AVOID_PENALTY if theme.id in avoid else 0.0
            scored.append((base + jitter - penalty, base, theme.id))
        # Sort key ends in the id so the order is total and deterministic.
        scored.sort(key=lambda item: (-item[0], item[2]))
        best = self._by_id[scored[0][2]]
        return ThemeSelection(theme=best, candidates=tuple((tid, round(base, 3)) for _, base, tid in scored))

    def _read_preferences(self, preferences: Mapping[str, Any]) -> tuple[list[str], list[str], list[str]]:
        raw_genres = _as_list(preferences.get("preferred_genres"), "user_preferences.preferred_genres")
        known = {normalise_tag(g): g for g in self.genres}
        genres = []
        for genre in raw_genres:
            key = normalise_tag(genre)
            if key not in known:
                raise PipelineInputError(
                    f"unknown genre {genre!r}",
                    field="user_preferences.preferred_genres",
                    fix=f"use one or more of the known genres: {', '.join(self.genres)}",
                )
            genres.append(key)
        audiences = [normalise_tag(a) for a in _as_list(preferences.get("target_audience"), "user_preferences.target_audience")]
        styles = [normalise_tag(s) for s in _as_list(preferences.get("content_style"), "user_preferences.content_style")]
        return genres, audiences, styles
