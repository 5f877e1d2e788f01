import re

import pytest

from yukkuri_nb.pipeline.errors import PipelineInputError
from yukkuri_nb.pipeline.models import Theme, ThemePoint
from yukkuri_nb.pipeline.themes import ThemeBank

PREFS = {"preferred_genres": ["プログラミング"], "target_audience": "初心者", "content_style": "分かりやすい"}


def test_builtin_bank_has_at_least_twenty_tagged_japanese_themes():
    bank = ThemeBank.builtin()
    assert len(bank.themes) >= 20
    for theme in bank.themes:
        assert theme.genres and theme.audiences and theme.styles
        assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", theme.title), theme.title
        assert theme.points and all(p.lines for p in theme.points)
    assert {"プログラミング", "AI", "歴史", "宇宙"} <= set(bank.genres)


def test_selection_is_deterministic_under_a_seed_and_respects_the_genre():
    bank = ThemeBank.builtin()
    first = bank.select(PREFS, seed=7)
    again = bank.select(PREFS, seed=7)
    assert first.theme.id == again.theme.id
    assert first.candidates == again.candidates
    assert "プログラミング" in first.theme.genres
    # every candidate shares a genre; the best one comes first
    for theme_id, _ in first.candidates:
        assert "プログラミング" in bank.get(theme_id).genres
    assert first.candidates[0][0] == first.theme.id


def test_seeds_vary_the_choice_among_equally_good_themes():
    bank = ThemeBank.builtin()
    chosen = {bank.select(PREFS, seed=s).theme.id for s in range(30)}
    assert len(chosen) > 1
    best = max(bank.score(bank.get(t), PREFS) for t in chosen)
    assert all(bank.score(bank.get(t), PREFS) == best for t in chosen)


def test_audience_and_style_change_the_score():
    bank = ThemeBank.builtin()
    theme = bank.get("python-async")  # tagged 初心者/エンジニア and 分かりやすい/実践的
    genre_only = bank.score(theme, {"preferred_genres": ["プログラミング"]})
    assert bank.score(theme, {**PREFS}) == genre_only + 3
    assert bank.score(theme, {"preferred_genres": ["歴史"]}) == 0
    child = bank.select({"preferred_genres": ["雑学"], "target_audience": "子ども"}, seed=0).theme
    assert "子ども" in child.audiences


def test_unknown_genre_names_the_field_and_lists_known_genres():
    bank = ThemeBank.builtin()
    with pytest.raises(PipelineInputError, match=r"^unknown genre '魔法' \(field 'user_preferences\.preferred_genres'\); "
                       r"fix: use one or more of the known genres: .*プログラミング.*$") as info:
        bank.select({"preferred_genres": ["プログラミング", "魔法"]})
    assert isinstance(info.value, ValueError)


def test_full_width_genre_and_single_string_are_accepted():
    bank = ThemeBank.builtin()
    assert "AI" in bank.select({"preferred_genres": "ＡＩ"}).theme.genres


def test_avoided_themes_are_chosen_only_when_nothing_else_fits():
    bank = ThemeBank.builtin()
    first = bank.select(PREFS, seed=1).theme.id
    second = bank.select({**PREFS, "avoid_themes": [first]}, seed=1).theme.id
    assert second != first
    tiny = ThemeBank([Theme(id="only", title="唯一", summary="s", genres=["g"], points=[ThemePoint(heading="h", lines=["l"])])])
    assert tiny.select({"avoid_themes": ["only"]}).theme.id == "only"


def test_unknown_theme_id_lists_the_ids():
    with pytest.raises(PipelineInputError, match=r"unknown theme id 'nope' \(field 'theme_id'\); fix: use one of: .*python-async"):
        ThemeBank.builtin().get("nope")


def test_bad_preference_types_are_input_errors():
    bank = ThemeBank.builtin()
    with pytest.raises(PipelineInputError, match=r"field 'user_preferences'\)"):
        bank.select(["プログラミング"])
    with pytest.raises(PipelineInputError, match=r"field 'user_preferences\.preferred_genres'"):
        bank.select({"preferred_genres": [1, 2]})
