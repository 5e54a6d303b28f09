"""The progress tracker of a trainer, built from its configuration.

A trainer's config dataclass inherits :class:`ReportingConfig` for the reporting keys and
calls :func:`build_tracker` once it knows the run's size. The keys for sinks (bar, JSONL
log, TensorBoard, W&B, notifications) and anomaly detection live here, so every trainer
turns them on the same way: a config key, or a flag such as --tensorboard_log=True. The
JSONL log and its picture are on by default (--jsonl_log=False turns both off), and
:func:`log_location_line` is the run's last line saying where they are.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
from dataclasses import asdict, dataclass

from trainkit.config import ConfigError, opt, require

__all__ = ["ReportingConfig", "build_tracker", "log_location_line"]


@dataclass
class ReportingConfig:
    """Reporting keys shared by the trainers: how often, and which sinks."""

    report_interval: float = opt(1.0, "percent of the run between progress reports, in (0, 100]; fractions such as 0.5 work")
    ascii_report: bool = opt(False, "plain ASCII report blocks without emoji, for log files and plain terminals")
    progress_bar: bool = opt(False, "a live tqdm bar between the report blocks (plain lines when stderr is no terminal)")
    jsonl_log: bool = opt(True, "append every report and event to out_dir/progress.jsonl and, with matplotlib "
                                "installed (the plot extra), draw out_dir/progress.png when the run ends; False: neither")
    tensorboard_log: bool = opt(False, "write the report's scalars to out_dir/tensorboard for TensorBoard")
    wandb_log: bool = opt(False, "log the report's scalars and the config to Weights & Biases (WANDB_MODE=offline works)")
    wandb_project: str = opt("trainprogress", "W&B project")
    wandb_run_name: str = opt("", "W&B run name; empty: W&B picks one")
    notify: bool = opt(False, "webhook/e-mail notifications at start, 25/50/75/100%, anomalies and crashes; "
                              "endpoints from TRAINPROGRESS_SLACK_WEBHOOK_URL / TRAINPROGRESS_SMTP_* variables")
    anomaly_detection: bool = opt(True, "watch for NaN loss, loss spikes, slowdowns, memory growth and exploding "
                                        "gradients; report at once and more often while one lasts")
    cost_report: bool = opt(False, "a 💰 Cost block: device-hours, energy from the GPU's/CPU's own counters, money and "
                                   "CO2, so far and at the end (on by itself when a price or grid intensity is given)")
    price_per_device_hour: float | None = opt(None, "money per device (GPU) per hour, for the cost block")
    price_per_kwh: float | None = opt(None, "money per kWh of measured energy, for the cost block")
    currency: str = opt("", "the currency shown with the money (e.g. USD); empty: bare numbers")
    grid_kg_co2_per_kwh: float | None = opt(None, "the grid's kg of CO2 per kWh, for the CO2 figures")
    target_loss: float = opt(0.0, "the training loss the run should reach; > 0: from half-way on, warn when the whole "
                                  "final-loss forecast band lies above it (0: no target)")

    def __post_init__(self) -> None:
        require(
            0 < self.report_interval <= 100,
            f"report_interval must be a percent in (0, 100], got {self.report_interval}. Fix: e.g. --report_interval=1.",
        )
        for key in ("price_per_device_hour", "price_per_kwh", "grid_kg_co2_per_kwh"):
            value = getattr(self, key)
            require(value is None or 0 <= value < float("inf"),
                    f"{key} must be a number >= 0, got {value}. Fix: e.g. --{key}=2.5, or leave it out.")

        require(self.target_loss >= 0, f"target_loss must be >= 0 (0: no target), got {self.target_loss}. "
                                       "Fix: e.g. --target_loss=1.5.")

    def cost_config(self):
        """The tracker's ``cost=``: a CostConfig when the cost block is on, else False."""
        prices = (self.price_per_device_hour, self.price_per_kwh, self.grid_kg_co2_per_kwh)
        if not self.cost_report and all(p is None for p in prices):
            return False
        from trainprogress.cost import CostConfig

        return CostConfig(price_per_device_hour=self.price_per_device_hour, price_per_kwh=self.price_per_kwh,
                          currency=self.currency or None, grid_kg_co2_per_kwh=self.grid_kg_co2_per_kwh)


def build_tracker(
    cfg: ReportingConfig,
    total_iters: int,
    *,
    out_dir: str,
    tokens_per_iter: int | None = None,
    flops_per_iter: float | None = None,
    start_iter: int = 0,
    is_master: bool | None = None,
    precision: str | None = None,
    device: object = None,
    cross_rank: bool = False,
    lr_schedule=None,
):
    """A ProgressTracker for ``total_iters`` optimizer steps, resumed at ``start_iter``,
    reporting every ``cfg.report_interval`` percent to the sinks the config turns on (log
    files go into ``out_dir``). ``tokens_per_iter`` is the tokens one optimizer step
    consumes across all processes; ``flops_per_iter`` the FLOPs one step does on this
    process's device (so MFU is per device); ``precision`` ("bf16", "fp16", "tf32", "fp32")
    picks the device's peak from the tracker's table, for ``device`` (the torch.device the
    run trains on). ``cross_rank`` (under torchrun) adds every rank's figures and the loss
    averaged over ranks to each report. The hang watchdog is always on: it speaks only when
    steps stop coming for minutes. The cost keys (``cfg.cost_config()``) turn on the cost
    block. ``lr_schedule`` (1-based step -> learning rate) sharpens the final-loss forecast;
    ``cfg.target_loss`` > 0 turns on its slow-convergence warning. The whole config is passed on as the
    run's configuration (sinks such as W&B record it). Only the master's sinks ever open
    anything."""
    from trainprogress import ProgressTracker, build_sinks

    try:
        sinks = build_sinks(
            ascii=True if cfg.ascii_report else None,
            bar=cfg.progress_bar,
            jsonl=os.path.join(out_dir, "progress.jsonl") if cfg.jsonl_log else None,
            tensorboard=os.path.join(out_dir, "tensorboard") if cfg.tensorboard_log else None,
            wandb=cfg.wandb_project if cfg.wandb_log else None,
            wandb_run_name=cfg.wandb_run_name or None,
            notify=cfg.notify,
        )
    except (ImportError, ValueError) as exc:  # a missing package or notification setting
        raise ConfigError(str(exc)) from exc
    if cfg.jsonl_log and importlib.util.find_spec("matplotlib") is not None:
        from trainprogress.sinks.plot import ProgressPlotSink

        # After the JSONL sink: at the end of the run (completed, stopped or crashed) it
        # draws out_dir/progress.png from the finished log.
        sinks.append(ProgressPlotSink(os.path.join(out_dir, "progress.jsonl"), os.path.join(out_dir, "progress.png")))
    return ProgressTracker(
        total_iters,
        start_iter=start_iter,
        interval_percent=cfg.report_interval,
        tokens_per_iter=tokens_per_iter,
        flops_per_iter=flops_per_iter,
        is_master=is_master,
        sinks=sinks,
        precision=precision,
        device=device,
        cross_rank=cross_rank,
        watchdog=True,
        anomaly=True if cfg.anomaly_detection else None,
        cost=cfg.cost_config(),
        run_config=asdict(cfg),
        lr_schedule=lr_schedule,
        target_loss=cfg.target_loss if cfg.target_loss > 0 else None,
    )


def log_location_line(cfg: ReportingConfig, out_dir: str) -> str | None:
    """Where the run's log and picture are and the commands that show them, for the run's
    last line; None when the run keeps no log (--jsonl_log=False, or it never started one)."""
    log, picture = os.path.join(out_dir, "progress.jsonl"), os.path.join(out_dir, "progress.png")
    if not cfg.jsonl_log or not os.path.exists(log):
        return None
    drawn = picture if os.path.exists(picture) else "none (pip install 'trainprogress[plot]' to draw it)"
    folder = shlex.quote(out_dir)
    return f"log: {log}  picture: {drawn}  (trainprogress summary {folder}, trainprogress watch {folder})"
