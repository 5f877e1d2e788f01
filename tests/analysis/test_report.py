"""The HTML performance report opens offline: everything inline, no external URL."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser

import pytest

from yukkuri_nb.analysis import performance_report, sweep

from .workflows import diamond_engine, run_projects


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.imgs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "xlink:href", "data", "poster", "action", "srcset") and v is not None:
                self.urls.append((tag, k, v))
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Collect:
    p = _Collect()
    p.feed(text)
    return p


def _assert_offline(text: str) -> _Collect:
    p = _parse(text)
    external = [u for u in p.urls if not u[2].startswith("data:")]
    assert external == [], external
    assert "script" not in p.tags and "link" not in p.tags and "iframe" not in p.tags
    assert "@import" not in text and "url(" not in text
    return p


def test_report_of_an_engine_batch_is_self_contained(tmp_path):
    engine, clock = diamond_engine(fail_a_once=True)
    run_projects(engine, clock, "p1", "p2", pause_at=0.5, resume_at=2.5)
    tuning = sweep(engine, max_concurrent_values=[1, 2], projects=2)
    path = tmp_path / "report.html"
    text = performance_report(engine, path, sweep=tuning, title="ゆっくり動画 レポート")
    assert path.read_text(encoding="utf-8") == text
    p = _assert_offline(text)
    assert len(p.imgs) == 6  # five charts and the sweep
    assert all(src.startswith("data:image/png;base64,") and len(src) > 2000 for src in p.imgs)
    body = "".join(p.text)
    assert "ゆっくり動画 レポート" in body
    assert "動画合成" in body and "台本作成" in body  # display names in the step table
    assert "RuntimeError: 一時的なエラー" not in body  # a retried step that completed is not an error
    assert "所要時間 makespan" in body and "10 s" in body
    if shutil.which("dot"):
        assert text.count("<svg") == 1 and "<!DOCTYPE svg" not in text
    else:  # pragma: no cover - CI installs graphviz
        assert "apt-get install graphviz" in body


def test_report_of_a_result_without_an_engine_has_no_plan_but_all_charts(tmp_path):
    engine, clock = diamond_engine()
    (result,) = run_projects(engine, clock, "p1")
    text = performance_report(result)
    p = _assert_offline(text)
    assert len(p.imgs) == 5
    assert "<svg" not in text and "実行計画" not in text
    with_engine = performance_report([result], engine=engine)
    assert "実行計画" in with_engine and "動画合成" in with_engine


def test_report_of_an_unknown_source_is_refused():
    with pytest.raises(TypeError, match=r"^cannot analyse str"):
        performance_report("runs.db")
