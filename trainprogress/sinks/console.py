"""The console block: the project's reference report format, on any text stream."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from typing import TextIO

from .. import format as fmt
from ..report import BLOCKS, COMPLETED, CRASHED, FINAL, STOPPED, Event, MemoryStats, Report
from .base import Sink

RULE = "=" * 80
BULLET = "   • "

# What ASCII mode writes instead of the non-ASCII characters the blocks use.
_ASCII = str.maketrans({"•": "-", "×": "x", "σ": "sigma", "—": "-", "–": "-", "…": "...", "█": "#", "░": "."})

_MEMORY_LABELS = {"cuda": "GPU Memory", "mps": "MPS Memory", "cpu": "Process Memory (RSS)"}


def _memory_line(mem: MemoryStats) -> str:
    text = fmt.format_memory(mem.used_bytes, mem.total_bytes)
    details = []
    if mem.peak_bytes is not None:
        details.append(f"peak {fmt.format_gib(mem.peak_bytes)}")
    if mem.reserved_bytes is not None and mem.device == "cuda":
        details.append(f"reserved {fmt.format_gib(mem.reserved_bytes)}")
    if details:
        text += f" ({', '.join(details)})"
    return f"{_MEMORY_LABELS.get(mem.device, mem.device)}: {text}"


def _block(title: str, lines: list[str]) -> list[str]:
    return [title, *(BULLET + line for line in lines)] if lines else []


def _label(name: str) -> str:
    """A named value's label: "grad_norm" -> "Grad Norm"; names with a "/" stay as given."""
    return name if "/" in name else name.replace("_", " ").title()


# The built-in blocks' titles, by the name a Section joins them with (Section.into).
_TITLES = {"metrics": "📊 Metrics:", "time": "⏱️ Time:", "memory": "💾 Memory:"}


def _lines(pairs: tuple[tuple[str, object], ...]) -> list[str]:
    return [f"{label}: {fmt.format_value(value)}" for label, value in pairs]


def _position(report: Report) -> str:
    """Where the run stands in the unit it is sized in: "37/150 iterations, epoch 1/3",
    "1,234,567/4,938,000 tokens, iteration 812", "15.00 min of a 1.00 hours budget, iteration 812"."""
    if report.progress_unit == "tokens" and report.tokens_processed is not None and report.progress_total:
        where = f"{fmt.format_count(report.tokens_processed)}/{fmt.format_count(round(report.progress_total))} tokens"
    elif report.progress_unit == "seconds" and report.progress_total:
        where = f"{fmt.format_duration(report.elapsed_s)} of a {fmt.format_duration(report.progress_total)} budget"
    else:
        where = f"{fmt.format_count(report.iteration)}/{fmt.format_count(report.total_iters)} iterations"
        return where if report.epoch is None else f"epoch {report.epoch}/{report.epochs}, {where}"
    return f"{where}, iteration {fmt.format_count(report.iteration)}"


def render_progress(report: Report) -> list[str]:
    """The lines of a progress block (rules included) for a scheduled or anomaly report."""
    header = f"🔄 TRAINING PROGRESS: {fmt.format_percent(report.percent)} ({_position(report)})"
    out = [RULE, header, RULE]
    joined: dict[str, list[str]] = {block: [] for block in BLOCKS}
    for section in report.sections:
        if section.into is not None:
            joined[section.into] += _lines(section.lines)

    if report.anomalies:
        out += _block("⚠️ Anomalies:", [f"{a.message} (since iteration {fmt.format_count(a.since_iter)})" for a in report.anomalies])

    metrics = []
    if report.loss is not None:
        metrics.append(f"Loss: {fmt.format_loss(report.loss)}")
    if report.smoothed_loss is not None:
        metrics.append(f"Loss (smoothed): {fmt.format_loss(report.smoothed_loss)}")
    if report.loss_forecast is not None:
        forecast = fmt.format_forecast(report.loss_forecast, report.loss_forecast_low, report.loss_forecast_high)
        metrics.append(f"Final loss forecast: {forecast}")
    if "val_loss" in report.metrics:
        metrics.append(f"Validation Loss: {fmt.format_loss(report.metrics['val_loss'])}")
    if report.best_val_loss is not None:
        metrics.append(f"Best Validation Loss: {fmt.format_loss(report.best_val_loss)}")
    if report.lr is not None:
        metrics.append(f"Learning Rate: {fmt.format_lr(report.lr)}")
    if report.mfu is not None:
        metrics.append(f"MFU: {fmt.format_mfu(report.mfu)}")
    metrics += [f"{_label(name)}: {fmt.format_value(value)}" for name, value in report.metrics.items() if name != "val_loss"]
    out += _block(_TITLES["metrics"], metrics + joined["metrics"])

    time_lines = [f"Elapsed: {fmt.format_duration(report.elapsed_s)}", f"ETA: {fmt.format_eta(report.eta_s)}"]
    if report.iters_per_s is not None:
        time_lines.append(f"Speed: {fmt.format_rate(report.iters_per_s)}")
    if report.ms_per_iter is not None:
        time_lines.append(f"Time per iter: {fmt.format_ms(report.ms_per_iter)}")
    out += _block(_TITLES["time"], time_lines + joined["time"])

    memory = [_memory_line(m) for m in report.memory]
    if report.tokens_processed is not None:
        memory.append(f"Tokens processed: {fmt.format_count(report.tokens_processed)}")
    if report.tokens_per_s is not None:
        memory.append(f"Throughput: {fmt.format_count(round(report.tokens_per_s))} tokens/s")
    out += _block(_TITLES["memory"], memory + joined["memory"])
    if report.run_cost is not None:
        out += _block("💰 Cost:", [f"{label}: {text}" for label, text in report.run_cost.lines().items()])

    for section in report.sections:
        if section.into is None:
            out += _block(f"{section.title}:", _lines(section.lines))
    out.append(RULE)
    return out


# The final block's title, by the run's outcome (a log without one reads as stopped).
_FINAL_TITLES = {COMPLETED: "✅ TRAINING COMPLETE!", STOPPED: "⏹️ TRAINING STOPPED", CRASHED: "💥 TRAINING CRASHED"}


def render_final(report: Report) -> list[str]:
    """The lines of the end-of-run summary, titled by how the run ended; a crash's first line
    is its error."""
    lines = [f"Iterations: {fmt.format_count(report.iteration)}/{fmt.format_count(report.total_iters)}"
             if report.progress_unit == "iters" else f"Progress: {fmt.format_percent(report.percent)} ({_position(report)})"]
    if report.outcome == CRASHED and report.error:
        lines.insert(0, f"Error: {report.error}")
    if report.loss is not None:
        lines.append(f"Final loss: {fmt.format_loss(report.loss)}")
    if report.smoothed_loss is not None:
        lines.append(f"Final loss (smoothed): {fmt.format_loss(report.smoothed_loss)}")
    if report.best_val_loss is not None:
        lines.append(f"Best validation loss: {fmt.format_loss(report.best_val_loss)}")
    lines.append(f"Total time: {fmt.format_duration(report.elapsed_s)}")
    if report.paused_s > 0:
        lines.append(f"Paused (eval, checkpoints, ...): {fmt.format_duration(report.paused_s)}")
    if report.iters_per_s is not None:
        lines.append(f"Average speed: {fmt.format_rate(report.iters_per_s)}")
    if report.tokens_processed is not None:
        lines.append(f"Tokens processed: {fmt.format_count(report.tokens_processed)}")
    if report.mfu is not None:
        lines.append(f"Average MFU: {fmt.format_mfu(report.mfu)}")
    if report.run_cost is not None:
        lines.append(f"Cost: {report.run_cost.final_line()}")
    return [RULE, _FINAL_TITLES.get(report.outcome, _FINAL_TITLES[STOPPED]), RULE, *(BULLET + line for line in lines), RULE]


def render_stall(event: Event) -> list[str]:
    """The lines of the block the hang watchdog's "stalled" event prints."""
    data = event.data
    lines = [f"Last phase: {data.get('phase')}", f"No step for: {fmt.format_duration(float(data.get('stalled_s', 0.0)))}"]
    typical = data.get("typical_step_s")
    if typical is not None:
        lines.append(f"Typical step: {fmt.format_ms(1000.0 * float(typical))}")
    lines.append("Check every rank's log; a process stopped, killed or waiting in a collective is the usual cause")
    title = f"⏸️ TRAINING STALLED after iteration {fmt.format_count(event.iteration)}"
    return [RULE, title, RULE, *(BULLET + line for line in lines), RULE]


def anomaly_line(event: Event) -> str | None:
    """The one short line for an anomaly event that gets no block of its own: a blip (seen
    at one check, not yet an anomaly) or an anomaly that cleared. None for other events."""
    name = str(event.data.get("anomaly", "")).replace("_", " ")
    where = f"iteration {fmt.format_count(event.iteration)}"
    if event.kind == "anomaly_blip":
        return f"⚠️ {where}: {event.data.get('message')} (a blip so far: reported if it persists)"
    if event.kind == "anomaly_cleared":
        return f"✅ {where}: {name} cleared" + (f": {event.data['message']}" if "message" in event.data else "")
    if event.kind == "anomaly" and event.data.get("anomaly") == "slow_convergence":  # no anomaly report of its own
        return f"⚠️ {where}: {event.data.get('message')}"
    return None


def to_ascii(text: str) -> str:
    """The block without emoji or other non-ASCII characters, for log files and plain terminals."""
    return fmt.strip_emoji(text).translate(_ASCII).encode("ascii", "replace").decode("ascii")


def stream_takes(stream: TextIO, text: str) -> bool:
    """Whether ``stream``'s encoding can write ``text`` (emoji, block characters); when not,
    the console and ``trainprogress watch`` write ASCII."""
    encoding = getattr(stream, "encoding", None)
    if encoding is None:  # an in-memory text stream (io.StringIO) holds any character
        return True
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


class ConsoleSink(Sink):
    """Prints each report as the reference block on ``stream`` (stdout by default, looked up
    when writing so that redirection and pytest's capture work). ``ascii=None`` chooses
    ASCII when the stream's encoding cannot write emoji."""

    def __init__(self, stream: TextIO | None = None, *, ascii: bool | None = None) -> None:
        self._stream = stream
        self._ascii = ascii

    def _write(self, lines: list[str]) -> None:
        stream = self._stream or sys.stdout
        text = "\n".join(lines)
        use_ascii = self._ascii if self._ascii is not None else not stream_takes(stream, "🔄•")
        if use_ascii:
            text = to_ascii(text)
        # A live tqdm bar (the BarSink's or the caller's own) on the same terminal is
        # cleared around the block and redrawn below it, so neither garbles the other.
        tqdm = sys.modules.get("tqdm")
        with tqdm.tqdm.external_write_mode(file=stream) if tqdm is not None else nullcontext():
            stream.write(text + "\n")
            stream.flush()

    def report(self, report: Report) -> None:
        if report.kind == FINAL:
            self._write(render_final(report))
        else:
            self._write(render_progress(report))

    def event(self, event: Event) -> None:
        """One short line for an anomaly blip or clearing, a block for a stall, a line when
        training goes on after it; other events print nothing."""
        line = anomaly_line(event)
        if line is not None:
            self._write([line])
        elif event.kind == "stalled":
            self._write(render_stall(event))
        elif event.kind == "stall_ended":
            stalled = fmt.format_duration(float(event.data.get("stalled_s", 0.0)))
            self._write([f"▶️ Training goes on at iteration {fmt.format_count(event.iteration)} after a stall of {stalled}"])
