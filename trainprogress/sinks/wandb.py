"""Weights & Biases: each report's scalars (``Report.scalars()``, the same keys as TensorBoard
and the JSONL log) and the run configuration. Works offline (``WANDB_MODE=offline``), and
with every other setting W&B reads from its own environment variables (WANDB_API_KEY,
WANDB_DIR, WANDB_PROJECT, ...)."""

from __future__ import annotations

from typing import Any

from ..report import CRASHED, FINAL, Report, RunInfo
from .base import Sink


def _import_wandb() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise ImportError("the W&B sink needs wandb: pip install wandb (or pip install trainprogress[wandb])") from exc
    return wandb


class WandbSink(Sink):
    """Logs to a W&B run: a new one made at the run's start with ``wandb.init(project=...,
    name=..., config=...)`` plus any further ``init_kwargs``, or the caller's own run when
    one is already active (then it is left open at the end).

    A run of its own is logged at ``step`` = iteration, like TensorBoard's global step. In
    the caller's run, whose steps the caller owns, the reports are logged without a step and
    ``progress/iteration`` is declared their x-axis. The config holds the caller's run config
    plus a ``trainprogress`` entry (total_iters, start_iter, tokens_per_iter, ...). The final
    summary goes to the run summary under ``final/<key>``. A crash finishes the run with
    exit code 1."""

    def __init__(self, project: str | None = None, *, name: str | None = None, **init_kwargs: Any) -> None:
        self._wandb = _import_wandb()  # fail at build time, not mid-run
        self.project = project
        self.name = name
        self._init_kwargs = init_kwargs
        self._run: Any = None
        self._owns_run = False
        self._exit_code = 0

    def start(self, run: RunInfo) -> None:
        wandb = self._wandb
        config = {**dict(run.config), "trainprogress": run.sizes()}
        if wandb.run is not None:
            self._run, self._owns_run = wandb.run, False
            self._run.config.update(config, allow_val_change=True)
            for prefix in ("train", "progress", "time", "perf", "mem", "metrics"):
                self._run.define_metric(f"{prefix}/*", step_metric="progress/iteration")
        else:
            self._run = wandb.init(project=self.project, name=self.name, config=config, **self._init_kwargs)
            self._owns_run = True

    def report(self, report: Report) -> None:
        if self._run is None:
            return
        scalars = report.scalars()
        if report.kind == FINAL:
            self._exit_code = 1 if report.outcome == CRASHED else 0
            self._run.summary.update({f"final/{key}": value for key, value in scalars.items()})
        elif self._owns_run:
            self._run.log(scalars, step=report.iteration)
        else:
            self._run.log(scalars)

    def close(self) -> None:
        if self._run is not None and self._owns_run:
            self._run.finish(exit_code=self._exit_code)
        self._run = None
