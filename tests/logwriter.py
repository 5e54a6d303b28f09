"""Real progress logs for the reader's tests: a real tracker writes through the real JSONL
sink. Run as a script, it is a training process of its own that another process can watch:

    python tests/logwriter.py PATH TOTAL STEP_SECONDS
"""

from __future__ import annotations

import math
import sys
import time

from trainprogress import ProgressTracker
from trainprogress.anomaly.config import AnomalyConfig
from trainprogress.sinks.jsonl import JsonlSink


def write_log(path, total, *, start_iter=0, stop_at=None, crash_at=None, nan_at=(), interval=10.0,
              eval_every=None, phases=(), clock=None, step_s=0.0, config=None):
    """Train a pretend run of ``total`` iterations from ``start_iter`` up to ``stop_at``
    (default: the end), raising at ``crash_at``; returns the reports the tracker made, in
    order. ``eval_every`` adds eval and checkpoint pauses and a val_loss; ``phases`` is a
    list of (iteration, name) phase changes."""
    reports = []

    class Keep(JsonlSink):
        def report(self, report):
            reports.append(report)
            super().report(report)

    kwargs = {"clock": clock} if clock is not None else {}
    tracker = ProgressTracker(
        total, start_iter=start_iter, interval_percent=interval, sinks=[Keep(path)], tokens_per_iter=256,
        flops_per_iter=1e9, peak_flops=1e12, anomaly=AnomalyConfig(clear_after_checks=2) if nan_at else None,
        run_config=config or {"out_dir": "out", "max_iters": total}, **kwargs,
    )
    try:
        with tracker:
            for it in range(start_iter + 1, (stop_at or total) + 1):
                if clock is not None:
                    clock.advance(0.05)
                if step_s:
                    time.sleep(step_s)
                values = {}
                for at, name in phases:
                    if it == at:
                        tracker.event("phase_change", phase=name)
                if eval_every and it % eval_every == 0:
                    with tracker.pause("eval"):
                        if clock is not None:
                            clock.advance(0.5)
                    with tracker.pause("checkpoint"):
                        if clock is not None:
                            clock.advance(0.1)
                    values["val_loss"] = 3.0 - it / total + 0.1
                tracker.step(loss=math.nan if it in nan_at else 3.0 - it / total, lr=1e-3 * (1 - it / total), **values)
                if it == crash_at:
                    raise RuntimeError("CUDA error: device-side assert triggered")
    except RuntimeError:
        pass
    return reports


if __name__ == "__main__":
    out, total, step_seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    write_log(out, total, step_s=step_seconds, eval_every=total // 4)
