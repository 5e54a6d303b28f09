"""Shared test helpers: a fake clock, a sink that keeps what it is sent, the repository's
scripts run as real processes, a webhook endpoint on 127.0.0.1, and readers of JSONL logs
and offline W&B runs."""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from trainprogress import ProgressTracker, Sink
from trainprogress.anomaly.config import AnomalyConfig

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    """A clock the test advances by hand, in seconds."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSink(Sink):
    """Keeps every message, in order."""

    wants_ticks = False

    def __init__(self) -> None:
        self.started = []
        self.reports = []
        self.events = []
        self.ticks = []
        self.closed = 0

    def start(self, run):
        self.started.append(run)

    def report(self, report):
        self.reports.append(report)

    def tick(self, tick):
        self.ticks.append(tick)

    def event(self, event):
        self.events.append(event)

    def close(self):
        self.closed += 1

# train.py as a tiny model: 40 steps take seconds on a CPU. Anomaly detection is off: its
# extra reports (this tiny model's gradient spikes) would blur the report schedule under test.
TINY_TRAIN = ["--anomaly_detection=False", "--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32",
              "--batch_size=4", "--gradient_accumulation_steps=1", "--learning_rate=3e-3", "--min_lr=3e-4",
              "--lr_decay_iters=40", "--warmup_iters=4", "--eval_interval=20", "--eval_iters=2", "--report_interval=10",
              "--log_interval=10", "--device=cpu", "--compile=False", "--dropout=0.0"]

# train_nanecho.py as a tiny model (1 layer, 32 wide, block 32, batch 8): connections grow
# every 10 steps, evaluations every 20, a report every 10%.
NANECHO_TINY = ["--preset", "tiny", "--n_layer", "1", "--n_embd", "32", "--n_head", "2",
                "--block_size", "32", "--batch_size", "8", "--eval_interval", "20", "--eval_iters", "2",
                "--connection_growth_interval", "10", "--report_interval", "10", "--sample_tokens", "24"]


# Multi-process tests run CPU processes on gloo, also on a GPU host, which may have fewer GPUs
# than the test has processes.
CPU_PROCESSES = {"CUDA_VISIBLE_DEVICES": ""}


def run_script(script: str, *args: str, env: dict[str, str] | None = None, processes: int = 1, timeout: float = 300,
               check: bool = True) -> subprocess.CompletedProcess:
    """Run ``script`` (a path from the repository root) with ``args`` as a real process in the
    repository root, under torchrun with ``processes`` CPU processes (gloo) when more than
    one, with ``env`` added to the environment. One thread per process unless ``env`` says
    otherwise: the tests' tiny models gain nothing from more, and the processes of a test
    run share the cores. With ``check`` the run must exit 0 (the assertion shows the end of
    the output)."""
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    cpu_only = CPU_PROCESSES if processes > 1 else {}
    result = subprocess.run([*launcher, str(REPO / script), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1", **cpu_only, **(env or {})})
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def record_lr_schedules(monkeypatch, integration) -> list:
    """Replace the ProgressTracker that the integration module ``integration`` builds with one
    that records the ``lr_schedule`` it is given; returns the list the schedules go into."""
    given = []

    class RecordingTracker(integration.ProgressTracker):
        def __init__(self, *args, **kwargs):
            given.append(kwargs.get("lr_schedule"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(integration, "ProgressTracker", RecordingTracker)
    return given


def read_jsonl(path: Path) -> list[dict]:
    """Every record of a JSONL log, in order."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


TOKEN = "T0SECRET/B0SECRET/xoxb-s3cr3t-webhook-token"


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing: the test's stderr stays the library's alone."""

    def log_message(self, *args):
        pass


def serve(handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server with ``handler`` on a free port of ``host``, serving on a daemon thread."""
    server = ThreadingHTTPServer((host, 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Webhook:
    """An incoming-webhook endpoint that records each POST, answering after ``delay_s``."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.posts: list[tuple[str, str, dict]] = []
        outer = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append((self.path, self.headers["Content-Type"], json.loads(body)))
                time.sleep(delay_s)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up waiting (the slow-endpoint test)
                    pass

        self.server = serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{TOKEN}"

    def texts(self) -> str:
        return "\n".join(body["text"] for _, _, body in self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def read_records(path):
    """The records of a .wandb file: a 7-byte header, then LevelDB-log style chunks
    (crc32 4 bytes, length 2, type 1: full/first/middle/last) in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, partial, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if pos + 7 + length > len(data):  # still being written
            break
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, or last of a split record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(partial + chunk if kind == 4 else chunk)
            records.append(record)
            partial = b""
        elif kind in (2, 3):
            partial += chunk
    return records


def items(entries):
    return {"/".join(e.nested_key) if e.nested_key else e.key: json.loads(e.value_json) for e in entries}


def finished_records(tmp_path):
    """The records of the one offline run under ``tmp_path``, once W&B's service process,
    which writes them after ``finish()`` returns, has written the closing exit record."""
    (path,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    deadline = time.monotonic() + 30
    while True:
        records = read_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_with_sinks(sinks, total=200, *, nan_at=None, crash_at=None, start_iter=0, events=0):
    """A simulated run of ``total`` steps of 0.1 s (fake clock) reporting every 5% to ``sinks``,
    with anomaly detection: a NaN loss at ``nan_at``, a RuntimeError at ``crash_at``, and an
    injected anomaly event at each of the first ``events`` steps."""
    clock = FakeClock()
    tracker = ProgressTracker(
        total, start_iter=start_iter, interval_percent=5, sinks=sinks, clock=clock,
        anomaly=AnomalyConfig(clear_after_checks=2),
    )
    with tracker:
        for it in range(start_iter + 1, total + 1):
            clock.advance(0.1)
            tracker.step(loss=math.nan if it == nan_at else 2.0, lr=1e-3)
            if it <= events:
                tracker.event("anomaly", anomaly="loss_spike", message=f"injected {it}")
            if it == crash_at:
                raise RuntimeError("CUDA out of memory")
    return tracker


def png_size(path) -> tuple[int, int]:
    """A PNG's (width, height) in pixels, the file closed again."""
    from PIL import Image

    with Image.open(path) as image:
        return image.size
