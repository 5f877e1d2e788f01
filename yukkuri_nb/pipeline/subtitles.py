"""SubRip (.srt) subtitles from the measured line timings."""

from __future__ import annotations

import os
from pathlib import Path

from .models import SPEAKERS, AudioTrack

__all__ = ["format_timestamp", "srt_text", "write_srt", "parse_srt"]


def format_timestamp(seconds: float) -> str:
    """``HH:MM:SS,mmm`` (rounded to the millisecond)."""
    millis = max(0, int(round(seconds * 1000)))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def srt_text(track: AudioTrack, *, speaker_names: bool = True) -> str:
    """The .srt document: one cue per line, from its speech start to its speech end.

    With ``speaker_names`` each cue starts with the speaker, e.g. ``霊夢「…」``.
    """
    blocks = []
    for number, line in enumerate(track.lines, start=1):
        text = f"{SPEAKERS[line.speaker].name}「{line.text}」" if speaker_names else line.text
        blocks.append(f"{number}\n{format_timestamp(line.start)} --> {format_timestamp(line.end)}\n{text}\n")
    return "\n".join(blocks)


def write_srt(track: AudioTrack, path: str | Path, *, speaker_names: bool = True) -> Path:
    """Write :func:`srt_text` to ``path`` (UTF-8, atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(srt_text(track, speaker_names=speaker_names), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _parse_timestamp(text: str) -> float:
    hms, millis = text.strip().split(",")
    hours, minutes, seconds = (int(part) for part in hms.split(":"))
    return hours * 3600 + minutes * 60 + seconds + int(millis) / 1000


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """Read an .srt document back into ``(start, end, text)`` cues (for checks and tests)."""
    cues = []
    for block in text.strip().split("\n\n"):
        rows = block.strip().splitlines()
        if len(rows) < 3:
            continue
        start, end = rows[1].split("-->")
        cues.append((_parse_timestamp(start), _parse_timestamp(end), "\n".join(rows[2:])))
    return cues
