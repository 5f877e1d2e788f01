"""The OpenAI-compatible script provider against a local HTTP server started by the test."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from yukkuri_nb.pipeline.errors import PipelineEnvironmentError, PipelineInputError
from yukkuri_nb.pipeline.llm import OpenAIChatScriptGenerator
from yukkuri_nb.pipeline.themes import ThemeBank

THEME = ThemeBank.builtin().get("python-async")

GOOD_CONTENT = """```json
{"lines": [
  {"speaker": "霊夢", "text": "ゆっくり霊夢よ。", "face": "smile", "pause_after": 0.2},
  {"speaker": "marisa", "text": "ゆっくり魔理沙だぜ。", "face": "grin"},
  {"speaker": "narrator", "text": "（効果音）"},
  {"speaker": "reimu", "text": "awaitって何？", "reading": "アウェイトってなに", "pause_after": "x"}
]}
```"""


class _Server:
    """Answers /v1/chat/completions with a canned status and body; records requests."""

    def __init__(self):
        self.requests = []
        self.status = 200
        self.body = {"choices": [{"message": {"role": "assistant", "content": GOOD_CONTENT}}]}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                outer.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(self.rfile.read(length))}
                )
                payload = outer.body if isinstance(outer.body, bytes) else json.dumps(outer.body).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.close()


def test_request_and_response_handling(server):
    gen = OpenAIChatScriptGenerator.from_env(
        {"YUKKURI_LLM_BASE_URL": server.url + "/", "YUKKURI_LLM_MODEL": "yukkuri-7b", "YUKKURI_LLM_API_KEY": "sk-test"}
    )
    script = gen.generate(THEME, target_minutes=1.0, preferences={"target_audience": "初心者"})

    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    assert request["headers"]["Content-Type"] == "application/json"
    body = request["body"]
    assert body["model"] == "yukkuri-7b"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert THEME.title in body["messages"][1]["content"] and "初心者" in body["messages"][1]["content"]

    assert [(l.speaker, l.text) for l in script.lines] == [
        ("reimu", "ゆっくり霊夢よ。"),
        ("marisa", "ゆっくり魔理沙だぜ。"),
        ("reimu", "awaitって何？"),
    ]
    assert script.lines[0].face == "smile" and script.lines[0].pause_after == 0.2
    assert script.lines[1].face == "normal"  # unknown face falls back
    assert script.lines[2].reading == "アウェイトってなに" and script.lines[2].pause_after == 0.3
    assert script.generator == "openai-chat:yukkuri-7b" and script.theme_id == THEME.id


def test_no_key_sends_no_authorization(server):
    OpenAIChatScriptGenerator(server.url, "m").generate(THEME, target_minutes=0.5)
    assert "Authorization" not in server.requests[0]["headers"]


def test_http_errors_name_the_fix(server):
    server.status = 401
    server.body = {"error": {"message": "invalid key"}}
    gen = OpenAIChatScriptGenerator(server.url, "m", "bad")
    with pytest.raises(PipelineEnvironmentError, match=r"answered HTTP 401: .*invalid key.*\(field 'YUKKURI_LLM_BASE_URL'\); "
                       r"fix: check the API key in YUKKURI_LLM_API_KEY$"):
        gen.generate(THEME, target_minutes=1)


def test_non_json_content_is_reported(server):
    server.body = {"choices": [{"message": {"content": "台本はこちらです！ 霊夢: こんにちは"}}]}
    with pytest.raises(PipelineEnvironmentError, match=r"^the model's answer is not JSON: .*\(field 'choices\[0\]\.message\.content'\)"):
        OpenAIChatScriptGenerator(server.url, "m").generate(THEME, target_minutes=1)
    server.body = {"object": "error"}
    with pytest.raises(PipelineEnvironmentError, match=r"has no choices\[0\]\.message\.content"):
        OpenAIChatScriptGenerator(server.url, "m").generate(THEME, target_minutes=1)
    server.body = {"choices": [{"message": {"content": '{"lines": [{"speaker": "sanae", "text": "x"}]}'}}]}
    with pytest.raises(PipelineEnvironmentError, match=r"no usable lines"):
        OpenAIChatScriptGenerator(server.url, "m").generate(THEME, target_minutes=1)


def test_unreachable_server_is_an_environment_error():
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gen = OpenAIChatScriptGenerator(f"http://127.0.0.1:{port}/v1", "m", timeout=5)
    with pytest.raises(PipelineEnvironmentError, match=r"^cannot reach the LLM endpoint http://127\.0\.0\.1:\d+/v1/chat/completions"):
        gen.generate(THEME, target_minutes=1)


def test_missing_configuration_names_the_variable():
    with pytest.raises(PipelineInputError, match=r"^YUKKURI_LLM_BASE_URL is not set \(field 'YUKKURI_LLM_BASE_URL'\)"):
        OpenAIChatScriptGenerator.from_env({})
    with pytest.raises(PipelineInputError, match=r"YUKKURI_LLM_MODEL is not set"):
        OpenAIChatScriptGenerator.from_env({"YUKKURI_LLM_BASE_URL": "http://x/v1"})
    with pytest.raises(PipelineInputError, match=r"is not an http\(s\) URL"):
        OpenAIChatScriptGenerator("ftp://x", "m")
