"""A JSON Lines log of the run: one JSON object per line, flushed as it is written, appended
to (never truncated), so a resumed run continues the same file. A last line left partial by
a killed process is ended before appending, so that it stays one unreadable line (readers
skip it) and the next run's records start on a line of their own.

Schema (version 1). Every line has:

- ``schema``: 1 (this version; a change of meaning or a removed field raises it)
- ``type``: "run_start", "report", "event" or "run_end"
- ``time``: Unix time in seconds (float) when it happened
- ``iteration``: optimizer steps completed at that moment (resumed ones included)

``run_start`` (once per process; a resumed run adds a new one): ``total_iters`` (0 when
the run is sized in tokens or seconds),
``start_iter``, ``interval_percent``, ``tokens_per_iter``, ``flops_per_iter``,
``peak_flops`` (FLOP/s), ``peak_flops_source``, ``config`` (the caller's run configuration).

``report`` (each scheduled report, each extra report an anomaly triggered, and the final
summary): every field of the Report under its own name and unit, ``wall_time`` being
``time``; null where the Report has None. Listed here from the Report's own field
descriptions (``trainprogress.report.field_docs``), their one source:

{report_fields}

and ``scalars``: the flat slash-namespaced numbers that TensorBoard and W&B receive
(``train/loss``, ``perf/mfu_pct``, ``mem/cuda_used_gib``, ``metrics/<name>``, ``cost/energy_j``, ...).

Cost: when the tracker's ``cost=`` is on (``trainprogress.cost``; absent otherwise), every
``report`` also carries the cost figures as flat keys, ``_total`` ones projected to the
run's end (in the final summary: the run's own figures):

- ``devices``: devices rented (the world size, one per process, unless given)
- ``device_hours``, ``device_hours_total``: devices x wall hours so far / at the end (elapsed + ETA)
- ``energy_j``, ``energy_total_j``: joules the hardware counters measured so far / projected to the end
  at the mean power since metering began; null when not measured
- ``power_w``: that mean power, in watts
- ``energy_source``: "nvml" (the GPU's counter), "rapl" (CPU packages), "nvml+rapl", or null
- ``energy_note``: why energy is not (fully) measured, e.g. "energy: not measured (no NVIDIA GPU;
  no readable RAPL)", "GPU: counter not supported on this GPU", "GPU: pip install trainprogress[cost]"
- ``cost``, ``cost_total``: money so far / at the end at the prices given, in ``currency``
- ``currency``: as given, or null
- ``co2_kg``, ``co2_total_kg``: kilograms of CO2 at the grid intensity given

``event``: ``event`` names what happened and ``data`` holds its details. The tracker sends
"pause" ({name, duration_s}), "anomaly" ({anomaly, message, since_iter}), "anomaly_blip"
({anomaly, message}: seen at one check, not an anomaly unless it persists),
"anomaly_cleared" ({anomaly}, and a message for slow convergence) and "crash" ({error}); with
``target_loss``, "anomaly" with anomaly "slow_convergence" says the whole forecast band lies
above the target; callers add their own with
``tracker.event(kind, **data)``, e.g. "phase_change".

``run_end`` (when the tracker closes): ``status`` is the final report's ``outcome``:
"completed" (all iterations done), "crashed" (ended by an exception; ``error`` says which)
or "stopped" (ended early).

``gap`` (only after the file could not be written for a while, say a full disk): records
that had to be dropped stood here. ``records`` (how many), ``reports`` (how many of them
were reports), ``from_iteration`` and ``to_iteration`` (the first and last dropped record's
iteration), ``error`` (why writing failed); ``iteration`` is ``to_iteration``. A failed
write never switches the log off: records are kept in memory (up to
``JsonlSink.MAX_PENDING_BYTES``) and written once the file takes writes again, and the log
is retried with back-off (``RETRY_FIRST_S`` doubling to ``RETRY_MAX_S``, and for up to
``CLOSE_RETRY_S`` at close); only what passes that bound is dropped, and a gap says so.

A value that is unknown is null; so is a non-finite number (NaN, infinity), which strict
JSON cannot hold (the anomaly that reports it says what it was). Values JSON has no type for
are written as their str().
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, BinaryIO, Mapping

from ..report import CRASHED, FINAL, Event, Report, RunInfo, field_docs
from .base import Sink
from .retrying_writer import Gap, RetryingWriter

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


def _shallow_fields(instance: Any) -> dict[str, Any]:
    """A dataclass instance's fields by name (unlike dataclasses.asdict, values are not
    deep-copied: a caller's section value may be anything)."""
    return {field.name: getattr(instance, field.name) for field in fields(instance)}


# Report fields whose record key differs from the field's name.
RECORD_KEYS = {"wall_time": "time"}
# Fields every line has (time, iteration) or that are flat keys (the Cost list above).
_LISTED_ELSEWHERE = ("iteration", "wall_time", "run_cost")

if __doc__:  # None under python -OO
    __doc__ = __doc__.replace("{report_fields}", "\n".join(
        f"- ``{name}``: {doc}" for name, doc in field_docs().items() if name not in _LISTED_ELSEWHERE))


def report_record(report: Report) -> dict[str, Any]:
    """The JSONL object of a report (before cleaning), as documented in the module: every
    Report field, nested dataclasses as objects, plus ``type`` and ``scalars``."""
    record: dict[str, Any] = {"type": "report", "time": report.wall_time, "iteration": report.iteration}
    for name, value in _shallow_fields(report).items():
        if name == "run_cost":  # flat keys, present only when cost is on
            record.update(value.record() if value is not None else {})
            continue
        if isinstance(value, tuple):  # memory, sections, anomalies: tuples of dataclasses
            value = [_shallow_fields(item) for item in value]
        elif isinstance(value, Mapping):  # metrics
            value = dict(value)
        record[RECORD_KEYS.get(name, name)] = value
    record["scalars"] = report.scalars()
    return record


class JsonlSink(Sink):
    """Appends one JSON object per line to ``path`` (see the module docstring for the
    schema). The file and its parent folders are created when the run starts."""

    # Records kept in memory while the file cannot be written (a report line is ~2 KB).
    MAX_PENDING_BYTES = 8 << 20
    # Back-off between two tries after a failed write, and how long close() keeps trying.
    RETRY_FIRST_S = 0.05
    RETRY_MAX_S = 5.0
    CLOSE_RETRY_S = 5.0

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"jsonl must be a file path (str or Path), got {type(path).__name__} {path!r}; "
                            f"pass e.g. jsonl='out/progress.jsonl'")
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise ValueError(f"JSONL log path {self.path} is a folder; pass a file path such as {self.path / 'progress.jsonl'}")
        self._file: BinaryIO | None = None
        self._writer: RetryingWriter | None = None

    def _open(self) -> BinaryIO:
        """The log, opened for appending, unbuffered: a write says how much reached the file."""
        return open(self.path, "ab", buffering=0)

    @staticmethod
    def _gap_line(gap: Gap) -> bytes:
        record = {"schema": SCHEMA_VERSION, "type": "gap", "time": time.time(), "iteration": gap.to_iteration,
                  "records": gap.records, "reports": gap.reports, "from_iteration": gap.from_iteration,
                  "to_iteration": gap.to_iteration, "error": gap.error}
        return (json.dumps(record) + "\n").encode("utf-8")

    def _ends_torn(self) -> bool:
        """Whether the existing log ends inside a line (its last byte is not a newline)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() == 0:
                    return False
                f.seek(-1, os.SEEK_END)
                return f.read(1) != b"\n"
        except FileNotFoundError:
            return False

    def _write(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            return
        line = json.dumps(_clean({"schema": SCHEMA_VERSION, **record}), ensure_ascii=False, allow_nan=False, default=str)
        self._writer.write((line + "\n").encode("utf-8"), record["iteration"], record["type"] == "report")

    def start(self, run: RunInfo) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = self._ends_torn()
        self._file = self._open()
        self._writer = RetryingWriter(
            self._file, f"the JSONL log {self.path}", self._gap_line, max_pending_bytes=self.MAX_PENDING_BYTES,
            retry_first_s=self.RETRY_FIRST_S, retry_max_s=self.RETRY_MAX_S,
        )
        if torn:  # a process killed mid-write: end its partial line so this run's start is whole
            self._writer.write(b"\n", run.start_iter, False)
        self._write({
            "type": "run_start",
            "time": run.wall_time,
            "iteration": run.start_iter,
            **run.sizes(),
            "config": dict(run.config),
        })

    def report(self, report: Report) -> None:
        self._write(report_record(report))
        if report.kind == FINAL:
            end = {"type": "run_end", "time": report.wall_time, "iteration": report.iteration, "status": report.outcome}
            if report.outcome == CRASHED:
                end["error"] = report.error
            self._write(end)

    def event(self, event: Event) -> None:
        self._write({"type": "event", "time": event.wall_time, "iteration": event.iteration, "event": event.kind, "data": dict(event.data)})

    def close(self) -> None:
        if self._writer is not None:
            self._writer.drain(self.CLOSE_RETRY_S)
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None
