"""The default video composer: PIL frames piped into ffmpeg (implements ``VideoComposer``).

Only distinct frames are drawn and converted: the timeline is walked as runs
of identical states, each state is rendered once (a small cache covers the
mouth flapping back and forth within a line) and its bytes are written as many
times as the run is long.
"""

from __future__ import annotations

import collections
import time
from pathlib import Path
from typing import Any

from .encoder import FfmpegEncoder, rgb_to_yuv420p
from .frames import FrameRenderer, FrameState, Timeline
from .models import AudioTrack, TitleInfo, VideoSettings
from .providers import CancelCheck, ProgressFn

__all__ = ["FfmpegVideoComposer"]


class FfmpegVideoComposer:
    """Renders frames with :class:`FrameRenderer` and encodes them with :class:`FfmpegEncoder`.

    Args:
        font_path: a Japanese font; found automatically when omitted.
        cache_size: how many distinct converted frames are kept (each is
            width x height x 1.5 bytes).
    """

    name = "pil+ffmpeg"

    def __init__(self, *, font_path: str | Path | None = None, cache_size: int = 4):
        self.font_path = font_path
        self.cache_size = max(1, cache_size)

    def plan(self, *, title: TitleInfo, track: AudioTrack, settings: VideoSettings) -> tuple[Timeline, FrameRenderer]:
        """The timeline and the renderer :meth:`compose` would use (for previews and checks)."""
        timeline = Timeline(track, settings.fps)
        renderer = FrameRenderer(settings.resolution, title, track, font_path=self.font_path)
        return timeline, renderer

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
        """Render and encode the video to ``out_path``; return frame and timing stats.

        Raises:
            PipelineEnvironmentError: no Japanese font, or ffmpeg failed.
        """
        started = time.perf_counter()
        timeline, renderer = self.plan(title=title, track=track, settings=settings)
        runs = timeline.runs()
        cache: collections.OrderedDict[FrameState, bytes] = collections.OrderedDict()
        drawn = 0
        render_seconds = 0.0
        done_frames = 0
        # Progress / checkpoint about once a second of video, not per frame.
        report_every = max(1, settings.fps)
        next_report = 0
        with FfmpegEncoder(
            out_path, settings.resolution, settings.fps, audio_path=track.path, crf=settings.crf, preset=settings.preset
        ) as encoder:
            for state, count in runs:
                frame = cache.get(state)
                if frame is None:
                    t0 = time.perf_counter()
                    frame = rgb_to_yuv420p(renderer.render(state))
                    render_seconds += time.perf_counter() - t0
                    drawn += 1
                    cache[state] = frame
                    if len(cache) > self.cache_size:
                        cache.popitem(last=False)
                else:
                    cache.move_to_end(state)
                encoder.write(frame, count)
                done_frames += count
                if done_frames >= next_report:
                    check()
                    progress(done_frames / timeline.n_frames, f"{done_frames}/{timeline.n_frames} frames")
                    next_report = done_frames + report_every
            progress(1.0, "finishing the mp4")
        return {
            "frames": timeline.n_frames,
            "distinct_frames_drawn": drawn,
            "fps": settings.fps,
            "resolution": f"{settings.resolution[0]}x{settings.resolution[1]}",
            "duration": timeline.duration,
            "render_seconds": round(render_seconds, 3),
            "total_seconds": round(time.perf_counter() - started, 3),
        }
