"""The progress tracker of a trainer, built from its configuration.

A trainer's config dataclass inherits :class:`ReportingConfig` for the reporting keys and
calls :func:`build_tracker` once it knows the run's size. Keys for sinks (log files,
TensorBoard, W&B) belong here too, so every trainer gets them the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from trainkit.config import opt, require

__all__ = ["ReportingConfig", "build_tracker"]


@dataclass
class ReportingConfig:
    """Reporting keys shared by the trainers."""

    report_interval: float = opt(1.0, "percent of the run between progress reports, in (0, 100]")

    def __post_init__(self) -> None:
        require(
            0 < self.report_interval <= 100,
            f"report_interval must be a percent in (0, 100], got {self.report_interval}. Fix: e.g. --report_interval=1.",
        )


def build_tracker(
    cfg: ReportingConfig,
    total_iters: int,
    *,
    tokens_per_iter: int | None = None,
    flops_per_iter: float | None = None,
    start_iter: int = 0,
    is_master: bool | None = None,
    precision: str | None = None,
):
    """A ProgressTracker for ``total_iters`` optimizer steps, resumed at ``start_iter``,
    reporting every ``cfg.report_interval`` percent. ``tokens_per_iter`` is the tokens one
    optimizer step consumes across all processes; ``flops_per_iter`` the FLOPs one step does
    on this process's device (so MFU is per device); ``precision`` ("bf16", "fp16", "tf32",
    "fp32") picks the device's peak from the tracker's table. The whole config is passed on
    as the run's configuration (sinks such as W&B record it)."""
    from trainprogress import ProgressTracker

    return ProgressTracker(
        total_iters,
        start_iter=start_iter,
        interval_percent=cfg.report_interval,
        tokens_per_iter=tokens_per_iter,
        flops_per_iter=flops_per_iter,
        is_master=is_master,
        precision=precision,
        run_config=asdict(cfg),
    )
