"""The endpoint preflight against a loopback http.server: key, reachability, model name."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from fac.tools.errors import ConfigError, TransientError
from fac.tools.llm.preflight import Endpoint, preflight

SERVED = ["served-model", "other-model"]


class _Models(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str]]] = []
    delays: ClassVar[list[float]] = []  # seconds to stall before answering, one per request (a busy server)

    def do_GET(self) -> None:
        _Models.seen.append((self.path, self.headers.get("Authorization", "")))
        if _Models.delays:
            time.sleep(_Models.delays.pop(0))
        if self.path == "/v1/models":
            body, kind = json.dumps({"object": "list", "data": [{"id": m} for m in SERVED]}).encode(), "json"
        else:
            body, kind = b"<html><body>It works!</body></html>", "html"
        try:
            self.send_response(200)
            self.send_header("Content-Type", f"application/{kind}" if kind == "json" else "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (the busy-server test)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Models)  # loopback only
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_served_model_passes_and_the_key_is_sent_as_a_bearer_token(server: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-test")
    _Models.seen.clear()
    assert preflight(Endpoint("generator", "served-model", f"{server}/v1", "MY_KEY")) == SERVED
    assert _Models.seen == [("/v1/models", "Bearer sk-test")]


def test_a_model_the_server_does_not_serve_is_a_config_error_listing_what_it_serves(server: str) -> None:
    with pytest.raises(ConfigError, match=r"--judge-model 'nope' is not served at .*served-model, other-model"):
        preflight(Endpoint("judge", "nope", f"{server}/v1"))


def test_an_unreachable_server_is_an_endpoint_fault_naming_the_url_and_flag() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with pytest.raises(TransientError, match=rf"generator endpoint {url} is unreachable .*--generator-base-url"):
        preflight(Endpoint("generator", "m", url), timeout_s=2.0)


def test_a_server_answering_html_instead_of_a_model_list_is_an_endpoint_fault(server: str) -> None:
    with pytest.raises(TransientError, match=r"no OpenAI model list.*usually ends in /v1"):
        preflight(Endpoint("judge", "served-model", server))  # /v1 left off: the page is HTML


def test_a_remote_endpoint_without_its_key_fails_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ABSENT_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"\$ABSENT_KEY is not set"):
        preflight(Endpoint("judge", "gpt-4o-mini", "https://example.invalid/v1", "ABSENT_KEY"))


def test_a_base_url_that_is_no_http_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="--generator-base-url 'file:///etc/v1': expected an http"):
        preflight(Endpoint("generator", "m", "file:///etc/v1"))


def test_a_busy_server_gets_a_second_longer_wait_before_it_is_called_stuck(server: str) -> None:
    _Models.seen.clear()
    _Models.delays[:] = [0.6, 0.0]  # stalls past the first timeout, then answers
    assert preflight(Endpoint("generator", "served-model", f"{server}/v1"), timeout_s=0.2, patience_s=5.0) == SERVED
    assert len(_Models.seen) == 2
    _Models.delays[:] = [0.6, 0.6]
    with pytest.raises(TransientError, match=r"accepted the connection but did not answer GET /models within 0.3 s"):
        preflight(Endpoint("generator", "served-model", f"{server}/v1"), timeout_s=0.2, patience_s=0.3)
    _Models.delays[:] = [0.6]
    with pytest.raises(TransientError, match=r"within 0.2 s \(busy or stuck\)"):  # no patience: one try
        preflight(Endpoint("generator", "served-model", f"{server}/v1"), timeout_s=0.2)
    _Models.delays.clear()
