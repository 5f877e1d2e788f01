"""The Japanese font the diagrams and charts use, and how to find out it is missing.

Graphviz and matplotlib both name fonts by family.  The default family is
``Noto Sans CJK JP`` (Debian's ``fonts-noto-cjk``); ``$YUKKURI_CJK_FONT``
overrides it.  Without a font that has kanji, labels render as empty boxes
("tofu"): :func:`matplotlib_families` then warns once with the install hint.
"""

from __future__ import annotations

import functools
import os
import warnings

__all__ = ["CJK_FONT", "cjk_font_family", "matplotlib_families", "CJKFontWarning"]

CJK_FONT = "Noto Sans CJK JP"
# Families that carry Japanese glyphs, tried in order after the configured one.
_CANDIDATES = (
    "Noto Sans CJK JP",
    "Noto Sans JP",
    "IPAexGothic",
    "IPAGothic",
    "TakaoGothic",
    "Hiragino Sans",
    "Yu Gothic",
    "Meiryo",
)
INSTALL_HINT = "install a Japanese font: `apt-get install fonts-noto-cjk` (Debian/Ubuntu)"


class CJKFontWarning(UserWarning):
    """No font with Japanese glyphs was found; Japanese labels will not render."""


def cjk_font_family() -> str:
    """The font family name used for Japanese text (``$YUKKURI_CJK_FONT`` or Noto Sans CJK JP)."""
    return os.environ.get("YUKKURI_CJK_FONT") or CJK_FONT


@functools.lru_cache(maxsize=4)
def _matplotlib_families(preferred: str) -> tuple[str, ...]:
    from matplotlib import font_manager

    found = []
    for family in (preferred, *_CANDIDATES):
        if family in found:
            continue
        try:
            font_manager.findfont(family, fallback_to_default=False)
        except ValueError:
            continue
        found.append(family)
    if not found:
        warnings.warn(
            f"no font with Japanese glyphs found for matplotlib (looked for {preferred!r}); "
            f"Japanese labels will show as boxes; {INSTALL_HINT}",
            CJKFontWarning,
            stacklevel=3,
        )
    # DejaVu Sans last: matplotlib falls back glyph by glyph along the list,
    # so Latin text and symbols missing from the CJK font still render.
    return (*found[:1], "DejaVu Sans")


def matplotlib_families() -> list[str]:
    """``font.family`` for matplotlib: an installed CJK family, then DejaVu Sans (warns once if none)."""
    return list(_matplotlib_families(cjk_font_family()))
