"""Provider interfaces of the yukkuri pipeline, and the bundle the workflow uses.

Each step delegates the real work to a provider behind a small
:class:`typing.Protocol`, so a remote LLM, another TTS engine or a different
renderer can be plugged in without touching the workflow::

    providers = default_providers().replace(script=OpenAIChatScriptGenerator.from_env())
    register_yukkuri_workflow(engine, output_dir="out", providers=providers)

The offline providers are the defaults; they need no network and no keys.
Providers may be called from worker threads (the steps run CPU-bound work off
the event loop) and, with several projects running at once, from two threads at
the same time: implementations must be thread-safe or lock internally.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .readings import ReadingDictionary
from .models import AudioTrack, Script, SpeakerId, Theme, TitleInfo, VideoSettings, VoiceSettings

__all__ = [
    "ThemeSelection",
    "ThemeSelector",
    "ScriptGenerator",
    "TitleGenerator",
    "SpeechSynthesizer",
    "VideoComposer",
    "ThumbnailRenderer",
    "ProgressFn",
    "CancelCheck",
    "Providers",
    "default_providers",
]

ProgressFn = Callable[[float, str], None]
"""``progress(fraction, message)``: sub-progress of the current step, 0..1."""

CancelCheck = Callable[[], None]
"""``check()``: returns, or raises when the step was cancelled (or waits while paused)."""


@dataclasses.dataclass(frozen=True)
class ThemeSelection:
    """The chosen theme plus the ranked candidates it was chosen from."""

    theme: Theme
    candidates: tuple[tuple[str, float], ...]  # (theme id, score), best first


@runtime_checkable
class ThemeSelector(Protocol):
    """Chooses a theme from the user's preferences."""

    def select(self, preferences: Mapping[str, Any], *, seed: int | None = None) -> ThemeSelection:
        """Return the best theme for ``preferences`` (deterministic for a given seed)."""
        ...


@runtime_checkable
class ScriptGenerator(Protocol):
    """Writes the 霊夢 / 魔理沙 dialogue for a theme."""

    def generate(
        self,
        theme: Theme,
        *,
        target_minutes: float,
        preferences: Mapping[str, Any],
        seed: int | None = None,
    ) -> Script:
        """Return a script roughly ``target_minutes`` long."""
        ...


@runtime_checkable
class TitleGenerator(Protocol):
    """Writes the video title and the thumbnail text."""

    def generate(
        self,
        theme: Theme,
        script: Script | None = None,
        *,
        preferences: Mapping[str, Any],
        seed: int | None = None,
        target_minutes: float | None = None,
    ) -> TitleInfo:
        """Return the title for ``theme``.

        ``script`` is optional: in the workflow the title is written in
        parallel with the script, so only ``target_minutes`` is known.
        """
        ...


@runtime_checkable
class SpeechSynthesizer(Protocol):
    """Turns one line into speech."""

    name: str

    def synthesize(
        self,
        text: str,
        *,
        speaker: SpeakerId,
        voice: VoiceSettings,
        reading: str | None = None,
        readings: ReadingDictionary | None = None,
    ) -> tuple[np.ndarray, int]:
        """Return ``(samples, sample_rate)``: mono int16 samples of ``text`` spoken by ``speaker``.

        ``reading`` (kana), when given, is spoken instead of ``text``.
        ``readings`` is the run's word dictionary; an engine without a
        dictionary of its own may apply ``readings.substitute(text)``.  Raise a
        :class:`~yukkuri_nb.pipeline.errors.PipelineError` when the line cannot
        be spoken.
        """
        ...


@runtime_checkable
class VideoComposer(Protocol):
    """Renders frames and encodes the final video."""

    def compose(
        self,
        *,
        title: TitleInfo,
        track: AudioTrack,
        settings: VideoSettings,
        out_path: Path,
        progress: ProgressFn,
        check: CancelCheck,
    ) -> dict[str, Any]:
        """Write ``out_path`` (an .mp4 whose duration is the track's) and return stats."""
        ...


@runtime_checkable
class ThumbnailRenderer(Protocol):
    """Draws the thumbnail image."""

    def render(self, *, title: TitleInfo, theme: Theme, out_path: Path) -> dict[str, Any]:
        """Write a PNG thumbnail to ``out_path`` and return stats (size, bytes)."""
        ...


@dataclasses.dataclass(frozen=True)
class Providers:
    """The providers one registered workflow uses."""

    themes: ThemeSelector
    script: ScriptGenerator
    title: TitleGenerator
    tts: SpeechSynthesizer
    video: VideoComposer
    thumbnail: ThumbnailRenderer

    def replace(self, **changes: Any) -> "Providers":
        """Return a copy with some providers swapped, e.g. ``replace(tts=MyTTS())``."""
        return dataclasses.replace(self, **changes)


def default_providers(*, font_path: str | Path | None = None) -> Providers:
    """The offline providers: theme bank, template script and title, Open JTalk, PIL + ffmpeg.

    Args:
        font_path: a Japanese font file for subtitles and thumbnails; found
            automatically (Noto Sans CJK) when omitted.  A missing font is
            reported when a frame is first drawn, not here.
    """
    from .script import TemplateScriptGenerator
    from .themes import ThemeBank
    from .thumbnail import ThumbnailPainter
    from .titles import TemplateTitleGenerator
    from .tts import OpenJTalkSynthesizer
    from .video import FfmpegVideoComposer

    return Providers(
        themes=ThemeBank.builtin(),
        script=TemplateScriptGenerator(),
        title=TemplateTitleGenerator(),
        tts=OpenJTalkSynthesizer(),
        video=FfmpegVideoComposer(font_path=font_path),
        thumbnail=ThumbnailPainter(font_path=font_path),
    )
