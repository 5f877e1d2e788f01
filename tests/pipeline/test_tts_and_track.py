"""Open JTalk synthesis, the reading dictionary, and the combined voice track with its timings."""

import subprocess
import sys

import numpy as np
import pytest

from yukkuri_nb.pipeline.audio import read_wav
from yukkuri_nb.pipeline.errors import PipelineCancelled, PipelineError, PipelineInputError
from yukkuri_nb.pipeline.models import Script, ScriptLine, VoiceSettings
from yukkuri_nb.pipeline.readings import ReadingDictionary
from yukkuri_nb.pipeline.track import build_voice_track
from yukkuri_nb.pipeline.tts import OpenJTalkSynthesizer

from .helpers import ToneSynth, rms


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return OpenJTalkSynthesizer(cache_dir=tmp_path_factory.mktemp("dic"))


def _pitch(samples: np.ndarray, rate: int) -> float:
    """Median autocorrelation F0 of the voiced 40 ms windows, in Hz."""
    data = samples.astype(np.float64)
    window = int(0.04 * rate)
    lo, hi = int(rate / 800), int(rate / 70)
    pitches = []
    for start in range(0, data.size - window, window // 2):
        chunk = data[start:start + window]
        if rms(chunk) < 0.3 * rms(data):
            continue
        chunk = chunk - chunk.mean()
        corr = np.correlate(chunk, chunk, mode="full")[window - 1:]
        corr = corr[lo:hi] / corr[0]
        best = corr.max()
        if best < 0.5:
            continue
        # the first peak near the best one, so a sub-harmonic is never taken for the pitch
        for k in range(1, corr.size - 1):
            if corr[k] >= 0.9 * best and corr[k] >= corr[k - 1] and corr[k] >= corr[k + 1]:
                pitches.append(rate / (lo + k))
                break
    return float(np.median(pitches))


def test_speech_is_real_and_not_silent(synth):
    samples, rate = synth.synthesize("ゆっくりしていってね。", speaker="reimu")
    assert samples.dtype == np.int16 and rate == 48000
    assert 0.5 < samples.size / rate < 4.0
    assert rms(samples) > 1000  # int16 scale; silence is ~0
    assert np.abs(samples).max() > 8000


def test_length_scales_with_the_speed_setting(synth):
    text = "今日のテーマは、ブラックホールの正体だぜ。"
    normal, rate = synth.synthesize(text, speaker="marisa", voice=VoiceSettings(marisa_speed=1.0))
    fast, _ = synth.synthesize(text, speaker="marisa", voice=VoiceSettings(marisa_speed=2.0))
    ratio = fast.size / normal.size
    assert 0.4 < ratio < 0.65, ratio
    # reimu_speed does not touch 魔理沙
    other, _ = synth.synthesize(text, speaker="marisa", voice=VoiceSettings(reimu_speed=2.0))
    assert other.size == normal.size


def test_pitch_is_in_half_tones(synth):
    text = "ゆっくり霊夢よ。よろしくね。"
    low, rate = synth.synthesize(text, speaker="reimu", voice=VoiceSettings(reimu_pitch=-6))
    high, _ = synth.synthesize(text, speaker="reimu", voice=VoiceSettings(reimu_pitch=6))
    # twelve half-tones apart: one octave, twice the frequency
    assert 1.8 < _pitch(high, rate) / _pitch(low, rate) < 2.2


def test_characters_have_yukkuri_voices_higher_and_faster_than_default(synth):
    for speaker in ("reimu", "marisa"):
        speed, tone = synth.voice_params(speaker, VoiceSettings())
        assert speed > 1.0 and tone > 0
    assert synth.voice_params("reimu", VoiceSettings(reimu_speed=2, reimu_pitch=-1)) == (2 * 1.2, 3.0)


def test_user_dictionary_fixes_readings(synth):
    assert synth.pronunciation("博麗霊夢") == "ハクレイレイム"
    assert synth.pronunciation("Pythonの話") == "パイソンノハナシ"
    extra = ReadingDictionary({"弾幕": "だんまくっ"})
    assert synth.pronunciation("弾幕", readings=extra) == "ダンマクッ"


def test_reading_override_and_unpronounceable_lines(synth):
    with pytest.raises(PipelineInputError, match=r"^nothing in '!!' can be pronounced \(field 'text'\); fix: "):
        synth.synthesize("!!", speaker="reimu")
    samples, _ = synth.synthesize("!!", speaker="reimu", reading="ハクレイ")
    assert rms(samples) > 1000


def test_a_line_reading_replaces_the_text_as_spoken(synth):
    # Open JTalk is deterministic: a line whose reading is given sounds exactly
    # like that reading spoken on its own, and not like its written text.
    said, _ = synth.synthesize("東方", speaker="marisa", reading="ヒガシカタ")
    reading, _ = synth.synthesize("ヒガシカタ", speaker="marisa")
    written, _ = synth.synthesize("東方", speaker="marisa")
    assert np.array_equal(said, reading)
    assert not np.array_equal(said, written)


def test_the_track_speaks_each_line_reading(tmp_path):
    script = Script(lines=[ScriptLine(speaker="reimu", text="ZUN", reading="ズン"),
                           ScriptLine(speaker="marisa", text="魔理沙だぜ。")])
    synth = ToneSynth(rate=16000)
    track = build_voice_track(script, synth, tmp_path)
    # ToneSynth's length follows what it is asked to say: 0.05 s per character of the reading
    assert track.lines[0].end - track.lines[0].start == pytest.approx(0.05 * len("ズン"))
    edited = Script(lines=[script.lines[0].model_copy(update={"reading": "ズンさん"}), script.lines[1]])
    again = ToneSynth(rate=16000)
    build_voice_track(edited, again, tmp_path)
    assert again.calls == ["ZUN"]  # a changed reading re-synthesises that line only


QUIET_SYNTHESIS = """
import threading
from yukkuri_nb.pipeline.tts import OpenJTalkSynthesizer
synth = OpenJTalkSynthesizer(cache_dir={cache!r})
done = []
worker = threading.Thread(target=lambda: done.append(synth.synthesize("博麗霊夢よ。", speaker="reimu")[0].size))
worker.start(); worker.join()  # the pipeline synthesises in worker threads
assert done and done[0] > 0
"""


def test_pyopenjtalk_import_and_first_synthesis_print_nothing(tmp_path):
    def run(code: str) -> str:
        done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    # the bare import prints a warning about ONNX Runtime (so the check below can fail) ...
    assert "ONNX Runtime" in run("import pyopenjtalk")
    # ... which, like sudachipy's DeprecationWarning on first use, never reaches the user's screen
    assert run(QUIET_SYNTHESIS.format(cache=str(tmp_path / "dic"))) == ""


def test_reading_dictionary_validates_and_substitutes():
    with pytest.raises(PipelineInputError, match=r"reading 'hakurei' of '博麗' is not kana \(field \"reading_dictionary\['博麗'\]\"\)"):
        ReadingDictionary({"博麗": "hakurei"})
    d = ReadingDictionary({"弾幕": "だんまく"}, include_defaults=False)
    assert d.entries == {"弾幕": "ダンマク"}
    assert ReadingDictionary().substitute("博麗霊夢とPython") == "ハクレイレイムとパイソン"
    row = ReadingDictionary({"Ａpi": "エーピーアイ"}, include_defaults=False).csv_rows()[0]
    assert row.startswith("Ａｐｉ,1348,1348,") and ",エーピーアイ,エーピーアイ,0/6," in row


def test_track_timings_are_exact_and_wavs_are_written(tmp_path, script):
    synth = ToneSynth(rate=16000)
    progress = []
    track = build_voice_track(script, synth, tmp_path, lead_in=1.0, tail=0.5, progress=lambda f, m: progress.append(f))
    rate = 16000
    expected_start = 1.0
    for line, timing, source in zip(script.lines, track.lines, script.lines):
        samples, r = read_wav(timing.wav)
        assert r == rate and samples.size == int(0.05 * len(source.text) * rate)
        assert timing.start == pytest.approx(expected_start, abs=1e-9)
        assert timing.end == pytest.approx(expected_start + samples.size / rate, abs=1e-9)
        assert timing.next_start == pytest.approx(timing.end + line.pause_after, abs=1e-9)
        expected_start = timing.next_start
    combined, r = read_wav(track.path)
    assert combined.size / r == pytest.approx(track.duration) == pytest.approx(expected_start + 0.5)
    # the combined track really has the speech where the timings say, and silence between
    for timing in track.lines:
        inside = combined[int(timing.start * r) + 10:int(timing.end * r) - 10]
        gap = combined[int(timing.end * r) + 10:int(timing.next_start * r) - 10]
        assert rms(inside) > 5000 and rms(gap) == 0
    assert rms(combined[: int(r * 0.99)]) == 0  # lead-in
    assert progress == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_failure_on_one_line_keeps_finished_lines_and_resumes(tmp_path, script):
    broken = ToneSynth(fail_on="魔理沙")
    with pytest.raises(PipelineError, match=r"^line 2 of 3 \(魔理沙: 'ゆっくり魔理沙だぜ。'\) could not be synthesised: "
                       r"RuntimeError: engine exploded; lines 1-1 are kept in .* \(field 'script\.lines\[1\]\.text'\); "
                       r"fix: edit the line's text or give it a kana 'reading'$"):
        build_voice_track(script, broken, tmp_path)
    assert (tmp_path / "line_000.wav").exists() and not (tmp_path / "line_001.wav").exists()
    fixed = ToneSynth()
    build_voice_track(script, fixed, tmp_path)
    assert fixed.calls == ["ゆっくり魔理沙だぜ。", "またね。"]  # line 1 was reused from disk
    changed = Script(lines=[script.lines[0].model_copy(update={"text": "ゆっくり霊夢だよ。"}), *script.lines[1:]])
    again = ToneSynth()
    build_voice_track(changed, again, tmp_path)
    assert again.calls == ["ゆっくり霊夢だよ。"]  # only the edited line is synthesised again


def test_cancel_check_stops_between_lines(tmp_path, script):
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 2:
            raise PipelineCancelled()

    synth = ToneSynth()
    with pytest.raises(PipelineCancelled):
        build_voice_track(script, synth, tmp_path, check=check)
    assert synth.calls == ["ゆっくり霊夢よ。"]


def test_empty_script_is_refused(tmp_path):
    with pytest.raises(PipelineInputError, match=r"^the script has no lines \(field 'script\.lines'\)"):
        build_voice_track(Script(lines=[]), ToneSynth(), tmp_path)


def test_real_voice_track_lines_are_speech(tmp_path, synth):
    script = Script(lines=[ScriptLine(speaker="reimu", text="ゆっくり霊夢よ。"), ScriptLine(speaker="marisa", text="魔理沙だぜ。")])
    track = build_voice_track(script, synth, tmp_path, lead_in=0.5)
    combined, rate = read_wav(track.path)
    for timing in track.lines:
        assert rms(combined[int(timing.start * rate):int(timing.end * rate)]) > 1000
    assert track.duration == pytest.approx(combined.size / rate)
