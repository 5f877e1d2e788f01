import pytest

from yukkuri_nb.pipeline.errors import PipelineInputError
from yukkuri_nb.pipeline.models import Script
from yukkuri_nb.pipeline.script import TemplateScriptGenerator, estimate_script_seconds, validate_script
from yukkuri_nb.pipeline.themes import ThemeBank
from yukkuri_nb.pipeline.titles import TemplateTitleGenerator

PREFS = {"preferred_genres": ["宇宙"], "target_audience": "初心者", "content_style": "分かりやすい"}


@pytest.fixture(scope="module")
def theme():
    return ThemeBank.builtin().get("black-holes")


def test_short_target_gives_a_few_lines_with_greeting_and_closing(theme):
    script = TemplateScriptGenerator().generate(theme, target_minutes=0.2, preferences=PREFS, seed=0)
    assert 3 <= len(script.lines) <= 6
    assert script.lines[0].speaker == "reimu" and "霊夢" in script.lines[0].text
    assert theme.title in script.lines[0].text
    assert any(line.speaker == "marisa" for line in script.lines)
    assert "ありがとう" in script.lines[-1].text
    assert script.theme_id == theme.id and script.generator == "template"


def test_length_follows_the_target(theme):
    gen = TemplateScriptGenerator()
    lengths = [gen.generate(theme, target_minutes=m, preferences=PREFS).estimated_seconds for m in (0.2, 1.0, 3.0)]
    assert lengths[0] < lengths[1] <= lengths[2]
    one_minute = gen.generate(theme, target_minutes=1.0, preferences=PREFS)
    assert 40 <= one_minute.estimated_seconds <= 75
    assert one_minute.estimated_seconds == pytest.approx(estimate_script_seconds(one_minute.lines), abs=0.01)
    # the explanation uses the theme's own content, spoken by 魔理沙
    facts = {line for point in theme.points for line in point.lines}
    assert any(line.text in facts and line.speaker == "marisa" for line in one_minute.lines)


def test_the_board_follows_the_section_being_explained(theme):
    script = TemplateScriptGenerator().generate(theme, target_minutes=3.0, preferences=PREFS, seed=0)
    headings = [p.heading for p in theme.points]
    # the greeting shows the catch phrase; every fact is spoken under its own heading
    assert script.lines[0].topic is None
    for point in theme.points:
        spoken = [line for line in script.lines if line.text in point.lines]
        assert spoken and all(line.topic == point.heading[:40] for line in spoken)
    assert [t for t in dict.fromkeys(line.topic for line in script.lines) if t in headings] == headings
    assert script.lines[-1].topic == "まとめ"


def test_generation_is_seeded(theme):
    gen = TemplateScriptGenerator()
    a = gen.generate(theme, target_minutes=1.5, preferences=PREFS, seed=3)
    b = gen.generate(theme, target_minutes=1.5, preferences=PREFS, seed=3)
    assert a == b
    texts = {tuple(l.text for l in gen.generate(theme, target_minutes=1.5, seed=s).lines) for s in range(8)}
    assert len(texts) > 1


@pytest.mark.parametrize("bad", [0, -1, "2", None])
def test_bad_target_length_names_the_field(theme, bad):
    with pytest.raises(PipelineInputError, match=r"\(field 'target_length_minutes'\); fix: give a number of minutes"):
        TemplateScriptGenerator().generate(theme, target_minutes=bad)


def test_validate_script_rejects_empty_and_malformed_scripts():
    with pytest.raises(PipelineInputError, match=r"^the script has no lines \(field 'script\.lines'\); fix: "):
        validate_script({"lines": []})
    with pytest.raises(PipelineInputError, match=r"\(field 'script\.lines\[1\]\.speaker'\)"):
        validate_script({"lines": [{"speaker": "reimu", "text": "a"}, {"speaker": "sanae", "text": "b"}]})
    with pytest.raises(PipelineInputError, match=r"text is empty.*\(field 'script\.lines\[0\]\.text'\)"):
        validate_script([{"speaker": "marisa", "text": "   "}])
    ok = validate_script([{"speaker": "marisa", "text": " だぜ "}])
    assert isinstance(ok, Script) and ok.lines[0].text == "だぜ"


def test_title_uses_the_theme_and_is_seeded(theme):
    gen = TemplateTitleGenerator()
    info = gen.generate(theme, preferences=PREFS, seed=1, target_minutes=2)
    assert theme.title in info.title and info.title.startswith("【ゆっくり解説】")
    assert info.thumbnail_text == theme.thumbnail
    assert "初心者向け" in info.subtitle
    assert gen.generate(theme, preferences=PREFS, seed=1, target_minutes=2) == info
    short = gen.generate(theme, preferences={}, seed=1, target_minutes=0.3)
    assert "分でわかる" not in short.title
