"""The yukkuri pipeline: real steps and their offline providers.

``register_yukkuri_workflow(engine, output_dir="out")`` registers the
``yukkuri_video`` workflow (theme -> script / title -> TTS -> subtitles ->
video, plus thumbnail); :func:`default_providers` are the offline providers
(theme bank, template script and title, Open JTalk, PIL + ffmpeg), each behind
a small protocol in :mod:`.providers` so remote services can be plugged in.

Heavy modules (PIL drawing, pyopenjtalk, the engine) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "register_yukkuri_workflow",
    "yukkuri_steps",
    "WORKFLOW_NAME",
    "Providers",
    "default_providers",
    "PipelineError",
    "PipelineInputError",
    "PipelineEnvironmentError",
    "Script",
    "ScriptLine",
    "Theme",
    "TitleInfo",
    "VoiceSettings",
    "VideoSettings",
    "ThemeBank",
    "TemplateScriptGenerator",
    "OpenAIChatScriptGenerator",
    "TemplateTitleGenerator",
    "OpenJTalkSynthesizer",
    "ReadingDictionary",
    "FfmpegVideoComposer",
    "ThumbnailPainter",
]

_WHERE = {
    "register_yukkuri_workflow": ".workflow",
    "yukkuri_steps": ".workflow",
    "WORKFLOW_NAME": ".workflow",
    "Providers": ".providers",
    "default_providers": ".providers",
    "PipelineError": ".errors",
    "PipelineInputError": ".errors",
    "PipelineEnvironmentError": ".errors",
    "Script": ".models",
    "ScriptLine": ".models",
    "Theme": ".models",
    "TitleInfo": ".models",
    "VoiceSettings": ".models",
    "VideoSettings": ".models",
    "ThemeBank": ".themes",
    "TemplateScriptGenerator": ".script",
    "OpenAIChatScriptGenerator": ".llm",
    "TemplateTitleGenerator": ".titles",
    "OpenJTalkSynthesizer": ".tts",
    "ReadingDictionary": ".readings",
    "FfmpegVideoComposer": ".video",
    "ThumbnailPainter": ".thumbnail",
}


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
