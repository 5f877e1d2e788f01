"""Reading dictionary for TTS: how names and words are pronounced (博麗 -> ハクレイ).

The dictionary is compiled into an Open JTalk *user dictionary* (a MeCab
``.dic`` built from naist-jdic style CSV), so the words keep natural accents.
Compilation runs once per distinct dictionary, in a child process (the
compiler prints progress bars from C that must stay off the user's screen), and
the result is cached by content hash.  If it cannot be built, the synthesizer
falls back to :meth:`ReadingDictionary.substitute`, which replaces each word
with its kana in the text before synthesis.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import unicodedata
from collections.abc import Mapping
from pathlib import Path

from .errors import PipelineInputError

__all__ = ["ReadingDictionary", "DEFAULT_READINGS", "to_katakana", "default_cache_dir"]

DEFAULT_READINGS: dict[str, str] = {
    "博麗": "ハクレイ",
    "霊夢": "レイム",
    "霧雨": "キリサメ",
    "魔理沙": "マリサ",
    "幻想郷": "ゲンソウキョウ",
    "Python": "パイソン",
    "async": "アシンク",
    "await": "アウェイト",
    "asyncio": "アシンクアイオー",
    "Git": "ギット",
    "GitHub": "ギットハブ",
    "JSON": "ジェイソン",
}

_SMALL_KANA = set("ャュョァィゥェォヮ")
_CONTEXT_ID = 1348  # naist-jdic: 名詞,固有名詞,一般


def to_katakana(text: str) -> str:
    """Hiragana -> katakana (other characters unchanged)."""
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in text)


def _is_kana(text: str) -> bool:
    return bool(text) and all(("ァ" <= c <= "ヺ") or c in "ーヴ" for c in text)


def _full_width(text: str) -> str:
    # Open JTalk normalises input to full width before MeCab sees it, so the
    # dictionary's surfaces must be full width too.
    return "".join(
        "\u3000" if c == " " else chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text
    )


def _mora_count(kana: str) -> int:
    return max(1, sum(1 for c in kana if c not in _SMALL_KANA))


def default_cache_dir() -> Path:
    """Where compiled dictionaries are cached: ``$XDG_CACHE_HOME/yukkuri_nb`` (or ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "yukkuri_nb"


_COMPILE = """
import contextlib, io, sys
with contextlib.redirect_stdout(io.StringIO()):
    import pyopenjtalk
pyopenjtalk.mecab_dict_index(sys.argv[1], sys.argv[2])
"""


class ReadingDictionary:
    """Word -> kana readings used by the offline TTS.

    Args:
        entries: ``{surface: reading}``; readings in katakana or hiragana.
        include_defaults: start from :data:`DEFAULT_READINGS` (names of the
            characters, common technical words).

    Raises:
        PipelineInputError: a surface is empty or a reading is not kana.
    """

    _compile_lock = threading.Lock()

    def __init__(self, entries: Mapping[str, str] | None = None, *, include_defaults: bool = True):
        merged: dict[str, str] = dict(DEFAULT_READINGS) if include_defaults else {}
        for surface, reading in (entries or {}).items():
            if not isinstance(surface, str) or not surface.strip():
                raise PipelineInputError(
                    f"dictionary word {surface!r} is empty",
                    field="reading_dictionary",
                    fix="use non-empty words as keys",
                )
            kana = to_katakana(str(reading).strip())
            if not _is_kana(kana):
                raise PipelineInputError(
                    f"reading {reading!r} of {surface!r} is not kana",
                    field=f"reading_dictionary[{surface!r}]",
                    fix="write the reading in katakana or hiragana, e.g. 'ハクレイ'",
                )
            merged[surface.strip()] = kana
        self.entries: dict[str, str] = merged

    def extended(self, entries: Mapping[str, str] | None) -> "ReadingDictionary":
        """A new dictionary with ``entries`` added (overriding existing words)."""
        if not entries:
            return self
        result = ReadingDictionary(include_defaults=False)
        result.entries = dict(self.entries)
        result.entries.update(ReadingDictionary(entries, include_defaults=False).entries)
        return result

    @property
    def digest(self) -> str:
        """Content hash: equal dictionaries share one compiled file."""
        payload = json.dumps(sorted(self.entries.items()), ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(payload).hexdigest()[:16]

    def substitute(self, text: str) -> str:
        """Replace every dictionary word in ``text`` with its reading (longest words first)."""
        result = unicodedata.normalize("NFKC", text)
        for surface in sorted(self.entries, key=len, reverse=True):
            result = result.replace(unicodedata.normalize("NFKC", surface), self.entries[surface])
        return result

    def csv_rows(self) -> list[str]:
        """The dictionary as naist-jdic CSV rows (input of the MeCab dictionary compiler)."""
        rows = []
        for surface, reading in sorted(self.entries.items()):
            wide = _full_width(unicodedata.normalize("NFKC", surface))
            rows.append(
                f"{wide},{_CONTEXT_ID},{_CONTEXT_ID},100,名詞,固有名詞,一般,*,*,*,"
                f"{wide},{reading},{reading},0/{_mora_count(reading)},*"
            )
        return rows

    def compile(self, cache_dir: str | Path | None = None) -> Path | None:
        """Build (or reuse) the Open JTalk user dictionary; ``None`` if it cannot be built.

        Thread-safe; the build happens in a child process so its console
        output never reaches the user.
        """
        if not self.entries:
            return None
        directory = Path(cache_dir) if cache_dir else default_cache_dir()
        target = directory / f"userdic-{self.digest}.dic"
        with self._compile_lock:
            if target.exists():
                return target
            try:
                directory.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=directory) as tmp:
                    csv_path = Path(tmp) / "userdic.csv"
                    csv_path.write_text("\n".join(self.csv_rows()) + "\n", encoding="utf-8")
                    out = Path(tmp) / "userdic.dic"
                    done = subprocess.run(
                        [sys.executable, "-c", _COMPILE, str(csv_path), str(out)],
                        capture_output=True,
                        timeout=120,
                    )
                    if done.returncode != 0 or not out.exists():
                        return None
                    os.replace(out, target)
            except (OSError, subprocess.SubprocessError):
                return None
            return target
