"""No part of a notification secret reaches any output, whatever the failure: credentials in
the webhook URL, malformed URLs, servers that quote the request in their errors. Real
servers on 127.0.0.1."""

from __future__ import annotations

import base64
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers import TOKEN, closed_port, train_with_sinks as train
from trainprogress.sinks.notify import NotifySink

SECRET_USER = "hookuser-4711"
SECRET_PASSWORD = "SECRETPW-9f8e7d"


class EchoingWebhook:
    """Records each POST's path and Authorization header, answering with ``status`` and a
    reason phrase that quotes the request path (as some proxies do)."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((self.path, self.headers.get("Authorization")))
                self.send_response(status, f"rejected {self.path}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def assert_nothing_leaks(capsys, caplog, *secrets: str) -> None:
    out, err = capsys.readouterr()
    for secret in secrets:
        for text in (out, err, caplog.text):
            assert secret not in text, (secret, text)


def test_credentials_in_the_url_are_sent_as_basic_auth():
    server = EchoingWebhook()
    try:
        url = f"http://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:{server.port}/hooks/{TOKEN}"
        train([NotifySink(min_interval_s=0, environ={"TRAINPROGRESS_SLACK_WEBHOOK_URL": url})])
    finally:
        server.close()
    expected = "Basic " + base64.b64encode(f"{SECRET_USER}:{SECRET_PASSWORD}".encode()).decode()
    assert server.requests and all(r == (f"/hooks/{TOKEN}", expected) for r in server.requests)


def test_an_unreachable_url_with_credentials_leaks_nothing(capsys, caplog):
    caplog.set_level(logging.WARNING)
    url = f"http://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:{closed_port()}/hooks/{TOKEN}"
    train([NotifySink(min_interval_s=0, environ={"TRAINPROGRESS_SLACK_WEBHOOK_URL": url})])
    failures = [r.getMessage() for r in caplog.records if "notification failed" in r.getMessage()]
    assert failures == ["trainprogress: webhook notification failed; training goes on (ConnectionRefusedError: Connection refused)"]
    assert_nothing_leaks(capsys, caplog, SECRET_USER, SECRET_PASSWORD, TOKEN, *TOKEN.split("/"))


def test_a_server_quoting_the_token_in_its_error_leaks_nothing(capsys, caplog):
    server = EchoingWebhook(status=403)
    try:
        url = f"http://127.0.0.1:{server.port}/hooks/{TOKEN}"
        train([NotifySink(min_interval_s=0, environ={"TRAINPROGRESS_SLACK_WEBHOOK_URL": url})])
    finally:
        server.close()
    assert server.requests
    assert "webhook notification failed; training goes on (HTTP status 403)" in caplog.text
    assert_nothing_leaks(capsys, caplog, TOKEN, *TOKEN.split("/"))


@pytest.mark.parametrize("url, problem", [
    (f"http://127.0.0.1:8/hooks/{TOKEN} x", "contains a space or a control character"),
    (f"http://127.0.0.1:8/hooks/{TOKEN}\n", "contains a space or a control character"),
    (f"http://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:port{TOKEN}/x", "has a port that is not a number"),
])
def test_malformed_urls_are_refused_without_showing_them(url, problem):
    with pytest.raises(ValueError) as err:
        NotifySink(environ={"TRAINPROGRESS_SLACK_WEBHOOK_URL": url})
    message = str(err.value)
    assert "TRAINPROGRESS_SLACK_WEBHOOK_URL" in message and problem in message
    for secret in (SECRET_USER, SECRET_PASSWORD, TOKEN, *TOKEN.split("/"), "hooks"):
        assert secret not in message
