"""H.264 + AAC encoding by piping raw frames into ffmpeg (the one imageio-ffmpeg ships).

Frames go in as planar YUV 4:2:0 (BT.601, limited range), converted once per
distinct frame with numpy: that halves the bytes through the pipe and spares
ffmpeg a colour conversion per frame.  The voice track is muxed as AAC.
ffmpeg writes to ``<name>.part`` and the file is renamed only after a clean
exit, so a failed or cancelled encode never leaves a truncated video behind.
ffmpeg's messages go to a temporary log whose tail is quoted on failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import PipelineEnvironmentError

__all__ = ["ffmpeg_exe", "rgb_to_yuv420p", "FfmpegEncoder"]

_ERROR_WORDS = re.compile(r"error|invalid|unknown|no such|not found|unable|cannot|failed", re.IGNORECASE)


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg.

    Raises:
        PipelineEnvironmentError: imageio-ffmpeg is missing or has no binary.
    """
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # ImportError, RuntimeError("No ffmpeg exe could be found")
        raise PipelineEnvironmentError(
            f"ffmpeg is not available ({exc})",
            field="ffmpeg",
            fix="install it with `pip install imageio-ffmpeg` (it ships an ffmpeg binary)",
        ) from exc


def rgb_to_yuv420p(image: Image.Image) -> bytes:
    """Convert an RGB image (even width and height) to raw yuv420p bytes, BT.601 limited range."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w, _ = rgb.shape
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    # Chroma of the 2x2 block average (the conversion is linear, so average first).
    small = (rgb[0::2, 0::2] + rgb[1::2, 0::2] + rgb[0::2, 1::2] + rgb[1::2, 1::2]) * 0.25
    rs, gs, bs = small[..., 0], small[..., 1], small[..., 2]
    u = 128.0 + (-37.797 * rs - 74.203 * gs + 112.0 * bs) / 255.0
    v = 128.0 + (112.0 * rs - 93.786 * gs - 18.214 * bs) / 255.0
    return b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in (y, u, v))


class FfmpegEncoder:
    """An ffmpeg process that takes yuv420p frames on stdin and writes an .mp4.

    Use as a context manager; :meth:`write` frames, and leaving the block
    normally finishes the file.  Leaving it with an exception (or calling
    :meth:`abort`) kills ffmpeg and removes the partial file.

    Args:
        out_path: the .mp4 to write.
        size: ``(width, height)``, both even.
        fps: frame rate.
        audio_path: a WAV muxed as AAC (optional).
        crf, preset: x264 quality and speed.

    Raises:
        PipelineEnvironmentError: ffmpeg cannot start or fails; the message
            quotes the end of its log.
    """

    def __init__(
        self,
        out_path: str | Path,
        size: tuple[int, int],
        fps: int,
        *,
        audio_path: str | Path | None = None,
        crf: int = 23,
        preset: str = "veryfast",
        audio_bitrate: str = "128k",
    ):
        self.out_path = Path(out_path)
        self.part_path = self.out_path.with_name(self.out_path.name + ".part")
        self.size = size
        self.fps = int(fps)
        self.frame_bytes = size[0] * size[1] * 3 // 2
        width, height = size
        command = [
            ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-framerate", str(self.fps),
            "-i", "pipe:0",
        ]
        if audio_path is not None:
            command += ["-i", str(audio_path), "-map", "0:v:0", "-map", "1:a:0"]
        command += [
            "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-tune", "animation",
            "-pix_fmt", "yuv420p", "-colorspace", "smpte170m", "-color_range", "tv", "-r", str(self.fps),
        ]
        if audio_path is not None:
            command += ["-c:a", "aac", "-b:a", audio_bitrate]
        command += ["-movflags", "+faststart", "-f", "mp4", str(self.part_path)]
        self.command = command
        self.frames_written = 0
        self._log = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)
        except OSError as exc:
            self._log.close()
            raise PipelineEnvironmentError(
                f"ffmpeg could not be started ({exc})",
                field="ffmpeg",
                fix="reinstall imageio-ffmpeg (`pip install --force-reinstall imageio-ffmpeg`)",
            ) from exc

    def _log_tail(self, limit: int = 500) -> str:
        """The telling part of ffmpeg's log on one line: its first error lines and its last line."""
        try:
            self._log.seek(0)
            lines = [l.strip() for l in self._log.read().decode("utf-8", "replace").splitlines() if l.strip()]
        except (OSError, ValueError):
            return "(no log)"
        if not lines:
            return "(no output)"
        errors = [l for l in lines if _ERROR_WORDS.search(l)][:2]
        picked = list(dict.fromkeys(errors + [lines[-1]]))
        text = " | ".join(picked)
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def _failure(self, what: str) -> PipelineEnvironmentError:
        return PipelineEnvironmentError(
            f"ffmpeg failed while {what} (exit code {self._proc.returncode}): {self._log_tail()}",
            field="ffmpeg",
            fix="check free disk space and the resolution / encoder settings; the voice track and "
            "other artifacts are kept, so re-running only redoes this step",
        )

    def write(self, frame: bytes, count: int = 1) -> None:
        """Send ``frame`` (yuv420p bytes) ``count`` times."""
        if len(frame) != self.frame_bytes:
            raise ValueError(f"frame has {len(frame)} bytes, expected {self.frame_bytes} for {self.size}")
        try:
            for _ in range(count):
                self._proc.stdin.write(frame)
        except (BrokenPipeError, OSError):
            self._proc.wait()
            self._cleanup()
            raise self._failure("receiving frames") from None
        self.frames_written += count

    def finish(self) -> Path:
        """Close the input, wait for ffmpeg, and move the finished file into place."""
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        code = self._proc.wait()
        if code != 0 or not self.part_path.exists():
            self._cleanup()
            raise self._failure("encoding")
        os.replace(self.part_path, self.out_path)
        self._log.close()
        return self.out_path

    def abort(self) -> None:
        """Kill ffmpeg and remove the partial output."""
        if self._proc.poll() is None:
            self._proc.kill()
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        self._proc.wait()
        self._cleanup()
        self._log.close()

    def _cleanup(self) -> None:
        try:
            self.part_path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> "FfmpegEncoder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()
