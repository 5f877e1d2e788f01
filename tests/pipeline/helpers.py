"""Shared helpers for the pipeline tests: a fake step context, tiny scripts, a tone synthesizer, ffprobe."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from yukkuri_nb.pipeline.models import Script, ScriptLine


class FakeContext:
    """The parts of StepExecutionContext the processors use, recording what they do."""

    def __init__(self, project_id: str = "p1", step_name: str = "step"):
        self.project_id = project_id
        self.step_name = step_name
        self.progress: list[tuple[float, str]] = []
        self.checkpoints = 0
        self.resources: dict[str, object] = {}

    def report_progress(self, fraction: float, message: str = "") -> None:
        self.progress.append((fraction, message))

    def get_resource(self, name: str):
        return self.resources[name]

    async def checkpoint(self) -> None:
        self.checkpoints += 1
        await asyncio.sleep(0)


def tiny_script() -> Script:
    """Three short lines: enough for timings, fast to synthesise."""
    return Script(
        theme_id="test",
        theme_title="テスト",
        lines=[
            ScriptLine(speaker="reimu", text="ゆっくり霊夢よ。", face="smile", pause_after=0.3),
            ScriptLine(speaker="marisa", text="ゆっくり魔理沙だぜ。", face="normal", pause_after=0.4),
            ScriptLine(speaker="reimu", text="またね。", face="smile", pause_after=0.2),
        ],
    )


class ToneSynth:
    """A deterministic SpeechSynthesizer: a 440 Hz tone, 0.05 s per character."""

    name = "tone"

    def __init__(self, rate: int = 16000, fail_on: str | None = None):
        self.rate = rate
        self.fail_on = fail_on
        self.calls: list[str] = []

    def synthesize(self, text, *, speaker, voice=None, reading=None, readings=None):
        self.calls.append(text)
        if self.fail_on is not None and self.fail_on in text:
            raise RuntimeError("engine exploded")
        n = int(0.05 * len(reading or text) * self.rate)
        t = np.arange(n) / self.rate
        return (np.sin(2 * np.pi * 440 * t) * 12000).astype(np.int16), self.rate


def ffprobe(path: Path) -> dict:
    exe = shutil.which("ffprobe")
    if exe is None:  # fail, never skip: a skip would hide a broken video step
        pytest.fail("ffprobe is not installed; fix: run `make setup` (or `sudo apt-get install ffmpeg`)")
    done = subprocess.run(
        [exe, "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def decode_frame(path: Path, index: int, size: tuple[int, int]) -> np.ndarray:
    """Frame number ``index`` of a video as an RGB array (decoded by ffmpeg)."""
    from yukkuri_nb.pipeline.encoder import ffmpeg_exe

    done = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-vf", f"select=eq(n\\,{index})", "-vframes", "1",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    )
    width, height = size
    assert len(done.stdout) == width * height * 3, "ffmpeg did not return exactly one frame"
    return np.frombuffer(done.stdout, np.uint8).reshape(height, width, 3)


def rms(samples: np.ndarray) -> float:
    data = samples.astype(np.float64)
    return float(np.sqrt(np.mean(data * data))) if data.size else 0.0
