"""The voice track: one WAV per script line, one combined WAV, and timings measured from them.

Layout in the project's ``audio/`` folder::

    line_000.wav, line_001.wav, ...   each line as synthesised
    lines.json                        per-line cache keys (what each WAV was made from)
    voice.wav                         lead-in silence + (line + pause) ... + tail

Lines are synthesised in order and each WAV is written as soon as it exists,
so when line 7 fails, lines 0-6 stay on disk; a later run reuses every line
whose text, reading, speaker, voice and dictionary are unchanged.

Timings come from the real sample counts: line *i* starts at the sum of the
lead-in and all earlier lines and pauses, and ends ``len(samples) / rate``
seconds later.  They are exact to the sample.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .audio import read_wav, resample, silence, write_wav
from .errors import PipelineError, PipelineInputError
from .models import SPEAKERS, AudioTrack, LineTiming, Script, VoiceSettings
from .providers import CancelCheck, ProgressFn, SpeechSynthesizer
from .readings import ReadingDictionary

__all__ = ["build_voice_track", "TRACK_NAME"]

TRACK_NAME = "voice.wav"
_MANIFEST = "lines.json"


def _line_key(synth: SpeechSynthesizer, line, voice: VoiceSettings, readings: ReadingDictionary | None) -> str:
    params = getattr(synth, "voice_params", None)
    payload = {
        "engine": getattr(synth, "name", type(synth).__name__),
        "speaker": line.speaker,
        "text": line.text,
        "reading": line.reading,
        "voice": list(params(line.speaker, voice)) if callable(params) else voice.model_dump(),
        "dictionary": readings.digest if readings else "",
    }
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:20]


def _load_manifest(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text("utf-8"))
        return {str(k): str(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _save_manifest(path: Path, manifest: dict[str, str]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True), "utf-8")
    os.replace(tmp, path)


def build_voice_track(
    script: Script,
    synth: SpeechSynthesizer,
    audio_dir: str | Path,
    *,
    voice: VoiceSettings | None = None,
    readings: ReadingDictionary | None = None,
    lead_in: float = 0.0,
    tail: float = 0.5,
    progress: ProgressFn | None = None,
    check: CancelCheck | None = None,
) -> AudioTrack:
    """Synthesise every line of ``script`` and assemble the combined track.

    Args:
        lead_in: silence before the first line (the title card), seconds.
        tail: silence after the last line's pause, seconds.
        progress: called after each line with ``(fraction, message)``.
        check: called before each line; raises to stop (cancel) or blocks (pause).

    Raises:
        PipelineInputError: the script has no lines.
        PipelineError: a line could not be synthesised; the message names the
            line (``script.lines[i]``), the speaker and the text.
    """
    if not script.lines:
        raise PipelineInputError(
            "the script has no lines", field="script.lines", fix="give the script at least one line"
        )
    voice = voice or VoiceSettings()
    audio_dir = Path(audio_dir)
    audio_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = audio_dir / _MANIFEST
    manifest = _load_manifest(manifest_path)

    rate: int | None = None
    clips: list[np.ndarray] = []
    paths: list[Path] = []
    total = len(script.lines)
    reused = 0
    for index, line in enumerate(script.lines):
        if check is not None:
            check()
        path = audio_dir / f"line_{index:03d}.wav"
        key = _line_key(synth, line, voice, readings)
        samples = None
        if manifest.get(path.name) == key and path.exists():
            try:
                samples, line_rate = read_wav(path)
                reused += 1
            except (OSError, ValueError, EOFError):
                samples = None
        if samples is None:
            try:
                samples, line_rate = synth.synthesize(
                    line.text, speaker=line.speaker, voice=voice, reading=line.reading, readings=readings
                )
            except Exception as exc:
                name = SPEAKERS[line.speaker].name
                problem = exc.problem if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
                sub = exc.field if isinstance(exc, PipelineError) and exc.field in ("text", "reading") else "text"
                fix = exc.fix if isinstance(exc, PipelineError) else "edit the line's text or give it a kana 'reading'"
                cls = type(exc) if isinstance(exc, PipelineError) else PipelineError
                raise cls(
                    f"line {index + 1} of {total} ({name}: {line.text!r}) could not be synthesised: {problem}; "
                    f"lines 1-{index} are kept in {audio_dir}",
                    field=f"script.lines[{index}].{sub}",
                    fix=fix,
                ) from exc
            write_wav(path, samples, line_rate)
            manifest[path.name] = key
            _save_manifest(manifest_path, manifest)
        if rate is None:
            rate = int(line_rate)
        elif line_rate != rate:
            samples = resample(samples, int(line_rate), rate)
        clips.append(np.asarray(samples, dtype=np.int16))
        paths.append(path)
        if progress is not None:
            progress((index + 1) / total, f"{index + 1}/{total} {SPEAKERS[line.speaker].name}: {line.text[:24]}")

    assert rate is not None
    pieces: list[np.ndarray] = [silence(lead_in, rate)]
    timings: list[LineTiming] = []
    cursor = pieces[0].size
    for index, (line, clip, path) in enumerate(zip(script.lines, clips, paths)):
        gap = silence(line.pause_after, rate)
        start = cursor
        end = start + clip.size
        cursor = end + gap.size
        pieces.extend((clip, gap))
        timings.append(
            LineTiming(
                index=index,
                speaker=line.speaker,
                text=line.text,
                face=line.face,
                topic=line.topic,
                start=start / rate,
                end=end / rate,
                next_start=cursor / rate,
                wav=str(path),
            )
        )
    pieces.append(silence(tail, rate))
    combined = np.concatenate(pieces)
    track_path = write_wav(audio_dir / TRACK_NAME, combined, rate)
    return AudioTrack(
        path=str(track_path),
        sample_rate=rate,
        duration=combined.size / rate,
        lead_in=pieces[0].size / rate,
        lines=timings,
    )
