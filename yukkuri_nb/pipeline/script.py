"""Offline script generation: a 霊夢 / 魔理沙 dialogue built from a theme with templates.

霊夢 asks and reacts, 魔理沙 explains (the usual ゆっくり解説 roles).  The
length follows ``target_length_minutes``: the generator adds the theme's
sections one by one while that brings its estimate of the spoken length closer
to the target, always keeping at least one section, then a recap if there is
room; short targets (under a minute) get a compact greeting and closing.  The
offline content is finite (a built-in theme fills about 1.5-2 minutes): a
longer target yields a shorter script, and the script's ``estimated_seconds``
says so; plug in a remote script provider for long videos.  Choices among
template variants are seeded.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import Any

from .errors import PipelineInputError
from .models import Face, Script, ScriptLine, SpeakerId, Theme

__all__ = ["TemplateScriptGenerator", "estimate_line_seconds", "estimate_script_seconds", "validate_script"]

# Fitted on 119 template lines spoken by the default Open JTalk yukkuri voices
# (least squares: 0.159 s per spoken character, about -0.09 s per line after trimming).
_SECONDS_PER_CHAR = 0.159
_LINE_OVERHEAD = 0.0
_UNSPOKEN = re.compile(r"[\s、。！？!?「」『』（）()…・ー～〜,.]")


def estimate_line_seconds(text: str, speed: float = 1.0) -> float:
    """Rough spoken length of ``text`` at relative ``speed`` (seconds, pause not included)."""
    spoken = len(_UNSPOKEN.sub("", text))
    return _LINE_OVERHEAD + spoken * _SECONDS_PER_CHAR / max(speed, 0.1)


def estimate_script_seconds(lines: list[ScriptLine]) -> float:
    """Rough spoken length of a whole script including pauses (seconds)."""
    return sum(estimate_line_seconds(line.reading or line.text) + line.pause_after for line in lines)


def validate_script(data: Any, *, field: str = "script") -> Script:
    """Read a script from a dict / :class:`Script` and check it has something to say.

    Raises:
        PipelineInputError: not a valid script, or no lines.
    """
    if isinstance(data, Script):
        script = data
    else:
        if isinstance(data, list):
            data = {"lines": data}
        if not isinstance(data, Mapping):
            raise PipelineInputError(
                f"expected a script object with 'lines', got {type(data).__name__}",
                field=field,
                fix="give {'lines': [{'speaker': 'reimu', 'text': '...'}, ...]}",
            )
        try:
            script = Script.model_validate(dict(data))
        except Exception as exc:  # pydantic.ValidationError: report its first problem
            errors = getattr(exc, "errors", None)
            first = errors()[0] if callable(errors) else {"loc": (), "msg": str(exc)}
            where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in first["loc"]).replace(".[", "[")
            raise PipelineInputError(
                f"invalid script: {first['msg']}",
                field=f"{field}.{where}" if where else field,
                fix="each line needs speaker 'reimu' or 'marisa' and a non-empty text",
            ) from None
    if not script.lines:
        raise PipelineInputError(
            "the script has no lines",
            field=f"{field}.lines",
            fix="give at least one line, or leave 'script' out to generate one",
        )
    return script


_STYLE_ADVERBS = {
    "分かりやすい": "分かりやすく",
    "わかりやすい": "分かりやすく",
    "実践的": "実践的に",
    "雑学的": "雑学たっぷりで",
    "深掘り": "じっくり深掘りして",
    "ゆるい": "ゆるっと",
}
_QUESTIONS_FIRST = ["まずは「{h}」について教えて。", "最初は「{h}」ね。どういうこと？"]
_QUESTIONS = ["次は「{h}」ね。どういうこと？", "「{h}」って何なの？", "じゃあ、「{h}」は？", "「{h}」についても知りたいわ。"]
_QUESTIONS_LAST = ["最後に「{h}」を教えて。", "最後は「{h}」ね。"]
_REACTIONS: list[tuple[str, Face]] = [
    ("へえ、そうなのね。", "surprised"),
    ("なるほど、分かりやすいわ。", "smile"),
    ("それは知らなかったわ！", "surprised"),
    ("意外と奥が深いのね。", "thinking"),
    ("ふむふむ、納得したわ。", "smile"),
]


def _line(speaker: SpeakerId, text: str, face: Face = "normal", pause: float = 0.3, topic: str | None = None) -> ScriptLine:
    return ScriptLine(speaker=speaker, text=text, face=face, pause_after=pause, topic=topic)


def _on_topic(lines: list[ScriptLine], topic: str) -> list[ScriptLine]:
    """``lines`` with the board showing ``topic`` (cut to the board's 40 characters)."""
    return [line.model_copy(update={"topic": topic[:40]}) for line in lines]


def _first_text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
        return value[0].strip()
    return ""


class TemplateScriptGenerator:
    """Writes scripts from the theme's sections with fixed Japanese templates (implements ``ScriptGenerator``)."""

    name = "template"

    def generate(
        self,
        theme: Theme,
        *,
        target_minutes: float,
        preferences: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> Script:
        """Return a dialogue for ``theme`` about ``target_minutes`` long.

        Raises:
            PipelineInputError: ``target_minutes`` is not a positive number.
        """
        if not isinstance(target_minutes, (int, float)) or isinstance(target_minutes, bool) or target_minutes <= 0:
            raise PipelineInputError(
                f"target length {target_minutes!r} is not a positive number of minutes",
                field="target_length_minutes",
                fix="give a number of minutes greater than 0, e.g. 1.5",
            )
        preferences = preferences or {}
        rng = random.Random(0 if seed is None else seed)
        target = float(target_minutes) * 60.0
        compact = target < 60.0

        intro = self._intro(theme, preferences, compact)
        outro = self._outro(theme, compact)
        budget = target - estimate_script_seconds(intro) - estimate_script_seconds(outro)

        body: list[ScriptLine] = []
        used_points = 0
        for index, point in enumerate(theme.points):
            block = self._point_block(point.heading, point.lines, index, len(theme.points), rng, compact)
            cost = estimate_script_seconds(block)
            # Take the section when that ends closer to the target than stopping here.
            if used_points and cost > 2 * budget:
                break
            body.extend(block)
            budget -= cost
            used_points += 1
        if used_points == len(theme.points) and not compact:
            recap = self._recap(theme)
            if estimate_script_seconds(recap) <= budget:
                body.extend(recap)
        if not compact:
            outro = self._outro(theme, compact, headings=[p.heading for p in theme.points[:used_points]])

        lines = intro + body + outro
        return Script(
            theme_id=theme.id,
            theme_title=theme.title,
            target_length_minutes=float(target_minutes),
            estimated_seconds=round(estimate_script_seconds(lines), 2),
            generator=self.name,
            lines=lines,
        )

    # -- templates --------------------------------------------------------

    def _intro(self, theme: Theme, preferences: Mapping[str, Any], compact: bool) -> list[ScriptLine]:
        if compact:
            return [
                _line("reimu", f"ゆっくり霊夢よ。今日のテーマは「{theme.title}」よ。", "smile"),
                _line("marisa", "ゆっくり魔理沙だぜ。さっそく始めるぜ。", "smile"),
            ]
        audience = _first_text(preferences.get("target_audience"))
        style = _first_text(preferences.get("content_style"))
        adverb = _STYLE_ADVERBS.get(style, "ゆっくり")
        who = f"{audience}向けに、" if audience else ""
        hook = theme.keywords[0] if theme.keywords else theme.title
        return [
            _line("reimu", "ゆっくり霊夢よ。", "smile", 0.2),
            _line("marisa", "ゆっくり魔理沙だぜ。", "smile"),
            _line("reimu", f"今日のテーマは「{theme.title}」よ。", "normal"),
            _line("marisa", f"{theme.summary}について、{who}{adverb}解説していくぜ。", "smile"),
            _line("reimu", f"「{hook}」って聞いたことはあるけど、よく知らないのよね。", "thinking", 0.4),
        ]

    def _point_block(
        self, heading: str, facts: list[str], index: int, total: int, rng: random.Random, compact: bool
    ) -> list[ScriptLine]:
        if index == 0:
            pool = _QUESTIONS_FIRST
        elif index == total - 1:
            pool = _QUESTIONS_LAST
        else:
            pool = _QUESTIONS
        block = [_line("reimu", rng.choice(pool).format(h=heading), "thinking")]
        for fact in facts[:1] if compact else facts:
            block.append(_line("marisa", fact, "normal"))
        if not compact:
            text, face = rng.choice(_REACTIONS)
            block.append(_line("reimu", text, face, 0.5))
        return _on_topic(block, heading)

    def _recap(self, theme: Theme) -> list[ScriptLine]:
        lines = [_line("reimu", "ここで、おさらいしましょう。", "normal")]
        for point in theme.points:
            lines.append(_line("marisa", f"{point.heading}。{point.lines[0]}", "normal"))
        lines.append(_line("reimu", "ばっちり覚えたわ。", "smile", 0.5))
        return _on_topic(lines, "おさらい")

    def _outro(self, theme: Theme, compact: bool, headings: list[str] | None = None) -> list[ScriptLine]:
        if compact:
            return [_line("reimu", "ご視聴ありがとうございました。", "smile", 0.5)]
        covered = "、".join(headings or [p.heading for p in theme.points[:1]])
        return _on_topic([
            _line("reimu", "今日のまとめをお願い。", "normal"),
            _line("marisa", f"今日は「{theme.title}」について、{covered}を見てきたぜ。", "smile"),
            _line("reimu", "ご視聴ありがとうございました。", "smile"),
            _line("marisa", "また次の動画で会おうぜ！", "smile", 0.6),
        ], "まとめ")
