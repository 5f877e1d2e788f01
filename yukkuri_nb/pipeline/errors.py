"""Errors raised by the yukkuri pipeline.

Every error names three things a person needs to act on it: the *step* that
failed (``theme_selection``, ``tts_generation``, ...), the *field* of the input
or configuration at fault (``user_preferences.preferred_genres``,
``script.lines[3].text``, ``font``, ...) and the *fix*.  Providers raise them
without a step; the step processors fill the step in before re-raising, so the
message the engine records always reads::

    tts_generation: line 4 (魔理沙) produced no speech (field 'script.lines[3].text'); fix: ...
"""

from __future__ import annotations

__all__ = [
    "PipelineError",
    "PipelineInputError",
    "PipelineEnvironmentError",
    "PipelineCancelled",
]


class PipelineError(Exception):
    """Base class of the pipeline's errors.

    Args:
        problem: one sentence saying what is wrong (no step prefix).
        field: the input / configuration field at fault, dotted path style.
        fix: what the user should do about it.
        step: the workflow step; processors set it when the provider did not.
    """

    def __init__(self, problem: str, *, field: str, fix: str, step: str | None = None):
        self.problem = problem
        self.field = field
        self.fix = fix
        self.step = step
        super().__init__(self._render())

    def _render(self) -> str:
        prefix = f"{self.step}: " if self.step else ""
        return f"{prefix}{self.problem} (field {self.field!r}); fix: {self.fix}"

    def with_step(self, step: str) -> "PipelineError":
        """Return this error with ``step`` filled in (unchanged if already set)."""
        if self.step is None:
            self.step = step
            self.args = (self._render(),)
        return self

    def __str__(self) -> str:
        return self._render()

    def __reduce__(self):
        # Keep keyword-only construction picklable (process pools, run stores).
        return (_rebuild, (type(self), self.problem, self.field, self.fix, self.step))


def _rebuild(cls, problem, field, fix, step):
    return cls(problem, field=field, fix=fix, step=step)


class PipelineInputError(PipelineError, ValueError):
    """The run's input (preferences, settings, script) is invalid."""


class PipelineEnvironmentError(PipelineError, RuntimeError):
    """Something outside the input failed: a font, ffmpeg, the TTS engine, a remote API."""


class PipelineCancelled(Exception):
    """Raised inside worker threads when the step was cancelled; never escapes a processor."""
