"""No part of a notification secret reaches any output, whatever the failure: credentials in
the webhook URL, malformed URLs, servers that quote the request in their errors. Real
servers on 127.0.0.1."""

from __future__ import annotations

import base64
import logging

import pytest

from helpers import TOKEN, QuietHandler, closed_port, serve, train_with_sinks as train
from trainprogress.sinks.notify import NotifySink

SECRET_USER = "hookuser-4711"
SECRET_PASSWORD = "SECRETPW-9f8e7d"


class EchoingWebhook:
    """Records each POST's path and Authorization header, answering with ``status`` and a
    reason phrase that quotes the request path (as some proxies do)."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(QuietHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests.append((self.path, self.headers.get("Authorization")))
                self.send_response(status, f"rejected {self.path}")
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = serve(Handler)
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


class RedirectingWebhook(EchoingWebhook):
    """Answers a request to /hooks/... with ``status`` and a Location header pointing to
    ``location``, any other with 200; records every request."""

    def __init__(self, location: str, status: int = 302, host: str = "127.0.0.1") -> None:
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(QuietHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((self.path, self.headers.get("Authorization")))
                redirect = self.path.startswith("/hooks/")
                self.send_response(status if redirect else 200)
                if redirect:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

        self.server = serve(Handler, host)
        self.port = self.server.server_address[1]


class RecordingServer(EchoingWebhook):
    """Records every request (any method) and its Authorization header, on ``host``."""

    def __init__(self, host: str) -> None:
        self.requests: list[tuple[str, str | None]] = []
        outer = self

        class Handler(QuietHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Authorization")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET

        self.server = serve(Handler, host)
        self.port = self.server.server_address[1]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_never_carries_the_credentials(status, capsys, caplog):
    caplog.set_level(logging.WARNING)
    other = RecordingServer("127.0.0.2")  # another loopback address: another host
    webhook = RedirectingWebhook(f"http://127.0.0.2:{other.port}/elsewhere", status=status)
    try:
        url = f"http://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:{webhook.port}/hooks/{TOKEN}"
        train([NotifySink(min_interval_s=0, environ={"TRAINPROGRESS_SLACK_WEBHOOK_URL": url})])
    finally:
        webhook.close()
        other.close()
    assert webhook.requests, "the webhook itself was asked"
    assert other.requests == []  # nothing, let alone a credential, reached the second host
    failures = [r.getMessage() for r in caplog.records if "notification failed" in r.getMessage()]
    assert len(failures) == 1 and f"redirected to another host (HTTP status {status}); not followed" in failures[0]
    assert_nothing_leaks(capsys, caplog, SECRET_USER, SECRET_PASSWORD, TOKEN, *TOKEN.split("/"))


def test_a_redirect_within_the_same_host_is_followed_with_the_credentials():
    target = RecordingServer("127.0.0.1")
    webhook = RedirectingWebhook(f"http://127.0.0.1:{target.port}/moved", status=302)
    try:
        # A different port is another origin: refused. The same origin is followed.
        same = RedirectingWebhook("/moved-here", status=302)
        try:
            url = f"http://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:{same.port}/hooks/{TOKEN}"
            train([NotifySink(min_interval_s=0, environ={"TRAINPROGRESS_SLACK_WEBHOOK_URL": url})])
        finally:
            same.close()
        url = f"http://{SECRET_USER}:{SECRET_PASSWORD}@127.0.0.1:{webhook.port}/hooks/{TOKEN}"
        train([NotifySink(min_interval_s=0, environ={"TRAINPROGRESS_SLACK_WEBHOOK_URL": url})])
    finally:
        webhook.close()
        target.close()
    assert target.requests == []  # another port on the same address is another origin
    expected = "Basic " + base64.b64encode(f"{SECRET_USER}:{SECRET_PASSWORD}".encode()).decode()
    followed = [auth for path, auth in same.requests if path == "/moved-here"]
    assert followed and all(auth == expected for auth in followed)
