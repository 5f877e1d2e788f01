"""A script provider backed by any OpenAI-compatible chat endpoint (standard library only).

Configuration, by environment variables (:meth:`OpenAIChatScriptGenerator.from_env`)::

    YUKKURI_LLM_BASE_URL   e.g. http://localhost:8000/v1   (required; /chat/completions is appended)
    YUKKURI_LLM_MODEL      model name                      (required)
    YUKKURI_LLM_API_KEY    sent as "Authorization: Bearer ..." (optional for local servers)
    YUKKURI_LLM_TIMEOUT    seconds per request             (optional, default 120)

The model is asked for a JSON object ``{"lines": [{"speaker", "text", "face",
"pause_after", "reading"?}]}``; code fences around it and Japanese speaker
names (霊夢 / 魔理沙) are tolerated, and the result is validated like any
script.  Network failures and unusable answers raise
:class:`~.errors.PipelineEnvironmentError` (the workflow retries those);
missing configuration raises :class:`~.errors.PipelineInputError`.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from .errors import PipelineEnvironmentError, PipelineInputError
from .models import Script, ScriptLine, Theme
from .script import estimate_script_seconds, validate_script

__all__ = ["OpenAIChatScriptGenerator", "ENV_BASE_URL", "ENV_MODEL", "ENV_API_KEY", "ENV_TIMEOUT"]

ENV_BASE_URL = "YUKKURI_LLM_BASE_URL"
ENV_MODEL = "YUKKURI_LLM_MODEL"
ENV_API_KEY = "YUKKURI_LLM_API_KEY"
ENV_TIMEOUT = "YUKKURI_LLM_TIMEOUT"

_SPEAKER_NAMES = {"霊夢": "reimu", "れいむ": "reimu", "reimu": "reimu", "魔理沙": "marisa", "まりさ": "marisa", "marisa": "marisa"}
_FACES = {"normal", "smile", "surprised", "thinking", "troubled"}
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)

_SYSTEM = (
    "あなたは「ゆっくり解説」動画の台本作家です。霊夢(聞き役・ツッコミ)と魔理沙(解説役、語尾は「だぜ」)の"
    "掛け合い台本を日本語で書きます。出力は JSON オブジェクトだけにしてください。説明文やコードブロックは不要です。"
)


class OpenAIChatScriptGenerator:
    """Writes scripts with an OpenAI-compatible ``/chat/completions`` endpoint (implements ``ScriptGenerator``).

    Args:
        base_url: the API root, e.g. ``http://localhost:8000/v1``.
        model: the model name sent in each request.
        api_key: bearer token (optional).
        timeout: seconds per HTTP request.
        temperature: sampling temperature.
    """

    name = "openai-chat"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 120.0, temperature: float = 0.8):
        if not base_url or not base_url.startswith(("http://", "https://")):
            raise PipelineInputError(
                f"LLM base URL {base_url!r} is not an http(s) URL",
                field=ENV_BASE_URL,
                fix="set it to the API root, e.g. http://localhost:8000/v1",
            )
        if not model:
            raise PipelineInputError("no LLM model name given", field=ENV_MODEL, fix="set the model name to use")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key or None
        self.timeout = float(timeout)
        self.temperature = float(temperature)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "OpenAIChatScriptGenerator":
        """Build from ``YUKKURI_LLM_*`` environment variables.

        Raises:
            PipelineInputError: the base URL or the model is not set.
        """
        env = os.environ if environ is None else environ
        base_url = env.get(ENV_BASE_URL, "").strip()
        model = env.get(ENV_MODEL, "").strip()
        if not base_url:
            raise PipelineInputError(
                f"{ENV_BASE_URL} is not set",
                field=ENV_BASE_URL,
                fix=f"export {ENV_BASE_URL}=http://host:port/v1 and {ENV_MODEL}=<model>, or use the offline script generator",
            )
        if not model:
            raise PipelineInputError(f"{ENV_MODEL} is not set", field=ENV_MODEL, fix=f"export {ENV_MODEL}=<model name>")
        try:
            timeout = float(env.get(ENV_TIMEOUT, "") or 120.0)
        except ValueError:
            raise PipelineInputError(
                f"{ENV_TIMEOUT}={env.get(ENV_TIMEOUT)!r} is not a number", field=ENV_TIMEOUT, fix="give seconds, e.g. 60"
            ) from None
        return cls(base_url, model, env.get(ENV_API_KEY, "").strip() or None, timeout=timeout)

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def build_messages(self, theme: Theme, target_minutes: float, preferences: Mapping[str, Any]) -> list[dict[str, str]]:
        """The chat messages sent for ``theme`` (system prompt + the request)."""
        approx_lines = max(4, round(target_minutes * 60 / 4.5))
        points = "\n".join(f"- {p.heading}: {' '.join(p.lines)}" for p in theme.points)
        audience = preferences.get("target_audience") or "一般"
        style = preferences.get("content_style") or "分かりやすい"
        user = (
            f"テーマ: {theme.title}\n概要: {theme.summary}\n要点:\n{points}\n"
            f"視聴者: {audience}\n雰囲気: {style}\n"
            f"長さ: 約{target_minutes:g}分 (およそ{approx_lines}行、一行は40文字以内)\n\n"
            '次の形式の JSON だけを返してください: {"lines": [{"speaker": "reimu" または "marisa", '
            '"text": "せりふ", "face": "normal|smile|surprised|thinking|troubled", "pause_after": 0.3}]}\n'
            "最初は「ゆっくり霊夢よ。」「ゆっくり魔理沙だぜ。」のあいさつ、最後は締めのあいさつにしてください。"
        )
        return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]

    def build_request(self, theme: Theme, target_minutes: float, preferences: Mapping[str, Any]) -> urllib.request.Request:
        """The HTTP request (POST, JSON body, bearer auth when a key is set)."""
        body = {
            "model": self.model,
            "messages": self.build_messages(theme, target_minutes, preferences),
            "temperature": self.temperature,
        }
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return urllib.request.Request(
            self.endpoint, data=json.dumps(body, ensure_ascii=False).encode("utf-8"), headers=headers, method="POST"
        )

    def _post(self, request: urllib.request.Request) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace") if exc.fp else ""
            if exc.code in (401, 403):
                fix = f"check the API key in {ENV_API_KEY}"
            elif exc.code == 404:
                fix = f"check {ENV_BASE_URL} (it should end in /v1 or similar) and {ENV_MODEL}"
            else:
                fix = "try again later, or use the offline script generator"
            raise PipelineEnvironmentError(
                f"the LLM endpoint {self.endpoint} answered HTTP {exc.code}: {detail.strip() or exc.reason}",
                field=ENV_BASE_URL,
                fix=fix,
            ) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PipelineEnvironmentError(
                f"cannot reach the LLM endpoint {self.endpoint}: {reason}",
                field=ENV_BASE_URL,
                fix="start the server or correct the URL, or use the offline script generator",
            ) from None
        try:
            payload = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise PipelineEnvironmentError(
                f"the LLM endpoint {self.endpoint} did not answer with JSON: {raw[:120]!r}",
                field=ENV_BASE_URL,
                fix="point it at an OpenAI-compatible API root",
            ) from None
        if not isinstance(payload, dict):
            raise PipelineEnvironmentError(
                "the LLM answer is not a JSON object", field="response", fix="point it at an OpenAI-compatible API root"
            )
        return payload

    def parse_response(self, payload: Mapping[str, Any], theme: Theme, target_minutes: float) -> Script:
        """Turn a chat-completions answer into a validated :class:`Script`.

        Raises:
            PipelineEnvironmentError: no message content, content that is not
                the requested JSON, or lines that do not validate.
        """
        try:
            content = payload["choices"][0]["message"]["content"]
            if not isinstance(content, str):
                raise TypeError
        except (KeyError, IndexError, TypeError):
            raise PipelineEnvironmentError(
                f"the LLM answer has no choices[0].message.content: {json.dumps(payload, ensure_ascii=False)[:200]}",
                field="choices[0].message.content",
                fix="use an OpenAI-compatible chat endpoint",
            ) from None
        text = content.strip()
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group(1)
        try:
            data = json.loads(text)
        except ValueError:
            raise PipelineEnvironmentError(
                f"the model's answer is not JSON: {content[:120]!r}",
                field="choices[0].message.content",
                fix="use a model that follows JSON instructions, or the offline script generator",
            ) from None
        raw_lines = data.get("lines") if isinstance(data, dict) else data
        if not isinstance(raw_lines, list):
            raise PipelineEnvironmentError(
                "the model's JSON has no 'lines' list",
                field="choices[0].message.content",
                fix="use a model that follows JSON instructions, or the offline script generator",
            )
        lines: list[ScriptLine] = []
        for index, item in enumerate(raw_lines):
            if not isinstance(item, dict):
                continue
            speaker = _SPEAKER_NAMES.get(str(item.get("speaker", "")).strip().lower())
            text_value = str(item.get("text", "")).strip()
            if speaker is None or not text_value:
                continue  # tolerate stray stage directions; an empty result is an error below
            face = item.get("face") if item.get("face") in _FACES else "normal"
            try:
                pause = min(5.0, max(0.0, float(item.get("pause_after", 0.3))))
            except (TypeError, ValueError):
                pause = 0.3
            reading = item.get("reading") if isinstance(item.get("reading"), str) else None
            lines.append(ScriptLine(speaker=speaker, text=text_value, face=face, pause_after=pause, reading=reading))
        if not lines:
            raise PipelineEnvironmentError(
                "the model returned no usable lines (each needs speaker reimu/marisa and a text)",
                field="choices[0].message.content",
                fix="try again, use another model, or the offline script generator",
            )
        return validate_script(
            Script(
                theme_id=theme.id,
                theme_title=theme.title,
                target_length_minutes=float(target_minutes),
                estimated_seconds=round(estimate_script_seconds(lines), 2),
                generator=f"{self.name}:{self.model}",
                lines=lines,
            )
        )

    def generate(
        self,
        theme: Theme,
        *,
        target_minutes: float,
        preferences: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> Script:
        """Ask the endpoint for a script (one request; the workflow retries transient failures)."""
        request = self.build_request(theme, target_minutes, preferences or {})
        return self.parse_response(self._post(request), theme, target_minutes)
