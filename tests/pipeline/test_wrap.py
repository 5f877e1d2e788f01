"""Subtitle line breaking keeps Latin words whole and brackets with their words."""

from PIL import ImageFont

from yukkuri_nb.pipeline.fonts import find_japanese_font
from yukkuri_nb.pipeline.frames import wrap_text


def font():
    return ImageFont.truetype(str(find_japanese_font()), 40)


def test_latin_words_are_not_split_and_openers_move_down():
    lines = wrap_text("ゆっくり霊夢よ。今日のテーマは「Pythonの非同期処理」よ。", font(), 700)
    assert lines == ["ゆっくり霊夢よ。今日のテーマは", "「Pythonの非同期処理」よ。"]
    assert all(font().getlength(line) <= 700 for line in lines)


def test_a_word_wider_than_the_line_is_still_broken_and_nothing_is_lost():
    text = "A" * 80 + "です。"
    lines = wrap_text(text, font(), 300)
    assert "".join(lines) == text
    assert all(font().getlength(line) <= 300 for line in lines[:-1])


def test_closing_punctuation_never_starts_a_line():
    for width in range(200, 700, 37):
        for line in wrap_text("霊夢「それって、つまりどういうこと？」魔理沙「説明するぜ。」", font(), width)[1:]:
            assert line[0] not in "、。」』）！？"
