"""The thumbnail: a 1280x720 PNG with the catch phrase, the title and both characters."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .characters import draw_character
from .fonts import find_japanese_font, load_font
from .frames import wrap_text
from .models import Theme, TitleInfo

__all__ = ["ThumbnailPainter", "MAX_THUMBNAIL_BYTES"]

MAX_THUMBNAIL_BYTES = 2 * 1024 * 1024


class ThumbnailPainter:
    """Draws thumbnails with PIL (implements ``ThumbnailRenderer``).

    Args:
        font_path: a Japanese font; found automatically when omitted.
        size: image size, 1280x720 by default (the usual upload size).
    """

    name = "pil"

    def __init__(self, *, font_path: str | Path | None = None, size: tuple[int, int] = (1280, 720)):
        self.font_path = font_path
        self.size = size

    def draw(self, *, title: TitleInfo, theme: Theme) -> Image.Image:
        """Return the thumbnail as an RGB image (not saved).

        Raises:
            PipelineEnvironmentError: no Japanese font.
        """
        font_path = find_japanese_font(str(self.font_path) if self.font_path else None)
        w, h = self.size
        u = h / 720.0
        digest = int(hashlib.sha256(theme.id.encode()).hexdigest()[:4], 16)
        palette = [((255, 214, 64), (220, 40, 60)), ((80, 200, 255), (40, 60, 180)), ((255, 150, 60), (120, 40, 160))]
        light, dark = palette[digest % len(palette)]
        # Two-tone diagonal split with a sunburst feel.
        yy, xx = np.mgrid[0:h, 0:w]
        split = (xx / w + (h - yy) / h * 0.35) > 0.62
        pixels = np.where(split[..., None], np.array(dark, np.uint8), np.array(light, np.uint8))
        rays = (np.arctan2(yy - h * 0.5, xx - w * 0.5) * 12 / np.pi).astype(int) % 2 == 0
        pixels = np.where(rays[..., None], (pixels * 0.92).astype(np.uint8), pixels)
        image = Image.fromarray(pixels.astype(np.uint8), "RGB").convert("RGBA")
        d = ImageDraw.Draw(image)

        # Characters big at the right.
        reimu = draw_character("reimu", size=int(h * 0.55), face="surprised", mouth_open=True)
        marisa = draw_character("marisa", size=int(h * 0.6), face="smile", mouth_open=True)
        image.paste(marisa, (int(w * 0.70), int(h * 0.18)), marisa)
        image.paste(reimu, (int(w * 0.48), int(h * 0.30)), reimu)

        # Catch phrase: huge, yellow on a thick dark outline, up to two rows.
        size = 150 * u
        while True:
            font = load_font(font_path, int(size))
            rows = wrap_text(title.thumbnail_text, font, w * 0.9)
            if len(rows) <= 2 or size < 50 * u:
                break
            size *= 0.9
        y = 40 * u
        for row in rows[:2]:
            d.text((40 * u, y), row, font=font, fill=(255, 245, 80), stroke_width=int(size / 9), stroke_fill=(20, 10, 20))
            y += size * 1.15
        # Title band at the bottom.
        band_top = h - 120 * u
        d.rectangle([0, band_top, w, h], fill=(20, 20, 30, 235))
        small = load_font(font_path, int(48 * u))
        row = wrap_text(title.title, small, w - 60 * u, max_lines=1)[0]
        d.text((30 * u, band_top + 60 * u), row, font=small, fill=(255, 255, 255), anchor="lm")
        return image.convert("RGB")

    def render(self, *, title: TitleInfo, theme: Theme, out_path: Path) -> dict[str, Any]:
        """Write the thumbnail PNG (under 2 MB: palette-reduced if needed) and return its stats."""
        image = self.draw(title=title, theme=theme)
        out_path = Path(out_path)
        tmp = out_path.with_name(out_path.name + ".part")
        image.save(tmp, format="PNG", optimize=True)
        if tmp.stat().st_size > MAX_THUMBNAIL_BYTES:
            image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(tmp, format="PNG", optimize=True)
        os.replace(tmp, out_path)
        return {"width": image.width, "height": image.height, "bytes": out_path.stat().st_size}
