"""Procedurally drawn ゆっくり heads of 霊夢 and 魔理沙 (PIL only, no image files).

A head is drawn on a transparent square at twice the requested size and
scaled down, which gives smooth edges.  The drawing varies with the face
(normal / smile / surprised / thinking / troubled), the mouth (open or closed,
for lip flap while speaking) and ``dim`` (the character who is not speaking
is darkened).  Results are cached: a video needs only a handful of variants.
"""

from __future__ import annotations

import functools

from PIL import Image, ImageDraw, ImageEnhance

__all__ = ["draw_character"]

_OUTLINE = (40, 25, 25, 255)
_SKIN = (255, 232, 214, 255)
_WHITE = (255, 255, 255, 255)
_MOUTH = (150, 30, 40, 255)
_TONGUE = (240, 110, 120, 255)
_PALETTE = {
    "reimu": {"hair": (86, 48, 36, 255), "iris": (150, 40, 40, 255), "accent": (220, 30, 45, 255)},
    "marisa": {"hair": (250, 218, 92, 255), "iris": (190, 140, 20, 255), "accent": (30, 30, 36, 255)},
}


def _box(cx: float, cy: float, rx: float, ry: float, u: float) -> list[float]:
    return [(cx - rx) * u, (cy - ry) * u, (cx + rx) * u, (cy + ry) * u]


def _pts(points, u: float) -> list[tuple[float, float]]:
    return [(x * u, y * u) for x, y in points]


def _draw_eyes(d: ImageDraw.ImageDraw, u: float, face: str, iris) -> None:
    width = max(1, int(1.4 * u))
    for cx in (37.0, 63.0):
        if face == "smile":
            d.arc(_box(cx, 60, 7, 6, u), 200, 340, fill=_OUTLINE, width=max(2, int(2.2 * u)))
            continue
        ry = 9.5 if face == "surprised" else 8.5
        d.ellipse(_box(cx, 60, 6.5, ry, u), fill=_WHITE, outline=_OUTLINE, width=width)
        iris_r = 3.2 if face == "surprised" else 4.6
        d.ellipse(_box(cx, 61, iris_r, iris_r * 1.3, u), fill=iris)
        d.ellipse(_box(cx, 61.5, iris_r * 0.45, iris_r * 0.6, u), fill=_OUTLINE)
        d.ellipse(_box(cx - 1.6, 58.2, 1.3, 1.3, u), fill=_WHITE)
    # Eyebrows tell thinking / troubled apart from normal.
    brow = max(1, int(1.6 * u))
    if face == "troubled":
        d.line(_pts([(30, 48), (42, 51)], u), fill=_OUTLINE, width=brow)
        d.line(_pts([(58, 51), (70, 48)], u), fill=_OUTLINE, width=brow)
        d.ellipse(_box(78, 52, 2.2, 3.4, u), fill=(120, 190, 255, 255))  # sweat drop
    elif face == "thinking":
        d.line(_pts([(30, 50), (42, 50)], u), fill=_OUTLINE, width=brow)
        d.line(_pts([(58, 47), (70, 45)], u), fill=_OUTLINE, width=brow)
    else:
        d.arc(_box(36, 52, 6, 3, u), 200, 340, fill=_OUTLINE, width=brow)
        d.arc(_box(64, 52, 6, 3, u), 200, 340, fill=_OUTLINE, width=brow)


def _draw_mouth(d: ImageDraw.ImageDraw, u: float, face: str, mouth_open: bool) -> None:
    if mouth_open:
        ry = 5.5 if face == "surprised" else 4.5
        rx = 4.0 if face == "surprised" else 6.0
        d.ellipse(_box(50, 75, rx, ry, u), fill=_MOUTH, outline=_OUTLINE, width=max(1, int(1.2 * u)))
        d.ellipse(_box(50, 77.5, rx * 0.6, ry * 0.45, u), fill=_TONGUE)
    elif face == "surprised":
        d.ellipse(_box(50, 75, 2.5, 2.8, u), outline=_OUTLINE, width=max(1, int(1.4 * u)))
    elif face in ("thinking", "troubled"):
        d.line(_pts([(45, 75), (48, 74), (52, 76), (55, 75)], u), fill=_OUTLINE, width=max(1, int(1.4 * u)))
    else:
        d.arc(_box(50, 72, 5, 3.5, u), 20, 160, fill=_OUTLINE, width=max(1, int(1.6 * u)))


def _draw_reimu_back(d: ImageDraw.ImageDraw, u: float, pal) -> None:
    # Big red bow with white frill edges, behind the head.
    d.polygon(_pts([(50, 20), (14, 2), (10, 30)], u), fill=_WHITE, outline=_OUTLINE)
    d.polygon(_pts([(50, 20), (86, 2), (90, 30)], u), fill=_WHITE, outline=_OUTLINE)
    d.polygon(_pts([(50, 20), (17, 6), (14, 27)], u), fill=pal["accent"])
    d.polygon(_pts([(50, 20), (83, 6), (86, 27)], u), fill=pal["accent"])


def _draw_reimu_front(d: ImageDraw.ImageDraw, u: float, pal) -> None:
    d.ellipse(_box(50, 21, 6, 5.5, u), fill=pal["accent"], outline=_OUTLINE)
    # Hair tubes (sidelocks) with red ribbons.
    for cx in (9.5, 90.5):
        d.rounded_rectangle(_box(cx, 72, 4.5, 16, u), radius=3 * u, fill=(250, 236, 200, 255), outline=_OUTLINE)
        d.rectangle(_box(cx, 64, 4.6, 1.8, u), fill=pal["accent"])
        d.rectangle(_box(cx, 80, 4.6, 1.8, u), fill=pal["accent"])


def _draw_marisa_back(d: ImageDraw.ImageDraw, u: float, pal) -> None:
    d.rounded_rectangle(_box(12, 70, 5, 18, u), radius=4 * u, fill=pal["hair"], outline=_OUTLINE)  # braid
    d.polygon(_pts([(8, 86), (16, 86), (12, 92)], u), fill=_WHITE, outline=_OUTLINE)


def _draw_marisa_front(d: ImageDraw.ImageDraw, u: float, pal) -> None:
    # Witch hat: wide brim, tilted cone, white band and bow.
    d.polygon(_pts([(30, 26), (72, 24), (66, 0), (58, 2), (38, 10)], u), fill=pal["accent"], outline=_OUTLINE)
    d.ellipse(_box(50, 29, 49, 10, u), fill=pal["accent"], outline=_OUTLINE)
    d.polygon(_pts([(31, 25), (71, 23), (70, 18), (33, 20)], u), fill=_WHITE)
    d.polygon(_pts([(56, 21), (66, 14), (68, 25)], u), fill=_WHITE, outline=_OUTLINE)
    d.polygon(_pts([(56, 21), (46, 14), (46, 26)], u), fill=_WHITE, outline=_OUTLINE)


@functools.lru_cache(maxsize=128)
def draw_character(
    speaker: str, *, size: int, face: str = "normal", mouth_open: bool = False, dim: bool = False
) -> Image.Image:
    """Draw ``speaker`` ('reimu' or 'marisa') as an RGBA image of ``size`` x ``size`` pixels.

    The returned image is shared by the cache: copy it before drawing on it.

    Raises:
        KeyError: unknown speaker.
    """
    pal = _PALETTE[speaker]
    scale = 2
    canvas = Image.new("RGBA", (size * scale, size * scale), (0, 0, 0, 0))
    d = ImageDraw.Draw(canvas)
    u = size * scale / 100.0
    outline = max(1, int(1.5 * u))

    if speaker == "reimu":
        _draw_reimu_back(d, u, pal)
    else:
        _draw_marisa_back(d, u, pal)
    # The bun-shaped head: hair behind, face in front, bangs on top.
    d.ellipse(_box(50, 60, 46, 37, u), fill=pal["hair"], outline=_OUTLINE, width=outline)
    d.ellipse(_box(50, 66, 40, 30, u), fill=_SKIN)
    d.chord(_box(50, 52, 42, 22, u), 180, 360, fill=pal["hair"])
    for x in (24, 38, 50, 62, 76):
        d.polygon(_pts([(x - 8, 44), (x + 8, 44), (x, 56)], u), fill=pal["hair"])
    d.ellipse(_box(28, 70, 5, 2.6, u), fill=(255, 180, 180, 200))
    d.ellipse(_box(72, 70, 5, 2.6, u), fill=(255, 180, 180, 200))
    _draw_eyes(d, u, face, pal["iris"])
    _draw_mouth(d, u, face, mouth_open)
    if speaker == "reimu":
        _draw_reimu_front(d, u, pal)
    else:
        _draw_marisa_front(d, u, pal)

    image = canvas.resize((size, size), Image.LANCZOS)
    if dim:
        alpha = image.getchannel("A")
        image = ImageEnhance.Brightness(image.convert("RGB")).enhance(0.6).convert("RGBA")
        image.putalpha(alpha)
    return image
