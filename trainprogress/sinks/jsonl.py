"""A JSON Lines log of the run: one JSON object per line, flushed as it is written, appended
to (never truncated), so a resumed run continues the same file.

Schema (version 1). Every line has:

- ``schema``: 1 (this version; a change of meaning or a removed field raises it)
- ``type``: "run_start", "report", "event" or "run_end"
- ``time``: Unix time in seconds (float) when it happened
- ``iteration``: optimizer steps completed at that moment (resumed ones included)

``run_start`` (once per process; a resumed run adds a new one): ``total_iters``,
``start_iter``, ``interval_percent``, ``tokens_per_iter``, ``flops_per_iter``,
``peak_flops`` (FLOP/s), ``peak_flops_source``, ``config`` (the caller's run configuration).

``report`` (each scheduled report, each extra report an anomaly triggered, and the final
summary): ``kind`` ("scheduled", "anomaly", "final"), then the Report's fields under their
own names and units: ``total_iters``, ``percent``, ``elapsed_s``, ``paused_s``, ``eta_s``,
``iters_per_s``, ``ms_per_iter``, ``loss``, ``smoothed_loss``, ``lr``, ``best_val_loss``,
``mfu`` (a fraction), ``peak_flops``, ``peak_flops_source``, ``tokens_processed``,
``tokens_per_s``, ``start_iter``, ``memory`` (a list of {``device``, ``used_bytes``,
``total_bytes``, ``reserved_bytes``, ``peak_bytes``, ``name``}), ``metrics`` (the caller's
named values), ``sections`` (a list of {``title``, ``lines``: [[label, value], ...]}),
``anomalies`` (a list of {``kind``, ``message``, ``since_iter``}), and ``scalars``: the
flat slash-namespaced numbers that TensorBoard and W&B receive (``train/loss``,
``perf/mfu_pct``, ``mem/cuda_used_gib``, ``metrics/<name>``, ...).

``event``: ``event`` names what happened and ``data`` holds its details. The tracker sends
"pause" ({name, duration_s}), "anomaly" ({anomaly, message, since_iter}), "anomaly_blip"
({anomaly, message}: seen at one check, not an anomaly unless it persists),
"anomaly_cleared" ({anomaly}) and "crash" ({error}); callers add their own with
``tracker.event(kind, **data)``, e.g. "phase_change".

``run_end`` (when the tracker closes): ``status`` is "completed" (all iterations done),
"crashed" (a crash event came first; ``error`` says what) or "stopped" (ended early).

A value that is unknown is null; so is a non-finite number (NaN, infinity), which strict
JSON cannot hold (the anomaly that reports it says what it was). Values JSON has no type for
are written as their str().
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from ..report import FINAL, Report
from .base import Event, RunInfo, Sink

SCHEMA_VERSION = 1


def _clean(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None, through lists and mappings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def report_record(report: Report) -> dict[str, Any]:
    """The JSONL object of a report (before cleaning), as documented in the module."""
    fields = {name: getattr(report, name) for name in (
        "kind", "total_iters", "percent", "elapsed_s", "paused_s", "eta_s", "iters_per_s",
        "ms_per_iter", "loss", "smoothed_loss", "lr", "best_val_loss", "mfu", "peak_flops",
        "peak_flops_source", "tokens_processed", "tokens_per_s", "start_iter",
    )}
    return {
        "type": "report",
        "time": report.wall_time,
        "iteration": report.iteration,
        **fields,
        "memory": [asdict(m) for m in report.memory],
        "metrics": dict(report.metrics),
        "sections": [{"title": s.title, "lines": [list(line) for line in s.lines]} for s in report.sections],
        "anomalies": [asdict(a) for a in report.anomalies],
        "scalars": report.scalars(),
    }


class JsonlSink(Sink):
    """Appends one JSON object per line to ``path`` (see the module docstring for the
    schema). The file and its parent folders are created when the run starts."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise ValueError(f"JSONL log path {self.path} is a folder; pass a file path such as {self.path / 'progress.jsonl'}")
        self._file: TextIO | None = None
        self._crash: str | None = None

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        line = json.dumps(_clean({"schema": SCHEMA_VERSION, **record}), ensure_ascii=False, allow_nan=False, default=str)
        self._file.write(line + "\n")
        self._file.flush()

    def start(self, run: RunInfo) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        self._write({
            "type": "run_start",
            "time": run.wall_time,
            "iteration": run.start_iter,
            "total_iters": run.total_iters,
            "start_iter": run.start_iter,
            "interval_percent": run.interval_percent,
            "tokens_per_iter": run.tokens_per_iter,
            "flops_per_iter": run.flops_per_iter,
            "peak_flops": run.peak_flops,
            "peak_flops_source": run.peak_flops_source,
            "config": dict(run.config),
        })

    def report(self, report: Report) -> None:
        self._write(report_record(report))
        if report.kind == FINAL:
            if self._crash is not None:
                status = "crashed"
            else:
                status = "completed" if report.iteration >= report.total_iters else "stopped"
            end = {"type": "run_end", "time": report.wall_time, "iteration": report.iteration, "status": status}
            if self._crash is not None:
                end["error"] = self._crash
            self._write(end)

    def event(self, event: Event) -> None:
        if event.kind == "crash":
            self._crash = str(event.data.get("error", ""))
        self._write({"type": "event", "time": event.wall_time, "iteration": event.iteration, "event": event.kind, "data": dict(event.data)})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
