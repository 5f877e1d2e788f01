"""What each video frame shows, and drawing it with PIL.

:class:`Timeline` maps frame numbers to a small hashable :class:`FrameState`
(title card, or line *i* with the mouth open or closed).  Consecutive frames
usually share a state, and a whole video has only about two distinct states per
line, so the encoder draws each distinct state once and repeats its bytes.

:class:`FrameRenderer` draws a state: a gradient background with a board
showing the title and, big, what the line is about (its section's heading,
or the video's catch phrase outside the sections), 霊夢 bottom-left and 魔理沙 bottom-right (the speaker lit
and raised, the other dimmed), and the subtitle in a box between them, in the
speaker's colour with a dark outline.  The title card shows the title and
subtitle large, with both characters smiling.

Timing rules (seconds of the voice track): frames before the first line show
the title card; from a line's ``start`` until the next line's start the line's
subtitle stays up and its speaker stays lit; the mouth opens on frames inside
``[start, end)`` whose audio is loud (lip flap follows the real voice).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
import re
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .audio import frame_rms, read_wav
from .characters import draw_character
from .fonts import find_japanese_font, load_font
from .models import SPEAKERS, AudioTrack, TitleInfo

__all__ = ["FrameState", "Timeline", "FrameRenderer", "wrap_text"]

_NO_LINE_START = set("、。，．・：；？！!?）」』】ー～…っゃゅょぁぃぅぇぉッャュョァィゥェォ")


@dataclasses.dataclass(frozen=True, slots=True)
class FrameState:
    """What one frame shows: ``line`` is -1 for the title card."""

    line: int
    mouth_open: bool = False

    @property
    def is_title(self) -> bool:
        return self.line < 0


class Timeline:
    """Frame number -> :class:`FrameState` for a voice track at ``fps``.

    Args:
        track: the voice track with its line timings.
        fps: frames per second.
        samples: the track's samples (int16 mono) for lip flap; read from
            ``track.path`` when omitted.
        mouth_threshold: loudness, relative to the track's loudest frame,
            above which the mouth is open.
    """

    def __init__(self, track: AudioTrack, fps: int, samples: np.ndarray | None = None, *, mouth_threshold: float = 0.12):
        self.track = track
        self.fps = int(fps)
        # Enough frames to cover the whole track (the last frame may overhang it by < 1/fps).
        self.n_frames = max(1, math.ceil(track.duration * self.fps - 1e-9))
        if samples is None:
            samples, _ = read_wav(track.path)
        rms = frame_rms(samples, track.sample_rate, self.fps, self.n_frames)
        peak = float(rms.max()) if rms.size else 0.0
        self._loud = rms > (mouth_threshold * peak) if peak > 0 else np.zeros(self.n_frames, dtype=bool)
        self._starts = [line.start for line in track.lines]

    @property
    def duration(self) -> float:
        """Video duration in seconds (``n_frames / fps``)."""
        return self.n_frames / self.fps

    def state_at_frame(self, index: int) -> FrameState:
        """The state of frame ``index`` (its start time is ``index / fps``)."""
        t = index / self.fps
        position = bisect.bisect_right(self._starts, t + 1e-9) - 1
        if position < 0:
            return FrameState(-1)
        line = self.track.lines[position]
        speaking = line.start <= t < line.end
        return FrameState(position, bool(speaking and self._loud[index]))

    def runs(self) -> list[tuple[FrameState, int]]:
        """The whole video as ``(state, number of consecutive frames)`` runs."""
        result: list[tuple[FrameState, int]] = []
        for index in range(self.n_frames):
            state = self.state_at_frame(index)
            if result and result[-1][0] == state:
                result[-1] = (state, result[-1][1] + 1)
            else:
                result.append((state, 1))
        return result


def wrap_text(text: str, font, max_width: float, max_lines: int | None = None) -> list[str]:
    """Wrap Japanese ``text`` to ``max_width`` pixels, character by character.

    A run of Latin letters and digits ("Python", "asyncio.run") is kept on one
    line when it fits on a line of its own; punctuation that may not start a
    line (、。」…) stays on the previous one.  With ``max_lines`` the last line
    is cut with an ellipsis.
    """
    lines: list[str] = []
    current = ""
    for token in _WRAP_TOKENS.findall(text):
        if token == "\n":
            lines.append(current)
            current = ""
            continue
        pieces = [token] if len(token) == 1 or font.getlength(token) <= max_width else list(token)
        for piece in pieces:
            if current and font.getlength(current + piece) > max_width and piece[0] not in _NO_LINE_START:
                # An opening bracket never ends a line: it moves down with the word it opens.
                carry = len(current) - len(current.rstrip(_NO_LINE_END))
                if carry < len(current):
                    lines.append(current[: len(current) - carry])
                    current = current[len(current) - carry :] + piece
                else:
                    lines.append(current)
                    current = piece
            else:
                current += piece
    if current:
        lines.append(current)
    if max_lines is not None and len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][:-1] + "…"
    return lines


_NO_LINE_END = "「『（(【［[〈《“"

# One token per Latin word (letters, digits and in-word punctuation), else one character.
_WRAP_TOKENS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+#'/-]*|.", re.S)


def _card_title(title: str) -> str:
    """The title without a leading 【tag】 (the card shows its own ゆっくり解説 badge)."""
    if title.startswith("【") and "】" in title:
        rest = title.split("】", 1)[1].strip()
        return rest or title
    return title


def _theme_hue(seed_text: str) -> float:
    return int(hashlib.sha256(seed_text.encode("utf-8")).hexdigest()[:6], 16) / 0xFFFFFF


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


class FrameRenderer:
    """Draws frames of one video.

    Args:
        size: ``(width, height)`` in pixels.
        title: title and subtitle shown on the title card and the board's header.
        track: line texts, speakers, faces and topics (the board's big text
            while the line is on screen: its section's heading; the title's
            catch phrase for lines without a topic).
        font_path: Japanese font; found automatically when omitted.

    Raises:
        PipelineEnvironmentError: no Japanese font (from :func:`find_japanese_font`).
    """

    def __init__(self, size: tuple[int, int], title: TitleInfo, track: AudioTrack, font_path: str | Path | None = None):
        self.width, self.height = size
        self.title = title
        self.track = track
        self.font_path = find_japanese_font(str(font_path) if font_path else None)
        self.u = self.height / 1080.0
        self._hue = _theme_hue(title.title)
        self._boards: dict[str | None, Image.Image] = {}

    def _font(self, px: float):
        return load_font(self.font_path, max(6, int(round(px))))

    # -- layers -------------------------------------------------------------

    def _background(self, topic: str | None = None) -> Image.Image:
        """The backdrop with the board showing ``topic`` (``None``: the catch phrase); one per topic."""
        image = self._boards.get(topic)
        if image is None:
            image = self._boards[topic] = self._draw_background(topic)
        return image

    def _draw_background(self, topic: str | None) -> Image.Image:
        w, h, u = self.width, self.height, self.u
        top = np.array(_hsv(self._hue, 0.35, 0.98), dtype=np.float32)
        bottom = np.array(_hsv(self._hue + 0.08, 0.55, 0.80), dtype=np.float32)
        ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
        pixels = top * (1 - ramp) + bottom * ramp
        pixels = np.broadcast_to(pixels, (h, w, 3)).copy()
        # Soft diagonal stripes.
        yy, xx = np.mgrid[0:h, 0:w]
        stripes = ((xx + yy) // max(2, int(48 * u))) % 2 == 0
        pixels[stripes] *= 0.96
        image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB")
        d = ImageDraw.Draw(image)
        # The board: a white panel with a coloured header band holding the title.
        left, top_y, right, bottom_y = w * 0.12, h * 0.05, w * 0.88, h * 0.62
        radius = max(2, int(24 * u))
        d.rounded_rectangle([left + 8 * u, top_y + 10 * u, right + 8 * u, bottom_y + 10 * u], radius, fill=(0, 0, 0))
        d.rounded_rectangle([left, top_y, right, bottom_y], radius, fill=(252, 252, 248), outline=(60, 60, 70), width=max(1, int(4 * u)))
        band = h * 0.11
        d.rounded_rectangle([left, top_y, right, top_y + band], radius, fill=_hsv(self._hue + 0.5, 0.55, 0.55))
        font = self._font(44 * u)
        text = wrap_text(self.title.title, font, right - left - 60 * u, max_lines=1)[0]
        d.text(((left + right) / 2, top_y + band / 2), text, font=font, fill=(255, 255, 255), anchor="mm")
        if self.title.subtitle:
            body = self._font(36 * u)
            row = wrap_text(self.title.subtitle, body, right - left - 120 * u, max_lines=1)[0]
            d.text(((left + right) / 2, top_y + band + 40 * u), row, font=body, fill=(70, 70, 80), anchor="ma")
        # The current section's heading (the catch phrase outside sections), big, in the middle of the board.
        size = 120 * u
        while True:
            catch = self._font(size)
            rows = wrap_text(topic or self.title.thumbnail_text, catch, right - left - 120 * u)
            if len(rows) <= 2 or size <= 30 * u:
                break
            size *= 0.9
        rows = rows[:2]
        middle = top_y + band + (bottom_y - top_y - band) * 0.55
        y = middle - (len(rows) - 1) * size * 0.6
        for row in rows:
            d.text(
                ((left + right) / 2, y), row, font=catch, fill=_hsv(self._hue + 0.5, 0.7, 0.75),
                stroke_width=max(1, int(size / 14)), stroke_fill=(255, 255, 255), anchor="mm",
            )
            y += size * 1.2
        return image

    def _character_layout(self) -> dict[str, tuple[int, int, int]]:
        size = max(8, int(self.height * 0.36))
        margin = int(self.height * 0.02)
        y = self.height - size - margin
        return {"reimu": (margin, y, size), "marisa": (self.width - size - margin, y, size)}

    def _paste_characters(self, image: Image.Image, speaker: str | None, face: str, mouth_open: bool) -> None:
        for name, (x, y, size) in self._character_layout().items():
            active = speaker is None or name == speaker
            sprite = draw_character(
                name,
                size=size,
                face=face if name == speaker else ("smile" if speaker is None else "normal"),
                mouth_open=mouth_open and name == speaker,
                dim=not active,
            )
            lift = int(self.height * 0.02) if speaker == name else 0
            image.paste(sprite, (x, y - lift), sprite)

    def _draw_subtitle(self, image: Image.Image, line_index: int) -> None:
        line = self.track.lines[line_index]
        speaker = SPEAKERS[line.speaker]
        w, h, u = self.width, self.height, self.u
        left, right = w * 0.21, w * 0.79
        top, bottom = h * 0.72, h * 0.97
        overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
        od = ImageDraw.Draw(overlay)
        radius = max(2, int(18 * u))
        od.rounded_rectangle([left, top, right, bottom], radius, fill=(20, 20, 30, 190))
        # Name tag in the speaker's colour.
        tag_font = self._font(30 * u)
        tag_w = tag_font.getlength(speaker.name) + 40 * u
        tag_x = left + 20 * u if line.speaker == "reimu" else right - 20 * u - tag_w
        od.rounded_rectangle([tag_x, top - 26 * u, tag_x + tag_w, top + 18 * u], max(2, int(12 * u)), fill=speaker.subtitle_color + (255,))
        od.text((tag_x + tag_w / 2, top - 4 * u), speaker.name, font=tag_font, fill=speaker.outline_color, anchor="mm")
        image.alpha_composite(overlay)

        d = ImageDraw.Draw(image)
        max_width = right - left - 60 * u
        box_height = bottom - top - 40 * u
        size = 56 * u
        while True:
            font = self._font(size)
            rows = wrap_text(line.text, font, max_width)
            line_height = size * 1.3
            if (len(rows) * line_height <= box_height and len(rows) <= 3) or size <= 24 * u:
                break
            size *= 0.9
        rows = rows[: max(1, int(box_height // line_height))]
        y = (top + bottom) / 2 - line_height * len(rows) / 2 + line_height / 2
        stroke = max(1, int(size / 9))
        for row in rows:
            d.text(
                ((left + right) / 2, y),
                row,
                font=font,
                fill=speaker.subtitle_color,
                stroke_width=stroke,
                stroke_fill=speaker.outline_color,
                anchor="mm",
            )
            y += line_height

    def _title_card(self) -> Image.Image:
        w, h, u = self.width, self.height, self.u
        base = np.array(_hsv(self._hue + 0.5, 0.6, 0.35), dtype=np.float32)
        glow = np.array(_hsv(self._hue, 0.5, 0.95), dtype=np.float32)
        yy, xx = np.mgrid[0:h, 0:w]
        dist = np.sqrt(((xx - w / 2) / w) ** 2 + ((yy - h * 0.4) / h) ** 2)[..., None]
        mix = np.clip(1.0 - dist * 1.6, 0.0, 1.0)
        pixels = base * (1 - mix) + glow * mix
        image = Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB").convert("RGBA")
        d = ImageDraw.Draw(image)
        badge = self._font(36 * u)
        d.rounded_rectangle([w * 0.5 - 150 * u, h * 0.08, w * 0.5 + 150 * u, h * 0.08 + 60 * u], max(2, int(30 * u)), fill=(220, 30, 45))
        d.text((w * 0.5, h * 0.08 + 30 * u), "ゆっくり解説", font=badge, fill=(255, 255, 255), anchor="mm")
        size = 96 * u
        while True:
            font = self._font(size)
            rows = wrap_text(_card_title(self.title.title), font, w * 0.86)
            if len(rows) <= 2 or size <= 30 * u:
                break
            size *= 0.9
        rows = rows[:3]
        y = h * 0.36 - (len(rows) - 1) * size * 0.65
        for row in rows:
            d.text((w / 2, y), row, font=font, fill=(255, 255, 255), stroke_width=max(1, int(size / 12)), stroke_fill=(40, 20, 30), anchor="mm")
            y += size * 1.3
        if self.title.subtitle:
            small = self._font(40 * u)
            row = wrap_text(self.title.subtitle, small, w * 0.7, max_lines=1)[0]
            d.text((w / 2, y + 10 * u), row, font=small, fill=(255, 250, 220), stroke_width=max(1, int(3 * u)), stroke_fill=(40, 20, 30), anchor="mm")
        self._paste_characters(image, None, "smile", False)
        return image.convert("RGB")

    # -- public -------------------------------------------------------------

    def render(self, state: FrameState) -> Image.Image:
        """Draw ``state`` as an RGB image of the renderer's size."""
        if state.is_title:
            return self._cached_title
        line = self.track.lines[state.line]
        image = self._background(line.topic).convert("RGBA")
        self._paste_characters(image, line.speaker, line.face, state.mouth_open)
        self._draw_subtitle(image, state.line)
        return image.convert("RGB")

    @functools.cached_property
    def _cached_title(self) -> Image.Image:
        return self._title_card()
