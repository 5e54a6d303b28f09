"""Notifications: a Slack-compatible incoming webhook and e-mail over SMTP, when the run
starts, at milestones (default 25/50/75/100%), on an anomaly, on a crash, and when a run
stops early.

Endpoints and credentials come only from environment variables, and never appear in any
output, log line, exception message or repr, not even in part: a failure is logged by its
type and code alone (an exception's text may quote the URL or the server's reply), with
every piece of every secret masked besides:

- ``TRAINPROGRESS_SLACK_WEBHOOK_URL``: an incoming-webhook URL; a JSON ``{"text": ...}`` is
  POSTed to it (Slack, Mattermost and other Slack-compatible endpoints accept it). A
  ``user:password@`` in it is sent as HTTP basic authentication. A redirect is followed only
  to the same scheme, host and port while credentials are sent: one to another host is not
  followed, and is logged in one line (without the URL) as a failed notification.
- ``TRAINPROGRESS_SMTP_HOST`` turns e-mail on and then needs ``TRAINPROGRESS_SMTP_TO``
  (comma-separated addresses). Optional: ``TRAINPROGRESS_SMTP_PORT`` (default 587 with
  STARTTLS, else 25), ``TRAINPROGRESS_SMTP_USER`` and ``TRAINPROGRESS_SMTP_PASSWORD`` (login),
  ``TRAINPROGRESS_SMTP_FROM`` (default: the user when it is an address, else
  trainprogress@<host name>), ``TRAINPROGRESS_SMTP_STARTTLS`` ("1"/"0"; default on when a user
  is set, so that credentials never travel in clear).

Sending happens in a background thread: ``step()`` only puts a message on a bounded queue.
Each request has a timeout of ``timeout_s``; at most one message per ``min_interval_s`` is
sent per channel, and messages arriving meanwhile are sent together in the next one. When
the queue is full, messages are dropped with one warning; a failing channel is logged with
one warning until it works again. Training never waits on an endpoint, except that
``close()`` gives pending messages (a crash notice) up to ``flush_timeout_s`` to go out.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import re
import smtplib
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from typing import Iterable, Mapping

from .. import format as fmt
from ..report import CRASHED, FINAL, STOPPED, Event, Report, RunInfo
from .base import Sink

logger = logging.getLogger(__name__)

ENV_WEBHOOK = "TRAINPROGRESS_SLACK_WEBHOOK_URL"
ENV_SMTP_HOST = "TRAINPROGRESS_SMTP_HOST"
ENV_SMTP_PORT = "TRAINPROGRESS_SMTP_PORT"
ENV_SMTP_USER = "TRAINPROGRESS_SMTP_USER"
ENV_SMTP_PASSWORD = "TRAINPROGRESS_SMTP_PASSWORD"
ENV_SMTP_FROM = "TRAINPROGRESS_SMTP_FROM"
ENV_SMTP_TO = "TRAINPROGRESS_SMTP_TO"
ENV_SMTP_STARTTLS = "TRAINPROGRESS_SMTP_STARTTLS"

_STOP = object()


class _Webhook:
    """POSTs ``{"text": ...}`` as JSON to the webhook URL. Credentials in the URL
    (``https://user:password@host/...``) are sent as HTTP basic authentication."""

    name = "webhook"

    def __init__(self, url: str) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"{ENV_WEBHOOK} must be an http(s):// URL (its value is not shown)")
        if any(c.isspace() or not c.isprintable() for c in url):
            raise ValueError(f"{ENV_WEBHOOK} contains a space or a control character; remove it, or percent-encode "
                             f"it (%20) (its value is not shown)")
        parts = urllib.parse.urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError(f"{ENV_WEBHOOK} has a port that is not a number (its value is not shown)") from None
        self._secrets = _secret_parts(url)
        self._headers = {"Content-Type": "application/json"}
        if parts.username is not None or parts.password is not None:
            login = f"{urllib.parse.unquote(parts.username or '')}:{urllib.parse.unquote(parts.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(login.encode("utf-8")).decode("ascii")
            host = parts.hostname or ""
            netloc = f"[{host}]" if ":" in host else host
            if parts.port is not None:
                netloc += f":{parts.port}"
            url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        self._url = url

    @property
    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def send(self, subject: str, text: str, timeout_s: float) -> None:
        request = urllib.request.Request(
            self._url, data=json.dumps({"text": text}).encode("utf-8"), headers=self._headers, method="POST",
        )
        with _OPENER.open(request, timeout=timeout_s) as response:  # raises on HTTP >= 400
            response.read()

    def __repr__(self) -> str:
        return "_Webhook(url=***)"


class CrossHostRedirect(urllib.error.URLError):
    """The webhook answered with a redirect to another scheme, host or port, which is not
    followed while the request carries credentials."""

    def __init__(self, code: int) -> None:
        super().__init__("redirect to another host")
        self.code = code


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only within the webhook's own scheme, host and port when the
    request carries an Authorization header: urllib's own handler copies every header,
    credentials included, to whatever host the Location names."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        carries_credentials = req.has_header("Authorization") or "Authorization" in req.unredirected_hdrs
        if carries_credentials and _origin(newurl) != _origin(req.full_url):
            fp.close()
            raise CrossHostRedirect(code)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameHostRedirects())


class _Email:
    """Sends a plain-text e-mail through an SMTP server, with optional STARTTLS and login."""

    name = "email"

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._host = environ[ENV_SMTP_HOST]
        self._to = [a.strip() for a in environ.get(ENV_SMTP_TO, "").split(",") if a.strip()]
        if not self._to:
            raise ValueError(f"{ENV_SMTP_HOST} is set but {ENV_SMTP_TO} is not: set it to the recipients, comma-separated")
        self._user = environ.get(ENV_SMTP_USER) or None
        self._password = environ.get(ENV_SMTP_PASSWORD) or None
        if self._password and not self._user:
            raise ValueError(f"{ENV_SMTP_PASSWORD} is set without {ENV_SMTP_USER}: set both to log in, or neither")
        starttls = environ.get(ENV_SMTP_STARTTLS, "1" if self._user else "0")
        if starttls not in ("0", "1"):
            raise ValueError(f"{ENV_SMTP_STARTTLS} must be 1 or 0")
        self._starttls = starttls == "1"
        port = environ.get(ENV_SMTP_PORT) or ("587" if self._starttls else "25")
        if not port.isdigit():
            raise ValueError(f"{ENV_SMTP_PORT} must be a port number")
        self._port = int(port)
        default_from = self._user if self._user and "@" in self._user else f"trainprogress@{socket.gethostname()}"
        self._from = environ.get(ENV_SMTP_FROM) or default_from

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(part for s in (self._host, self._user, self._password) if s for part in _secret_parts(s))

    def send(self, subject: str, text: str, timeout_s: float) -> None:
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self._from
        message["To"] = ", ".join(self._to)
        message.set_content(text)
        with smtplib.SMTP(self._host, self._port, timeout=timeout_s) as smtp:
            if self._starttls:
                smtp.starttls()
            if self._user:
                smtp.login(self._user, self._password or "")
            smtp.send_message(message)

    def __repr__(self) -> str:
        return "_Email(host=***)"


def channels_from_env(environ: Mapping[str, str]) -> list[_Webhook | _Email]:
    """The channels the environment configures (see the module docstring)."""
    channels: list[_Webhook | _Email] = []
    if environ.get(ENV_WEBHOOK):
        channels.append(_Webhook(environ[ENV_WEBHOOK]))
    if environ.get(ENV_SMTP_HOST):
        channels.append(_Email(environ))
    return channels


# Pieces of a secret shorter than this are not masked on their own ("http", "443", "com"
# would otherwise be starred everywhere); the whole value and its longer pieces are.
MIN_SECRET_PART = 4


def _secret_parts(secret: str) -> tuple[str, ...]:
    """``secret`` and every piece of it that an error message could quote alone: its
    percent-decoded form, and the runs between URL delimiters (user, password, host, each
    path segment, query values), both as written and decoded."""
    pieces = {secret, urllib.parse.unquote(secret)}
    for text in tuple(pieces):
        pieces.update(re.split(r"[/:@?#&=;,\s]+", text))
    return tuple(p for p in pieces if len(p) >= MIN_SECRET_PART)


def _describe_failure(exc: BaseException) -> str:
    """What went wrong, from the exception's type and codes only: an exception's text can
    quote the URL, the host or the server's reply, any of which may hold a secret."""
    if isinstance(exc, CrossHostRedirect):
        return (f"the endpoint redirected to another host (HTTP status {exc.code}); not followed, so that the "
                f"URL's credentials never reach another host. Fix: set the final URL in {ENV_WEBHOOK}")
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP status {exc.code}"
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__} (SMTP code {exc.smtp_code})"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"{type(exc).__name__}: timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


def _mask(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class NotifySink(Sink):
    """Sends notifications through every channel the environment configures; raises a
    ValueError naming the variables when none is.

    ``milestones``: percents of the run to announce (those already passed at a resume are
    skipped). ``timeout_s``: seconds per request. ``min_interval_s``: least seconds between
    two messages. ``queue_size``: messages waiting before new ones are dropped.
    ``flush_timeout_s``: seconds ``close()`` waits for pending messages. ``label`` names the
    run in each message (default: the host name). ``environ``: where to read the variables
    (default ``os.environ``)."""

    def __init__(
        self,
        *,
        milestones: Iterable[float] = (25, 50, 75, 100),
        timeout_s: float = 10.0,
        min_interval_s: float = 60.0,
        queue_size: int = 32,
        flush_timeout_s: float = 10.0,
        label: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._channels = channels_from_env(os.environ if environ is None else environ)
        if not self._channels:
            raise ValueError(
                f"notifications are on but no channel is configured: set {ENV_WEBHOOK}, "
                f"or {ENV_SMTP_HOST} and {ENV_SMTP_TO} (see trainprogress.sinks.notify)"
            )
        self.milestones = tuple(sorted(set(float(m) for m in milestones)))
        if any(not 0 < m <= 100 for m in self.milestones):
            raise ValueError(f"milestones must be percents in (0, 100], got {self.milestones}")
        for name, value in (("timeout_s", timeout_s), ("flush_timeout_s", flush_timeout_s)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
        if not min_interval_s >= 0:
            raise ValueError(f"min_interval_s must be >= 0 seconds, got {min_interval_s!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be an int >= 1, got {queue_size!r}")
        self._timeout_s = timeout_s
        self._min_interval_s = min_interval_s
        self._queue_size = queue_size
        self._flush_timeout_s = flush_timeout_s
        self._label = label or socket.gethostname()
        self._secrets = tuple(s for c in self._channels for s in c.secrets)
        # Unbounded underneath, so that the stop signal always fits; the size is bounded in _put.
        self._queue: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._announced: set[float] = set()
        self._dropped = False
        self._failing: set[str] = set()

    def __repr__(self) -> str:
        return f"NotifySink(channels={[c.name for c in self._channels]}, milestones={self.milestones})"

    # ------------------------------------------------------------------ training thread
    def _put(self, text: str) -> None:
        if self._thread is None:
            return
        if self._queue.qsize() >= self._queue_size:  # only this thread puts, so it cannot overshoot
            if not self._dropped:
                self._dropped = True
                logger.warning("trainprogress: notifications are backing up; dropping new ones (training goes on)")
            return
        self._queue.put_nowait(text)

    def start(self, run: RunInfo) -> None:
        percent = 100.0 * run.start_iter / run.total_iters if run.total_iters else 0.0  # 0: sized in tokens or seconds
        self._announced = {m for m in self.milestones if m <= percent}
        self._thread = threading.Thread(target=self._work, name="trainprogress-notify", daemon=True)
        self._thread.start()
        text = f"🚀 training started: {fmt.format_count(run.total_iters)} iterations" if run.total_iters else "🚀 training started"
        if run.start_iter:
            text += f", resuming at {fmt.format_count(run.start_iter)} ({fmt.format_percent(percent)})"
        self._put(text)

    def report(self, report: Report) -> None:
        position = f"{fmt.format_percent(report.percent)} ({fmt.format_count(report.iteration)}/{fmt.format_count(report.total_iters)})"
        if report.kind == FINAL:
            if report.outcome == CRASHED:
                self._put(f"💥 training crashed at iteration {fmt.format_count(report.iteration)}: {report.error}")
            elif report.outcome == STOPPED:
                self._put(f"⏹️ training stopped at {position}")
            return
        crossed = [m for m in self.milestones if m not in self._announced and report.percent >= m]
        if not crossed:
            return
        self._announced.update(crossed)
        details = [f"elapsed {fmt.format_duration(report.elapsed_s)}"]
        if report.smoothed_loss is not None:
            details.insert(0, f"loss {fmt.format_loss(report.smoothed_loss)}")
        if report.iteration < report.total_iters:
            details.append(f"ETA {fmt.format_eta(report.eta_s)}")
        icon = "✅" if report.iteration >= report.total_iters else "📈"
        self._put(f"{icon} {position} done: {', '.join(details)}")

    def event(self, event: Event) -> None:
        where = f"at iteration {fmt.format_count(event.iteration)}"
        if event.kind == "anomaly":
            self._put(f"⚠️ anomaly {where}: {event.data.get('message', event.data.get('anomaly', ''))}")
        elif event.kind == "stalled":
            self._put(f"⏸️ training stalled {where}: no step for {fmt.format_duration(float(event.data.get('stalled_s', 0.0)))} "
                      f"(last phase: {event.data.get('phase')})")

    def close(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._queue.put_nowait(_STOP)
        self._thread.join(self._flush_timeout_s)
        if self._thread.is_alive():
            logger.warning("trainprogress: notifications still unsent after %.0f s are left behind", self._flush_timeout_s)
        self._thread = None

    # ------------------------------------------------------------------ background thread
    def _work(self) -> None:
        next_send = 0.0
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if not self._stopping.is_set():
                self._stopping.wait(max(0.0, next_send - time.monotonic()))  # the rate limit
            batch, stop = [item], False
            while not self._queue.empty():
                more = self._queue.get_nowait()
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
            self._deliver(batch)
            next_send = time.monotonic() + self._min_interval_s
            if stop:
                return

    def _deliver(self, texts: list[str]) -> None:
        first = texts[0].splitlines()[0]
        subject = f"[trainprogress · {self._label}] {first}" + (f" (+{len(texts) - 1} more)" if len(texts) > 1 else "")
        body = f"[trainprogress · {self._label}]\n" + "\n".join(texts)
        for channel in self._channels:
            try:
                channel.send(subject, body, self._timeout_s)
            except BaseException as exc:  # a failing endpoint must never reach training (SystemExit included)
                if channel.name not in self._failing:
                    self._failing.add(channel.name)
                    logger.warning(
                        "trainprogress: %s notification failed; training goes on (%s)",
                        channel.name, _mask(_describe_failure(exc), self._secrets),
                    )
            else:
                self._failing.discard(channel.name)
