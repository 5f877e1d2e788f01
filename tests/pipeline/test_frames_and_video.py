"""Timeline, frame drawing, fonts, yuv conversion, ffmpeg encoding, thumbnail."""

import math

import numpy as np
import pytest
from PIL import Image

from yukkuri_nb.pipeline import fonts
from yukkuri_nb.pipeline.audio import write_wav
from yukkuri_nb.pipeline.encoder import FfmpegEncoder, rgb_to_yuv420p
from yukkuri_nb.pipeline.errors import PipelineCancelled, PipelineEnvironmentError
from yukkuri_nb.pipeline.frames import FrameRenderer, FrameState, Timeline, wrap_text
from yukkuri_nb.pipeline.models import AudioTrack, LineTiming, TitleInfo, VideoSettings
from yukkuri_nb.pipeline.themes import ThemeBank
from yukkuri_nb.pipeline.thumbnail import MAX_THUMBNAIL_BYTES, ThumbnailPainter
from yukkuri_nb.pipeline.video import FfmpegVideoComposer

from .helpers import decode_frame, ffprobe

RATE = 16000
TITLE = TitleInfo(title="【ゆっくり解説】テストの動画", thumbnail_text="テスト！", subtitle="字幕のテスト")


def _track(tmp_path, *, speech=((1.0, 2.0, 2.5), (2.5, 3.5, 4.0))):
    """A track with tone bursts (speech) at the given (start, end, next_start) times; silent elsewhere."""
    duration = speech[-1][2] + 0.3
    samples = np.zeros(int(duration * RATE), dtype=np.int16)
    lines = []
    for index, (start, end, next_start) in enumerate(speech):
        t = np.arange(int((end - start) * RATE)) / RATE
        # 8 Hz on/off envelope: loud and quiet video frames alternate like syllables
        envelope = (np.sin(2 * np.pi * 4 * t) > 0).astype(float)
        samples[int(start * RATE):int(start * RATE) + t.size] = (np.sin(2 * np.pi * 300 * t) * 10000 * envelope).astype(np.int16)
        lines.append(LineTiming(index=index, speaker="reimu" if index % 2 == 0 else "marisa",
                                text="ゆっくり霊夢よ。" if index % 2 == 0 else "魔理沙だぜ、よろしくな。",
                                start=start, end=end, next_start=next_start))
    path = write_wav(tmp_path / "voice.wav", samples, RATE)
    return AudioTrack(path=str(path), sample_rate=RATE, duration=samples.size / RATE, lead_in=speech[0][0], lines=lines), samples


def test_timeline_states(tmp_path):
    track, samples = _track(tmp_path)
    timeline = Timeline(track, 10, samples)
    assert timeline.n_frames == math.ceil(track.duration * 10)
    states = [timeline.state_at_frame(i) for i in range(timeline.n_frames)]
    assert all(s.is_title for s in states[:10])  # before the first line (1.0 s)
    assert {s.line for s in states[10:25]} == {0} and {s.line for s in states[25:]} == {1}
    # the mouth moves only while speaking, following loudness
    assert not any(s.mouth_open for s in states[20:25])  # 2.0-2.5 s: the pause after line 0
    assert any(s.mouth_open for s in states[10:20]) and not all(s.mouth_open for s in states[10:20])
    runs = timeline.runs()
    assert sum(count for _, count in runs) == timeline.n_frames
    assert all(a[0] != b[0] for a, b in zip(runs, runs[1:]))


def test_the_board_shows_the_lines_topic_or_the_catch_phrase(tmp_path):
    track, _ = _track(tmp_path)
    topical = track.model_copy(update={"lines": [track.lines[0].model_copy(update={"topic": "ブラックホールの正体"}), track.lines[1]]})
    plain = np.asarray(FrameRenderer((640, 360), TITLE, track).render(FrameState(0)), dtype=np.int16)
    renderer = FrameRenderer((640, 360), TITLE, topical)
    on_topic = np.asarray(renderer.render(FrameState(0)), dtype=np.int16)
    no_topic = np.asarray(renderer.render(FrameState(1)), dtype=np.int16)
    changed = np.abs(on_topic - plain).max(axis=-1) > 60
    rows, cols = np.nonzero(changed)
    # only the board's middle changed (below its header band, above the subtitles), and clearly
    assert changed.sum() > 500
    assert rows.min() >= int(360 * 0.16) and rows.max() <= int(360 * 0.62) and cols.min() >= int(640 * 0.12)
    # a line without a topic shows the catch phrase, as before
    board = (slice(int(360 * 0.17), int(360 * 0.6)), slice(int(640 * 0.2), int(640 * 0.8)))
    plain_marisa = np.asarray(FrameRenderer((640, 360), TITLE, track).render(FrameState(1)), dtype=np.int16)
    assert np.array_equal(no_topic[board], plain_marisa[board])


def test_wrap_text_keeps_punctuation_off_line_starts():
    font = fonts.load_font(fonts.find_japanese_font(), 20)
    rows = wrap_text("あいうえおかきくけこ、さしすせそ。たちつてと", font, 200)
    assert len(rows) > 1 and "".join(rows) == "あいうえおかきくけこ、さしすせそ。たちつてと"
    assert not any(row[0] in "、。" for row in rows)
    assert wrap_text("あ" * 100, font, 60, max_lines=2)[-1].endswith("…")


def test_renderer_draws_subtitles_and_highlights_the_speaker(tmp_path):
    track, _ = _track(tmp_path)
    renderer = FrameRenderer((640, 360), TITLE, track)
    title = np.asarray(renderer.render(FrameState(-1)), dtype=np.int16)
    reimu = np.asarray(renderer.render(FrameState(0)), dtype=np.int16)
    marisa = np.asarray(renderer.render(FrameState(1)), dtype=np.int16)
    assert reimu.shape == (360, 640, 3)
    box = (slice(int(360 * 0.75), int(360 * 0.95)), slice(int(640 * 0.25), int(640 * 0.75)))
    assert np.abs(reimu[box] - marisa[box]).mean() > 10  # different subtitle text and colour
    # 霊夢's red subtitle colour appears only when she speaks
    red = np.all(np.abs(reimu[box] - (255, 90, 90)) < 30, axis=-1).sum()
    red_when_marisa = np.all(np.abs(marisa[box] - (255, 90, 90)) < 30, axis=-1).sum()
    assert red > 50 and red_when_marisa == 0
    # the speaker is lit, the other dimmed
    left = (slice(230, 350), slice(10, 120))
    assert reimu[left].mean() > marisa[left].mean() + 15
    assert np.abs(title - reimu).mean() > 20


def test_missing_font_names_the_package(monkeypatch):
    monkeypatch.setattr(fonts, "KNOWN_FONT_PATHS", ())
    monkeypatch.setattr(fonts, "_fc_match", lambda: [])
    monkeypatch.delenv("YUKKURI_FONT", raising=False)
    fonts.find_japanese_font.cache_clear()
    try:
        with pytest.raises(PipelineEnvironmentError, match=r"^no Japanese font found .*\(field 'font'\); "
                           r"fix: install it with `sudo apt-get install fonts-noto-cjk`"):
            fonts.find_japanese_font()
    finally:
        fonts.find_japanese_font.cache_clear()
    with pytest.raises(PipelineEnvironmentError, match=r"font '/nonexistent.ttf' does not exist"):
        fonts.find_japanese_font("/nonexistent.ttf")


def test_yuv_conversion_of_known_colours():
    image = Image.new("RGB", (4, 2), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 2, 2))
    data = rgb_to_yuv420p(image)
    assert len(data) == 4 * 2 * 3 // 2
    y, u, v = data[:8], data[8:10], data[10:12]
    assert list(y) == [16, 16, 235, 235, 16, 16, 235, 235]
    assert list(u) == [128, 128] and list(v) == [128, 128]
    red = rgb_to_yuv420p(Image.new("RGB", (2, 2), (255, 0, 0)))
    assert (red[0], red[4], red[5]) == (81, 90, 240)  # BT.601 limited range


def test_compose_writes_h264_aac_at_the_requested_size_and_fps(tmp_path):
    track, _ = _track(tmp_path)
    settings = VideoSettings(resolution="320x180", fps=30)
    progress = []
    stats = FfmpegVideoComposer().compose(title=TITLE, track=track, settings=settings, out_path=tmp_path / "v.mp4",
                                          progress=lambda f, m: progress.append(f), check=lambda: None)
    info = ffprobe(tmp_path / "v.mp4")
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["codec_name"], video["pix_fmt"], video["width"], video["height"]) == ("h264", "yuv420p", 320, 180)
    assert video["r_frame_rate"] == "30/1" and int(video["nb_frames"]) == stats["frames"]
    assert audio["codec_name"] == "aac"
    assert float(info["format"]["duration"]) == pytest.approx(track.duration, abs=0.2)
    assert stats["distinct_frames_drawn"] < stats["frames"] / 5
    assert progress[-1] == 1.0 and progress == sorted(progress)
    assert not (tmp_path / "v.mp4.part").exists()


def test_video_frame_matches_the_frame_drawn(tmp_path):
    track, _ = _track(tmp_path)
    settings = VideoSettings(resolution="320x180", fps=30)
    composer = FfmpegVideoComposer()
    composer.compose(title=TITLE, track=track, settings=settings, out_path=tmp_path / "v.mp4",
                     progress=lambda f, m: None, check=lambda: None)
    timeline, renderer = composer.plan(title=TITLE, track=track, settings=settings)
    index = int(3.0 * 30)  # inside line 1 (2.5-3.5 s)
    decoded = decode_frame(tmp_path / "v.mp4", index, (320, 180)).astype(np.int16)
    expected = np.asarray(renderer.render(timeline.state_at_frame(index)), dtype=np.int16)
    other = np.asarray(renderer.render(FrameState(0)), dtype=np.int16)
    assert np.abs(decoded - expected).mean() < 4  # codec noise only
    # Where the expected frame and a frame of another line differ (subtitle text,
    # speaker highlight), the video shows the expected one.
    differs = np.abs(expected - other).max(axis=-1) > 60
    assert differs.sum() > 200
    assert np.abs(decoded - expected)[differs].mean() < 0.25 * np.abs(decoded - other)[differs].mean()


def test_ffmpeg_failure_is_reported_and_leaves_no_partial_file(tmp_path):
    with pytest.raises(PipelineEnvironmentError, match=r"^ffmpeg failed while .* \(exit code \d+\): .*\(field 'ffmpeg'\); fix: "):
        with FfmpegEncoder(tmp_path / "x.mp4", (64, 64), 30, preset="no-such-preset") as encoder:
            for _ in range(3):
                encoder.write(bytes(64 * 64 * 3 // 2), 10)
    assert not (tmp_path / "x.mp4").exists() and not (tmp_path / "x.mp4.part").exists()


def test_cancel_during_compose_kills_ffmpeg_and_removes_output(tmp_path):
    track, _ = _track(tmp_path)
    calls = []

    def check():
        calls.append(1)
        if len(calls) > 1:
            raise PipelineCancelled()

    with pytest.raises(PipelineCancelled):
        FfmpegVideoComposer().compose(title=TITLE, track=track, settings=VideoSettings(resolution="320x180"),
                                      out_path=tmp_path / "v.mp4", progress=lambda f, m: None, check=check)
    assert not (tmp_path / "v.mp4").exists() and not (tmp_path / "v.mp4.part").exists()


def test_thumbnail_is_a_small_1280x720_png_with_the_catch_phrase(tmp_path):
    theme = ThemeBank.builtin().get("octopus")
    title = TitleInfo(title="【ゆっくり解説】タコはかしこい", thumbnail_text=theme.thumbnail)
    stats = ThumbnailPainter().render(title=title, theme=theme, out_path=tmp_path / "t.png")
    with Image.open(tmp_path / "t.png") as image:
        assert image.format == "PNG" and image.size == (1280, 720)
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert stats["bytes"] == (tmp_path / "t.png").stat().st_size < MAX_THUMBNAIL_BYTES
    yellow = np.all(np.abs(pixels[:360, :] - (255, 245, 80)) < 20, axis=-1).sum()
    assert yellow > 5000  # the big catch phrase
    # the title is written in the band at the bottom: another title changes that band and nothing above it
    other = TitleInfo(title="【ゆっくり解説】タコの心臓は三つ", thumbnail_text=theme.thumbnail)
    ThumbnailPainter().render(title=other, theme=theme, out_path=tmp_path / "t2.png")
    with Image.open(tmp_path / "t2.png") as image:
        changed = np.abs(np.asarray(image.convert("RGB"), dtype=np.int16) - pixels).max(axis=-1) > 60
    rows = np.nonzero(changed.any(axis=1))[0]
    assert changed.sum() > 2000 and rows.min() >= 560, (changed.sum(), rows.min())
