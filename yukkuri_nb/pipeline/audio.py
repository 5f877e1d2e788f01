"""Small audio helpers on mono int16 numpy arrays: WAV files, silence, trimming, loudness."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

__all__ = [
    "to_int16",
    "write_wav",
    "read_wav",
    "silence",
    "trim_silence",
    "resample",
    "frame_rms",
]


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Convert float samples on the int16 scale (what Open JTalk returns) to clipped int16.

    Float arrays whose peak is at most 1.0 are taken to be on the -1..1 scale.
    """
    array = np.asarray(samples)
    if array.dtype == np.int16:
        return array
    array = array.astype(np.float64, copy=False)
    if array.size and np.max(np.abs(array)) <= 1.0:
        array = array * 32767.0
    return np.clip(np.rint(array), -32768, 32767).astype(np.int16)


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write mono int16 ``samples`` as a WAV file (atomically: temp file then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with wave.open(str(tmp), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(int(sample_rate))
        handle.writeframes(to_int16(samples).tobytes())
    os.replace(tmp, path)
    return path


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a mono 16-bit WAV file into ``(int16 samples, sample_rate)``.

    Raises:
        ValueError: the file is not mono 16-bit PCM.
    """
    with wave.open(str(path), "rb") as handle:
        if handle.getnchannels() != 1 or handle.getsampwidth() != 2:
            raise ValueError(f"{path}: expected mono 16-bit PCM WAV")
        rate = handle.getframerate()
        data = handle.readframes(handle.getnframes())
    return np.frombuffer(data, dtype=np.int16).copy(), rate


def silence(seconds: float, sample_rate: int) -> np.ndarray:
    """``seconds`` of digital silence."""
    return np.zeros(max(0, int(round(seconds * sample_rate))), dtype=np.int16)


def trim_silence(samples: np.ndarray, sample_rate: int, *, threshold: float = 0.02, margin: float = 0.04) -> np.ndarray:
    """Cut leading and trailing near-silence, keeping ``margin`` seconds around the speech.

    ``threshold`` is relative to the peak.  All-silent input is returned unchanged.
    """
    if samples.size == 0:
        return samples
    magnitude = np.abs(samples.astype(np.int32))
    peak = int(magnitude.max())
    if peak == 0:
        return samples
    loud = np.flatnonzero(magnitude > threshold * peak)
    pad = int(margin * sample_rate)
    start = max(0, int(loud[0]) - pad)
    end = min(samples.size, int(loud[-1]) + 1 + pad)
    return samples[start:end]


def resample(samples: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Linear-interpolation resampling (good enough for speech between common rates)."""
    if rate == new_rate or samples.size == 0:
        return samples
    count = int(round(samples.size * new_rate / rate))
    positions = np.linspace(0, samples.size - 1, count)
    return to_int16(np.interp(positions, np.arange(samples.size), samples.astype(np.float64)))


def frame_rms(samples: np.ndarray, sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """Root-mean-square loudness of each video frame's slice of audio (0..32768 scale)."""
    out = np.zeros(n_frames, dtype=np.float64)
    data = samples.astype(np.float64)
    for index in range(n_frames):
        start = int(round(index * sample_rate / fps))
        end = int(round((index + 1) * sample_rate / fps))
        chunk = data[start:end]
        if chunk.size:
            out[index] = float(np.sqrt(np.mean(chunk * chunk)))
    return out
