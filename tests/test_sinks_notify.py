"""Notifications end to end against a real HTTP server and a real (tiny) SMTP server on
127.0.0.1: what is sent and when, that slow or failing endpoints never hold training up,
and that no endpoint or credential shows anywhere."""

from __future__ import annotations

import base64
import email
import email.policy
import io
import json
import logging
import socketserver
import threading
import time

import pytest

from helpers import TOKEN, FakeClock, Webhook, closed_port, train_with_sinks as train
from trainprogress import ProgressTracker
from trainprogress.sinks.console import ConsoleSink
from trainprogress.sinks.jsonl import JsonlSink
from trainprogress.sinks.notify import NotifySink

PASSWORD = "hunter2-smtp-password"
USER = "bot-user@example.org"


class Smtp:
    """A minimal SMTP responder: EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT; records what it
    gets. With ``fail_auth`` it refuses every login."""

    def __init__(self, fail_auth: bool = False) -> None:
        self.logins: list[tuple[str, str]] = []
        self.mails: list[tuple[str, list[str], email.message.EmailMessage]] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, text: str) -> None:
                self.wfile.write(text.encode() + b"\r\n")

            def handle(self):
                self.reply("220 localhost test SMTP")
                sender, recipients = "", []
                while line := self.rfile.readline():
                    command = line.decode().rstrip("\r\n")
                    verb = command.split(" ", 1)[0].upper()
                    if verb == "EHLO":
                        self.reply("250-localhost\r\n250-8BITMIME\r\n250 AUTH PLAIN")
                    elif verb == "AUTH":
                        _, user, password = base64.b64decode(command.split(" ")[2]).decode().split("\0")
                        outer.logins.append((user, password))
                        self.reply("535 5.7.8 authentication failed" if fail_auth else "235 2.7.0 accepted")
                    elif verb == "MAIL":
                        sender = command.split(":", 1)[1].split()[0].strip("<>")
                        self.reply("250 ok")
                    elif verb == "RCPT":
                        recipients.append(command.split(":", 1)[1].strip().strip("<>"))
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 end with <CRLF>.<CRLF>")
                        data = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            data += chunk
                        message = email.message_from_bytes(data, policy=email.policy.default)
                        outer.mails.append((sender, recipients, message))
                        recipients = []
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 ok")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]

    def texts(self) -> str:
        return "\n".join(m.get_content() for _, _, m in self.mails)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook():
    server = Webhook()
    yield server
    server.close()


@pytest.fixture
def smtp():
    server = Smtp()
    yield server
    server.close()


def smtp_env(port: int) -> dict[str, str]:
    return {
        "TRAINPROGRESS_SMTP_HOST": "127.0.0.1",
        "TRAINPROGRESS_SMTP_PORT": str(port),
        "TRAINPROGRESS_SMTP_USER": USER,
        "TRAINPROGRESS_SMTP_PASSWORD": PASSWORD,
        "TRAINPROGRESS_SMTP_STARTTLS": "0",  # the local server speaks no TLS
        "TRAINPROGRESS_SMTP_TO": "a@example.org, b@example.org",
    }


def test_start_milestones_anomaly_and_crash_reach_webhook_and_email(webhook, smtp, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    env = {"TRAINPROGRESS_SLACK_WEBHOOK_URL": webhook.url, **smtp_env(smtp.port)}
    notify = NotifySink(min_interval_s=0, environ=env, label="run-7")
    console = io.StringIO()
    with pytest.raises(RuntimeError):
        train([ConsoleSink(console), JsonlSink(tmp_path / "log.jsonl"), notify], nan_at=70, crash_at=170)

    assert webhook.posts and all(path == f"/services/{TOKEN}" and kind == "application/json" for path, kind, _ in webhook.posts)
    for texts in (webhook.texts(), smtp.texts()):
        assert "[trainprogress · run-7]" in texts
        assert "🚀 training started: 200 iterations" in texts
        for milestone in ("25% (50/200) done", "50% (100/200) done", "75% (150/200) done"):
            assert milestone in texts
        assert "100%" not in texts and "stopped" not in texts  # it crashed at 85%
        assert "⚠️ anomaly at iteration 70: loss is nan" in texts
        assert "💥 training crashed at iteration 170: RuntimeError: CUDA out of memory" in texts
        # In order of events.
        assert texts.index("started") < texts.index("25%") < texts.index("anomaly") < texts.index("50%") < texts.index("crashed")

    assert smtp.logins and set(smtp.logins) == {(USER, PASSWORD)}
    sender, recipients, message = smtp.mails[0]
    assert (sender, recipients) == (USER, ["a@example.org", "b@example.org"])
    assert message["Subject"].startswith("[trainprogress · run-7] 🚀 training started")

    out, err = capsys.readouterr()
    seen = [out, err, caplog.text, console.getvalue(), (tmp_path / "log.jsonl").read_text(), repr(notify)]
    for secret in (TOKEN, webhook.url, PASSWORD, USER):
        assert not any(secret in text for text in seen), secret


def test_completion_and_a_resume_skip_passed_milestones(webhook):
    env = {"TRAINPROGRESS_SLACK_WEBHOOK_URL": webhook.url}
    train([NotifySink(min_interval_s=0, milestones=(10, 50, 90, 100), environ=env)], start_iter=120)
    texts = webhook.texts()
    assert "resuming at 120 (60%)" in texts
    assert "90% (180/200) done" in texts and "✅ 100% (200/200) done" in texts
    assert "10%" not in texts and "50%" not in texts


def test_an_early_stop_is_announced(webhook):
    clock = FakeClock()
    tracker = ProgressTracker(200, sinks=[NotifySink(min_interval_s=0, environ={"TRAINPROGRESS_SLACK_WEBHOOK_URL": webhook.url})], clock=clock)
    for _ in range(30):
        clock.advance(0.1)
        tracker.step(loss=1.0)
    tracker.close()  # e.g. after a KeyboardInterrupt, which is no crash
    assert "⏹️ training stopped at 15% (30/200)" in webhook.texts()


def wait_for(condition, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert condition()


def test_messages_within_the_rate_limit_go_out_together(webhook):
    env = {"TRAINPROGRESS_SLACK_WEBHOOK_URL": webhook.url}
    clock = FakeClock()
    tracker = ProgressTracker(40, sinks=[NotifySink(min_interval_s=30, environ=env)], clock=clock)
    wait_for(lambda: len(webhook.posts) == 1)  # the start goes out at once
    for it in range(1, 41):
        clock.advance(0.1)
        tracker.step(loss=1.0)
        if it <= 3:
            tracker.event("anomaly", message=f"injected {it}")
    assert len(webhook.posts) == 1  # the rest waits for the rate limit...
    tracker.close()  # ...or for the end of the run, which sends it without waiting
    assert len(webhook.posts) == 2
    assert webhook.posts[0][2]["text"].endswith("🚀 training started: 40 iterations")
    batch = webhook.posts[1][2]["text"]
    assert all(f"injected {i}" in batch for i in (1, 2, 3)) and "✅ 100% (40/40) done" in batch


def test_a_slow_endpoint_never_stalls_training(caplog):
    slow = Webhook(delay_s=3.0)
    try:
        env = {"TRAINPROGRESS_SLACK_WEBHOOK_URL": slow.url}
        sink = NotifySink(min_interval_s=0, timeout_s=0.5, queue_size=2, flush_timeout_s=1.0, environ=env)
        clock = FakeClock()
        tracker = ProgressTracker(2000, interval_percent=1, sinks=[sink], clock=clock)
        started = time.perf_counter()
        for it in range(2000):
            clock.advance(0.1)
            tracker.step(loss=1.0)
            if it % 40 == 0:
                tracker.event("anomaly", message="injected")
        loop_s = time.perf_counter() - started
        closing = time.perf_counter()
        tracker.close()
        close_s = time.perf_counter() - closing
    finally:
        slow.close()
    # 50 anomalies and 4 milestones: sent inline they would take 0.5 s or more each.
    assert loop_s < 5.0
    assert close_s < 3.0  # flush_timeout_s bounds the wait for what is left
    drops = [r for r in caplog.records if "dropping" in r.getMessage()]
    assert len(drops) == 1
    failures = [r for r in caplog.records if "notification failed" in r.getMessage()]
    assert len(failures) == 1 and "timed out" in failures[0].getMessage()


def test_failing_endpoints_warn_once_each_and_leak_nothing(tmp_path, capsys, caplog):
    refusing = Smtp(fail_auth=True)
    try:
        url = f"http://127.0.0.1:{closed_port()}/services/{TOKEN}"
        env = {"TRAINPROGRESS_SLACK_WEBHOOK_URL": url, **smtp_env(refusing.port)}
        tracker = train([NotifySink(min_interval_s=0, environ=env), JsonlSink(tmp_path / "log.jsonl")], events=5)
    finally:
        refusing.close()
    assert tracker.iteration == 200
    assert len(refusing.logins) > 1  # it kept trying, quietly
    failures = [r.getMessage() for r in caplog.records if "notification failed" in r.getMessage()]
    assert sorted(m.split()[1] for m in failures) == ["email", "webhook"]
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["status"] == "completed"
    out, err = capsys.readouterr()
    for secret in (TOKEN, url, PASSWORD, USER):
        assert not any(secret in text for text in (out, err, caplog.text)), secret


def test_configuration_errors_name_the_variable_never_its_value():
    with pytest.raises(ValueError, match="TRAINPROGRESS_SLACK_WEBHOOK_URL.*TRAINPROGRESS_SMTP_HOST"):
        NotifySink(environ={})
    with pytest.raises(ValueError, match="TRAINPROGRESS_SLACK_WEBHOOK_URL") as bad_url:
        NotifySink(environ={"TRAINPROGRESS_SLACK_WEBHOOK_URL": f"hooks.example.org/{TOKEN}"})
    assert TOKEN not in str(bad_url.value)
    with pytest.raises(ValueError, match="TRAINPROGRESS_SMTP_TO"):
        NotifySink(environ={"TRAINPROGRESS_SMTP_HOST": "mail.example.org"})
    with pytest.raises(ValueError, match="TRAINPROGRESS_SMTP_USER") as no_user:
        NotifySink(environ={"TRAINPROGRESS_SMTP_HOST": "h", "TRAINPROGRESS_SMTP_TO": "a@b", "TRAINPROGRESS_SMTP_PASSWORD": PASSWORD})
    assert PASSWORD not in str(no_user.value)
    with pytest.raises(ValueError, match="milestones"):
        NotifySink(milestones=(0, 50), environ={"TRAINPROGRESS_SLACK_WEBHOOK_URL": "https://x"})
