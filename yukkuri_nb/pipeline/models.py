"""Data passed between the yukkuri steps.

Everything here is a pydantic model with ``extra="forbid"`` so that a typo in a
hand-written script or in an LLM's JSON is caught where it enters.  Step outputs
travel between steps (and into the run store) as plain JSON dicts: use
``model_dump(mode="json")`` to produce them and ``Model.model_validate`` to read
them back.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "SPEAKERS",
    "Speaker",
    "SpeakerId",
    "Face",
    "Theme",
    "ThemePoint",
    "ScriptLine",
    "Script",
    "TitleInfo",
    "VoiceSettings",
    "VideoSettings",
    "LineTiming",
    "AudioTrack",
    "parse_size",
]

SpeakerId = Literal["reimu", "marisa"]
Face = Literal["normal", "smile", "surprised", "thinking", "troubled"]


class Speaker(BaseModel):
    """A character of the dialogue: display name and colours."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: SpeakerId
    name: str = Field(description="Display name, e.g. 霊夢.")
    subtitle_color: tuple[int, int, int] = Field(description="Subtitle text colour (RGB).")
    outline_color: tuple[int, int, int] = Field(description="Subtitle outline colour (RGB).")


SPEAKERS: dict[str, Speaker] = {
    "reimu": Speaker(id="reimu", name="霊夢", subtitle_color=(255, 90, 90), outline_color=(60, 0, 0)),
    "marisa": Speaker(id="marisa", name="魔理沙", subtitle_color=(255, 214, 64), outline_color=(50, 35, 0)),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ThemePoint(_Model):
    """One section of a theme: a heading and a few explanatory sentences."""

    heading: str = Field(min_length=1, description="Short heading, asked about by 霊夢.")
    lines: list[str] = Field(min_length=1, description="Explanations, spoken by 魔理沙.")


class Theme(_Model):
    """A video theme from the bank (or from a remote provider)."""

    id: str = Field(min_length=1, description="Stable identifier, ASCII.")
    title: str = Field(min_length=1, description="Japanese theme title.")
    summary: str = Field(min_length=1, description="One-sentence summary.")
    genres: list[str] = Field(min_length=1, description="Genre tags, e.g. プログラミング.")
    audiences: list[str] = Field(default_factory=list, description="Audience tags, e.g. 初心者.")
    styles: list[str] = Field(default_factory=list, description="Style tags, e.g. 分かりやすい.")
    keywords: list[str] = Field(default_factory=list, description="Free keywords.")
    thumbnail: str = Field(default="", description="Short catch phrase for the thumbnail.")
    points: list[ThemePoint] = Field(min_length=1, description="Sections of the explanation.")


class ScriptLine(_Model):
    """One line of the dialogue."""

    speaker: SpeakerId = Field(description="'reimu' (霊夢) or 'marisa' (魔理沙).")
    text: str = Field(description="What is shown in the subtitle.")
    reading: str | None = Field(default=None, description="Kana reading to speak instead of text.")
    face: Face = Field(default="normal", description="Facial expression while speaking.")
    pause_after: float = Field(default=0.3, ge=0.0, le=5.0, description="Silence after the line, seconds.")
    topic: str | None = Field(
        default=None, max_length=40,
        description="What the board shows while the line is on screen (the section's heading); None: the catch phrase.",
    )

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("text is empty; write what the character says")
        return value

    @field_validator("reading")
    @classmethod
    def _reading_blank_is_none(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        return value.strip() if value else value


class Script(_Model):
    """A whole dialogue for one video."""

    theme_id: str = Field(default="", description="Theme the script was written for.")
    theme_title: str = Field(default="", description="Theme title (Japanese).")
    target_length_minutes: float = Field(default=1.0, gt=0, description="Requested length.")
    estimated_seconds: float = Field(default=0.0, ge=0, description="Generator's own length estimate.")
    generator: str = Field(default="", description="Which provider wrote it.")
    lines: list[ScriptLine] = Field(description="The dialogue, in order.")


class TitleInfo(_Model):
    """Video title and the short text of the thumbnail."""

    title: str = Field(min_length=1, description="Video title.")
    thumbnail_text: str = Field(min_length=1, description="Big text of the thumbnail.")
    subtitle: str = Field(default="", description="Second line of the title card.")


class VoiceSettings(_Model):
    """Per-character voice settings, relative to the built-in yukkuri voices.

    ``*_speed`` multiplies the character's base speaking rate (1.0 = the default
    yukkuri rate, 2.0 = twice as fast); ``*_pitch`` shifts the base pitch by that
    many half-tones (may be negative).
    """

    model_config = ConfigDict(extra="ignore")

    reimu_speed: float = Field(default=1.0, gt=0.2, le=4.0)
    marisa_speed: float = Field(default=1.0, gt=0.2, le=4.0)
    reimu_pitch: float = Field(default=0.0, ge=-12.0, le=12.0)
    marisa_pitch: float = Field(default=0.0, ge=-12.0, le=12.0)


_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(value: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Parse ``"1920x1080"`` (or a pair) into ``(width, height)``.

    Raises:
        ValueError: not of the form WIDTHxHEIGHT, or a side is odd or out of
            16..7680 (H.264 with yuv420p needs even sides).
    """
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise ValueError(f"resolution {value!r} is not of the form WIDTHxHEIGHT, e.g. '1920x1080'")
        width, height = int(match.group(1)), int(match.group(2))
    else:
        width, height = (int(v) for v in value)
    for side in (width, height):
        if not 16 <= side <= 7680 or side % 2:
            raise ValueError(
                f"resolution {width}x{height} is not usable: each side must be even and within 16..7680"
            )
    return width, height


class VideoSettings(_Model):
    """How the video is rendered and encoded."""

    model_config = ConfigDict(extra="ignore")

    resolution: tuple[int, int] = Field(default=(1920, 1080), description="(width, height), even sides.")
    fps: int = Field(default=30, ge=1, le=120)
    title_card_seconds: float = Field(default=2.0, ge=0.0, le=30.0, description="Silent title card at the start.")
    tail_seconds: float = Field(default=0.5, ge=0.0, le=30.0, description="Silence after the last line.")
    crf: int = Field(default=23, ge=0, le=51, description="x264 quality (lower = better, bigger).")
    preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
    ] = Field(default="veryfast", description="x264 preset (speed / size trade-off).")

    @field_validator("resolution", mode="before")
    @classmethod
    def _parse_resolution(cls, value):
        return parse_size(value)


class LineTiming(_Model):
    """Where one spoken line sits in the combined track (seconds)."""

    index: int = Field(ge=0)
    speaker: SpeakerId
    text: str
    face: Face = "normal"
    topic: str | None = Field(default=None, description="The board's text during the line (None: the catch phrase).")
    start: float = Field(ge=0, description="Speech starts.")
    end: float = Field(ge=0, description="Speech ends (start of the pause).")
    next_start: float = Field(ge=0, description="End of the pause: the next line (or the tail) starts.")
    wav: str = Field(default="", description="Path of the line's WAV file.")


class AudioTrack(_Model):
    """The combined voice track and the timings measured from it."""

    path: str
    sample_rate: int = Field(gt=0)
    duration: float = Field(ge=0, description="Seconds, exact (samples / rate).")
    lead_in: float = Field(ge=0, description="Silence before the first line (title card).")
    lines: list[LineTiming]
