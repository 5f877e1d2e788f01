"""Offline Japanese TTS with Open JTalk (pyopenjtalk-plus), in the yukkuri manner.

Each character has a base voice, higher and faster than Open JTalk's default
(the ゆっくり feel); ``voice_settings`` scale the speed and shift the pitch on
top of it::

    霊夢: speed 1.20 x reimu_speed,  pitch +4 + reimu_pitch half-tones
    魔理沙: speed 1.15 x marisa_speed, pitch +2 + marisa_pitch half-tones

Readings come from a :class:`~yukkuri_nb.pipeline.readings.ReadingDictionary`
compiled into an Open JTalk user dictionary (text substitution if that fails),
and a line's own ``reading`` overrides everything.

pyopenjtalk prints a warning about ONNX Runtime on import; it is imported
lazily, with that output captured, by :func:`load_pyopenjtalk`.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np

from .audio import to_int16, trim_silence
from .errors import PipelineEnvironmentError, PipelineInputError
from .models import SpeakerId, VoiceSettings
from .readings import ReadingDictionary

__all__ = ["OpenJTalkSynthesizer", "BASE_VOICES", "load_pyopenjtalk"]

BASE_VOICES: dict[str, tuple[float, float]] = {
    # speaker: (speed, half-tones)
    "reimu": (1.20, 4.0),
    "marisa": (1.15, 2.0),
}

_import_lock = threading.Lock()
# Open JTalk's synthesis engine is a process-wide object: one line at a time.
_synth_lock = threading.Lock()
_module: ModuleType | None = None
_KANA = re.compile(r"[ァ-ヺー]")


def load_pyopenjtalk() -> ModuleType:
    """Import pyopenjtalk once, keeping its import-time warning off the console.

    Raises:
        PipelineEnvironmentError: pyopenjtalk-plus is not installed.
    """
    global _module
    with _import_lock:
        if _module is None:
            sink = io.StringIO()
            try:
                with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    import pyopenjtalk  # noqa: PLC0415 - deliberately lazy
            except ImportError as exc:
                raise PipelineEnvironmentError(
                    f"the offline TTS engine cannot be imported ({exc})",
                    field="tts",
                    fix="install it with `pip install pyopenjtalk-plus` (or `pip install -e .`)",
                ) from exc
            # pyopenjtalk-plus calls a deprecated sudachipy API on first use: not the user's concern.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pyopenjtalk(\..*)?$")
            _module = pyopenjtalk
        return _module


class OpenJTalkSynthesizer:
    """Open JTalk voices for 霊夢 and 魔理沙 (implements ``SpeechSynthesizer``).

    Args:
        readings: the reading dictionary (default: the built-in one).
        cache_dir: where the compiled user dictionary is cached.
        base_voices: override :data:`BASE_VOICES`.
        trim: cut the engine's leading / trailing silence from each line.
    """

    name = "openjtalk"

    def __init__(
        self,
        readings: ReadingDictionary | None = None,
        *,
        cache_dir: str | Path | None = None,
        base_voices: dict[str, tuple[float, float]] | None = None,
        trim: bool = True,
    ):
        self.readings = readings or ReadingDictionary()
        self.cache_dir = cache_dir
        self.base_voices = dict(base_voices or BASE_VOICES)
        self.trim = trim
        self._jtalk_by_digest: dict[str, object | None] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        # Picklable for executors that run steps in other processes (Dask
        # workers): the lock and the Open JTalk instances (C objects) are
        # per process and rebuilt there on first use.
        state = self.__dict__.copy()
        del state["_lock"], state["_jtalk_by_digest"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._jtalk_by_digest = {}
        self._lock = threading.Lock()

    def voice_params(self, speaker: SpeakerId, voice: VoiceSettings) -> tuple[float, float]:
        """The ``(speed, half_tone)`` actually passed to Open JTalk for ``speaker``."""
        base_speed, base_tone = self.base_voices[speaker]
        if speaker == "reimu":
            return base_speed * voice.reimu_speed, base_tone + voice.reimu_pitch
        return base_speed * voice.marisa_speed, base_tone + voice.marisa_pitch

    def _frontend(self, readings: ReadingDictionary):
        """Return (jtalk instance or None, whether substitution is needed)."""
        with self._lock:
            if readings.digest not in self._jtalk_by_digest:
                jtalk = None
                dic = readings.compile(self.cache_dir)
                if dic is not None:
                    module = load_pyopenjtalk()
                    try:
                        jtalk = module.OpenJTalk(dn_mecab=module.OPEN_JTALK_DICT_DIR, userdic=str(dic).encode())
                    except Exception:  # a broken cached file: fall back to substitution
                        jtalk = None
                self._jtalk_by_digest[readings.digest] = jtalk
            jtalk = self._jtalk_by_digest[readings.digest]
        return jtalk, jtalk is None

    def pronunciation(self, text: str, readings: ReadingDictionary | None = None) -> str:
        """How ``text`` will be read, in katakana (handy to check the dictionary)."""
        module = load_pyopenjtalk()
        dictionary = readings or self.readings
        jtalk, substitute = self._frontend(dictionary)
        spoken = dictionary.substitute(text) if substitute else text
        with _synth_lock:
            return str(module.g2p(spoken, kana=True, jtalk=jtalk))

    def synthesize(
        self,
        text: str,
        *,
        speaker: SpeakerId,
        voice: VoiceSettings | None = None,
        reading: str | None = None,
        readings: ReadingDictionary | None = None,
    ) -> tuple[np.ndarray, int]:
        """Speak ``text`` (or ``reading``) as ``speaker``; return mono int16 samples and the rate.

        Args:
            readings: a per-run dictionary (default: the synthesizer's own).

        Raises:
            PipelineInputError: nothing in the line can be pronounced.
            PipelineEnvironmentError: the engine failed.
        """
        voice = voice or VoiceSettings()
        if speaker not in self.base_voices:
            raise PipelineInputError(
                f"unknown speaker {speaker!r}", field="speaker", fix=f"use one of {sorted(self.base_voices)}"
            )
        module = load_pyopenjtalk()
        dictionary = readings or self.readings
        jtalk, substitute = self._frontend(dictionary)
        spoken = (reading or text).strip()
        if substitute and not reading:
            spoken = dictionary.substitute(spoken)
        speed, half_tone = self.voice_params(speaker, voice)
        field = "reading" if reading else "text"
        with _synth_lock:
            try:
                features = module.run_frontend(spoken, jtalk=jtalk)
            except Exception as exc:
                raise PipelineEnvironmentError(
                    f"Open JTalk could not analyse {spoken!r}: {exc}", field=field, fix="simplify the text"
                ) from exc
            # Lines with nothing pronounceable make the engine print C warnings and
            # return no samples: refuse them before synthesis.
            if not any(_KANA.search(str(f.get("pron", ""))) for f in features):
                raise PipelineInputError(
                    f"nothing in {spoken!r} can be pronounced",
                    field=field,
                    fix="write the line in Japanese or give it a kana 'reading'",
                )
            try:
                samples, rate = module.tts(spoken, speed=speed, half_tone=half_tone, jtalk=jtalk)
            except Exception as exc:
                raise PipelineEnvironmentError(
                    f"Open JTalk failed on {spoken!r}: {exc}", field=field, fix="simplify the text or give a 'reading'"
                ) from exc
        audio = to_int16(samples)
        if self.trim:
            audio = trim_silence(audio, int(rate))
        if audio.size == 0 or not np.any(audio):
            raise PipelineInputError(
                f"Open JTalk produced silence for {spoken!r}",
                field=field,
                fix="write the line in Japanese or give it a kana 'reading'",
            )
        return audio, int(rate)
