"""TensorBoard: each report's scalars (``Report.scalars()``: train/loss, perf/mfu_pct,
mem/cuda_used_gib, metrics/<name>, ...) at global step = iteration, through PyTorch's
``torch.utils.tensorboard.SummaryWriter``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..report import FINAL, Report, RunInfo
from .base import Sink


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ImportError(
            "the TensorBoard sink needs torch and tensorboard: pip install tensorboard "
            "(or pip install trainprogress[tensorboard])"
        ) from exc
    return SummaryWriter


class TensorBoardSink(Sink):
    """Writes event files under ``log_dir`` (view them with ``tensorboard --logdir``).

    Scheduled and anomaly reports are logged at their iteration; the final summary only
    when the run stopped past the last logged step (its speed is the run's average). A
    resumed run purges events after its resume step, as TensorBoard users expect of a
    restart from a checkpoint. The run configuration is stored once as text."""

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self._writer_class = _summary_writer_class()  # fail at build time, not mid-run
        self.log_dir = Path(log_dir)
        self._writer: Any = None
        self._last_step = -1

    def start(self, run: RunInfo) -> None:
        self._writer = self._writer_class(
            log_dir=str(self.log_dir), purge_step=run.start_iter if run.start_iter > 0 else None,
        )
        self._last_step = run.start_iter
        if run.config:
            text = json.dumps(dict(run.config), indent=2, default=str)
            # Markdown: indenting by four spaces shows it as a code block.
            self._writer.add_text("run/config", "    " + text.replace("\n", "\n    "), global_step=run.start_iter)

    def report(self, report: Report) -> None:
        if self._writer is None or (report.kind == FINAL and report.iteration <= self._last_step):
            return
        for key, value in report.scalars().items():
            self._writer.add_scalar(key, value, global_step=report.iteration, walltime=report.wall_time)
        self._writer.flush()  # reports are rare: show each at once
        self._last_step = report.iteration

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
