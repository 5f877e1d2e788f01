"""Finding and loading a Japanese font (Noto Sans CJK from Debian's ``fonts-noto-cjk``).

Search order: an explicit path, ``$YUKKURI_FONT``, ``fc-match`` (fontconfig),
then well-known install paths.  A candidate is accepted only if it really has
kanji glyphs (fontconfig happily answers with a Latin-only fallback).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
from pathlib import Path

from PIL import ImageFont

from .errors import PipelineEnvironmentError

__all__ = ["find_japanese_font", "load_font", "KNOWN_FONT_PATHS"]

KNOWN_FONT_PATHS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Black.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Bold.ttc",
    "/usr/local/share/fonts/NotoSansCJK-Bold.ttc",
    "/System/Library/Fonts/ヒラギノ角ゴシック W6.ttc",
    "/Library/Fonts/Arial Unicode.ttf",
)


def _has_kanji(path: str) -> bool:
    try:
        font = ImageFont.truetype(path, 24, index=0)
    except OSError:
        return False
    # A font without the glyph draws its .notdef box for both characters.
    kanji = font.getmask("霊").getbbox()
    missing = font.getmask("\U0010fffd").getbbox()
    return kanji is not None and kanji != missing and bytes(font.getmask("霊")) != bytes(font.getmask("\U0010fffd"))


def _fc_match() -> list[str]:
    exe = shutil.which("fc-match")
    if not exe:
        return []
    found = []
    for pattern in ("Noto Sans CJK JP:style=Bold", "Noto Sans CJK JP", ":lang=ja"):
        try:
            done = subprocess.run([exe, "-f", "%{file}", pattern], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0 and done.stdout.strip():
            found.append(done.stdout.strip())
    return found


@functools.lru_cache(maxsize=8)
def find_japanese_font(explicit: str | None = None) -> Path:
    """Return the path of a usable Japanese font.

    Args:
        explicit: a font file to use (checked, not searched).

    Raises:
        PipelineEnvironmentError: no font with kanji glyphs was found; the
            message names the apt package to install.
    """
    if explicit:
        if os.path.exists(explicit) and _has_kanji(explicit):
            return Path(explicit)
        raise PipelineEnvironmentError(
            f"font {explicit!r} does not exist or has no Japanese glyphs",
            field="font",
            fix="give a .ttf/.otf/.ttc file with Japanese glyphs, e.g. "
            "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc from `apt-get install fonts-noto-cjk`",
        )
    candidates = []
    if os.environ.get("YUKKURI_FONT"):
        candidates.append(os.environ["YUKKURI_FONT"])
    candidates += _fc_match()
    candidates += list(KNOWN_FONT_PATHS)
    seen = set()
    for candidate in candidates:
        if candidate in seen:
            continue
        seen.add(candidate)
        if os.path.exists(candidate) and _has_kanji(candidate):
            return Path(candidate)
    raise PipelineEnvironmentError(
        "no Japanese font found (looked for Noto Sans CJK via fc-match and in /usr/share/fonts)",
        field="font",
        fix="install it with `sudo apt-get install fonts-noto-cjk`, or set YUKKURI_FONT to a Japanese font file",
    )


_fonts = threading.local()


def load_font(path: str | Path, size: int) -> ImageFont.FreeTypeFont:
    """Load ``path`` at ``size`` pixels (face 0 of a collection: the JP face of Noto CJK).

    Fonts are cached per thread: a FreeType face must not be used by two
    threads at once (two projects may draw frames concurrently).
    """
    cache = getattr(_fonts, "cache", None)
    if cache is None:
        cache = _fonts.cache = {}
    key = (str(path), max(4, int(size)))
    font = cache.get(key)
    if font is None:
        if len(cache) > 64:
            cache.clear()
        font = cache[key] = ImageFont.truetype(key[0], key[1], index=0)
    return font
