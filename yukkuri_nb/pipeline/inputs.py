"""Reading the run's input (``initial_input`` merged with upstream outputs) with clear errors.

Recognised keys of ``initial_input`` (all optional)::

    user_preferences      {"preferred_genres": [...], "target_audience": "...", "content_style": "..."}
    target_length_minutes 1.5            (or video_settings.target_length_minutes, as in the seed)
    video_settings        {"resolution": "1920x1080", "fps": 30, "title_card_seconds": 2.0, "crf": 23, "preset": "veryfast"}
    voice_settings        {"reimu_speed": 1.0, "marisa_speed": 1.0, "reimu_pitch": 0, "marisa_pitch": 0}
    reading_dictionary    {"博麗": "ハクレイ", ...}   extra readings for TTS
    theme_id              pick this theme from the bank instead of scoring
    script                a ready-made script ({"lines": [...]}) instead of generating one
    seed                  int, makes theme / script / title choices reproducible (default 0)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import PipelineInputError
from .models import VideoSettings, VoiceSettings
from .readings import ReadingDictionary

__all__ = [
    "read_target_minutes",
    "read_video_settings",
    "read_voice_settings",
    "read_seed",
    "read_readings",
    "read_upstream",
]

M = TypeVar("M", bound=BaseModel)
_MAX_MINUTES = 60.0


def _validation_error(exc: ValidationError, field: str, fix: str) -> PipelineInputError:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    got = f" (got {first.get('input')!r})" if "input" in first and first["type"] != "missing" else ""
    return PipelineInputError(
        f"{first['msg'].removeprefix('Value error, ')}{got}",
        field=f"{field}.{where}" if where else field,
        fix=fix,
    )


def read_target_minutes(data: Mapping[str, Any], default: float = 1.0) -> float:
    """``target_length_minutes`` (top level, else in ``video_settings``), 0 < m <= 60."""
    value = data.get("target_length_minutes")
    field = "target_length_minutes"
    if value is None and isinstance(data.get("video_settings"), Mapping):
        value = data["video_settings"].get("target_length_minutes")
        field = "video_settings.target_length_minutes"
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= _MAX_MINUTES:
        raise PipelineInputError(
            f"target length {value!r} is not a number of minutes in (0, {_MAX_MINUTES:g}]",
            field=field,
            fix="give e.g. 1.5 for a minute and a half",
        )
    return float(value)


def read_video_settings(data: Mapping[str, Any]) -> VideoSettings:
    """``video_settings`` as :class:`VideoSettings` (defaults: 1920x1080, 30 fps)."""
    raw = data.get("video_settings") or {}
    if not isinstance(raw, Mapping):
        raise PipelineInputError(
            f"video_settings must be a mapping, got {type(raw).__name__}",
            field="video_settings",
            fix="pass e.g. {'resolution': '1280x720', 'fps': 30}",
        )
    try:
        return VideoSettings.model_validate(dict(raw))
    except ValidationError as exc:
        raise _validation_error(exc, "video_settings", "use e.g. {'resolution': '1920x1080', 'fps': 30}") from None


def read_voice_settings(data: Mapping[str, Any]) -> VoiceSettings:
    """``voice_settings`` as :class:`VoiceSettings` (speeds are multipliers, pitches half-tones)."""
    raw = data.get("voice_settings") or {}
    if not isinstance(raw, Mapping):
        raise PipelineInputError(
            f"voice_settings must be a mapping, got {type(raw).__name__}",
            field="voice_settings",
            fix="pass e.g. {'reimu_speed': 1.0, 'marisa_speed': 1.1}",
        )
    try:
        return VoiceSettings.model_validate(dict(raw))
    except ValidationError as exc:
        raise _validation_error(
            exc, "voice_settings", "speeds are multipliers in (0.2, 4], pitches half-tones in [-12, 12]"
        ) from None


def read_seed(data: Mapping[str, Any]) -> int:
    """``seed`` as an int (default 0)."""
    value = data.get("seed", 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise PipelineInputError(f"seed {value!r} is not an integer", field="seed", fix="give an integer, e.g. 42")
    return value


def read_readings(data: Mapping[str, Any]) -> ReadingDictionary | None:
    """The run's extra readings merged over the defaults (``None`` when there are none)."""
    raw = data.get("reading_dictionary")
    if not raw:
        return None
    if not isinstance(raw, Mapping):
        raise PipelineInputError(
            f"reading_dictionary must be a mapping, got {type(raw).__name__}",
            field="reading_dictionary",
            fix="pass e.g. {'博麗': 'ハクレイ'}",
        )
    return ReadingDictionary(raw)


def read_upstream(data: Mapping[str, Any], key: str, model: type[M], producer: str) -> M:
    """An upstream step's output ``key`` read back as ``model``.

    Raises:
        PipelineInputError: the key is missing (the producing step did not
            run or returned something else) or does not validate.
    """
    raw = data.get(key)
    if raw is None:
        raise PipelineInputError(
            f"no {key!r} in the input; it is produced by step {producer!r}",
            field=key,
            fix=f"make this step depend on {producer!r}, or pass {key!r} in initial_input",
        )
    if isinstance(raw, model):
        return raw
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _validation_error(exc, key, f"pass a valid {model.__name__} as {key!r}") from None
