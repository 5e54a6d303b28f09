"""The progress plot: one PNG showing a run, or several runs overlaid for comparison.

Six panels: loss (raw, smoothed, validation, and per-name validation losses such as
NanEcho's persona dimensions), learning rate, speed (iter/s and tokens/s), MFU, memory, and
how the ETA converged (the end time estimated at each report against the actual end). A
single run's pauses and curriculum phases are shaded; resumes and anomalies are marked.

matplotlib comes from the ``plot`` extra. The figure is drawn with the object-oriented API
on an Agg canvas, so pyplot's global state and the caller's backend are never touched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from .. import format as fmt
from .runs import Run
from .series import ITERATION, TIME, RunSeries, Series, build_series, run_duration_s, time_unit
from .summary import speed_figures, summarize

__all__ = ["PlotExtraMissing", "build_figure", "save_plot"]


class PlotExtraMissing(ImportError):
    """matplotlib, which plotting needs, is not installed."""

    def __init__(self) -> None:
        super().__init__("plotting needs matplotlib, which is not installed. Fix: pip install "
                         "'trainprogress[plot]' (or pip install matplotlib).")


WIDTH_PX, HEIGHT_PX, DPI = 1600, 1000, 100

# One colour per run when several are overlaid (matplotlib's tab10).
RUN_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
# A single run's lines.
RAW, SMOOTHED, VALIDATION = "#9ecae1", "#08519c", "#e6550d"
FORECAST = "#756bb1"
ITERS, TOKENS = "#238b45", "#6a51a3"
# Pauses in greys, so that they stand apart from the phases' pastel colours.
PAUSE_COLOURS = {"eval": "#969696", "checkpoint": "#525252", "sample": "#d9d9d9"}
OTHER_PAUSE = "#bdbdbd"
PHASE_COLOURS = ("#deebf7", "#fee6ce", "#e5f5e0", "#efedf5", "#fde0dd", "#f7f7f7")
MEMORY_STYLES = {"used": "-", "RSS": "-", "peak": "--", "reserved": ":"}


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotExtraMissing() from exc
    return Figure, FigureCanvasAgg


def _no_data(ax: Any, what: str) -> None:
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", color="#737373", fontsize=10)


def _line(ax: Any, series: Series, **style: Any) -> None:
    if series:
        ax.plot(series.x, series.y, **style)


def _draw_loss(ax: Any, runs: list[RunSeries], single: bool) -> None:
    ax.set_title("Loss")
    ax.set_ylabel("loss")
    if not any(r.loss or r.smoothed_loss or r.val_loss for r in runs):
        _no_data(ax, "no loss in this log (pass loss= to tracker.step)")
    for i, run in enumerate(runs):
        colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        name = "" if single else f"{run.name}: "
        _line(ax, run.loss, color=RAW if single else colour, alpha=1.0 if single else 0.3, linewidth=0.9,
              label="loss" if single else None)
        _line(ax, run.smoothed_loss, color=SMOOTHED if single else colour, linewidth=2.0, label=f"{name}smoothed loss")
        _line(ax, run.val_loss, color=VALIDATION if single else colour, linestyle="--" if not single else "-",
              marker="o", markersize=5, linewidth=1.4, label=f"{name}validation loss")
        _draw_forecast(ax, run, FORECAST if single else colour, name)
        if single:
            for j, (dim, series) in enumerate(sorted(run.val_loss_by_name.items())):
                _line(ax, series, color=RUN_COLOURS[(j + 2) % len(RUN_COLOURS)], linewidth=0.8, alpha=0.8,
                      marker=".", markersize=3, label=f"val {dim}")
        for x, what in run.anomalies:
            ax.axvline(x, color="#cb181d", linestyle=":", linewidth=1.2)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7.5, ncol=2 if len(ax.get_lines()) > 6 else 1, loc="upper right")


def _draw_forecast(ax: Any, run: RunSeries, colour: str, name: str) -> None:
    """The final-loss forecast made at each report, with its band (narrowing as the run goes on)."""
    if not run.loss_forecast:
        return
    ax.fill_between(run.loss_forecast_low.x, run.loss_forecast_low.y, run.loss_forecast_high.y, color=colour,
                    alpha=0.15, linewidth=0, label=f"{name}final-loss forecast band")
    _line(ax, run.loss_forecast, color=colour, linestyle="--", linewidth=1.2, label=f"{name}final-loss forecast")


def _draw_simple(ax: Any, runs: list[RunSeries], attribute: str, title: str, ylabel: str, colour: str, missing: str) -> None:
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    single = len(runs) == 1
    for i, run in enumerate(runs):
        _line(ax, getattr(run, attribute), color=colour if single else RUN_COLOURS[i % len(RUN_COLOURS)],
              linewidth=1.5, label=None if single else run.name)
    if not any(getattr(r, attribute) for r in runs):
        _no_data(ax, missing)


def _tokens_per_iter(runs: list[RunSeries]) -> float | None:
    """The one tokens-per-iteration ratio of every report, if there is one: tokens/s is then
    iter/s on another scale, drawn as a second axis rather than as a line on top of it."""
    ratios = {round(t / i, 6) for run in runs for i, t in zip(run.iters_per_s.y, run.tokens_per_s.y) if i > 0}
    return ratios.pop() if len(ratios) == 1 and all(len(r.tokens_per_s.y) == len(r.iters_per_s.y) for r in runs) else None


def _draw_speed(ax: Any, runs: list[RunSeries]) -> None:
    ax.set_title("Speed (pauses excluded)")
    ax.set_ylabel("iter/s")
    single = len(runs) == 1
    ratio = _tokens_per_iter(runs)
    has_tokens = any(r.tokens_per_s for r in runs)
    tokens_ax = ax.twinx() if has_tokens and ratio is None else None
    for i, run in enumerate(runs):
        colour = ITERS if single else RUN_COLOURS[i % len(RUN_COLOURS)]
        _line(ax, run.iters_per_s, color=colour, linewidth=1.5, label=None if single else f"{run.name} iter/s")
        if tokens_ax is not None:
            _line(tokens_ax, run.tokens_per_s, color=TOKENS if single else colour, linewidth=1.2, linestyle="--",
                  label="tokens/s" if single else f"{run.name} tokens/s")
    ax.set_ylim(bottom=0)
    if ratio is not None:
        tokens_ax = ax.secondary_yaxis("right", functions=(lambda v: v * ratio, lambda v: v / ratio))
        tokens_ax.set_ylabel(f"tokens/s ({fmt.format_count(round(ratio))} tokens per iteration)")
    elif tokens_ax is not None:
        tokens_ax.set_ylabel("tokens/s (dashed)")
        tokens_ax.set_ylim(bottom=0)
    if tokens_ax is not None:
        tokens_ax.yaxis.set_major_formatter(_thousands())
    if not single:
        ax.legend(fontsize=7.5, loc="lower right")
    if not any(r.iters_per_s for r in runs):
        _no_data(ax, "no speed yet")


def _thousands() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:,.0f}")


def _draw_memory(ax: Any, runs: list[RunSeries]) -> None:
    ax.set_title("Memory")
    ax.set_ylabel("GiB")
    single = len(runs) == 1
    colours = {}
    for i, run in enumerate(runs):
        for key, series in sorted(run.memory_gib.items()):
            device, kind = key.split(" ", 1)
            colour = colours.setdefault(device, RUN_COLOURS[len(colours) % len(RUN_COLOURS)]) if single else RUN_COLOURS[i % len(RUN_COLOURS)]
            total = run.memory_total_gib.get(device)
            label = f"{key} (of {total:.1f} GiB)" if total and kind in ("used", "RSS") else key
            _line(ax, series, color=colour, linestyle=MEMORY_STYLES.get(kind, "-"), linewidth=1.5,
                  label=label if single else f"{run.name}: {label}")
    if any(r.memory_gib for r in runs):
        highest = max(max(series.y) for r in runs for series in r.memory_gib.values() if series)
        ax.set_ylim(0, 1.15 * highest)  # a flat line stays off the frame
        ax.legend(fontsize=7.5, loc="lower right")
    else:
        _no_data(ax, "no memory figures in this log")


def _draw_eta(ax: Any, runs: list[RunSeries], unit: str) -> None:
    ax.set_title("ETA convergence: estimated end vs actual end")
    ax.set_ylabel(f"run length, from start ({unit})")
    single = len(runs) == 1
    estimates: list[float] = []
    for i, run in enumerate(runs):
        colour = SMOOTHED if single else RUN_COLOURS[i % len(RUN_COLOURS)]
        _line(ax, run.estimated_end, color=colour, marker=".", markersize=4, linewidth=1.0,
              label="estimated end" if single else f"{run.name} estimated end")
        estimates += run.estimated_end.y
        if run.actual_end is not None:
            ax.axhline(run.actual_end, color=VALIDATION if single else colour, linestyle="--", linewidth=1.4,
                       label=f"actual end ({run.actual_end:.3g} {unit})" if single else f"{run.name} actual end")
    if not estimates:
        _no_data(ax, "no ETA yet")
        return
    # The first estimates come before the speed has settled and can be far off; the axis
    # keeps the part worth reading and says what it cut.
    estimates = [e for e in estimates if e == e]  # without the NaN breaks at resumes
    ordered = sorted(estimates)
    ends = [r.actual_end for r in runs if r.actual_end is not None]
    top = 1.3 * max([ordered[int(0.9 * (len(ordered) - 1))], *ends])
    if ordered[-1] > top:
        ax.set_ylim(0, top)
        cut = sum(e > top for e in estimates)
        ax.text(0.01, 0.98, f"{cut} estimate(s) above {top:.3g} {unit} not shown", transform=ax.transAxes,
                va="top", fontsize=7.5, color="#737373")
    else:
        ax.set_ylim(bottom=0)
    ax.legend(fontsize=7.5, loc="lower right")


def _shade(axes: Sequence[Any], run: RunSeries, x_axis: str) -> list[Any]:
    """Shade the pauses and phases of a single run and mark its resumes; returns legend
    handles for the figure."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    for i, phase in enumerate(run.phases):
        colour = PHASE_COLOURS[i % len(PHASE_COLOURS)]
        for ax in axes:
            ax.axvspan(phase.start, phase.end, color=colour, alpha=0.6, zorder=0, linewidth=0)
        handles.append(Patch(color=colour, label=f"phase: {phase.name}"))
    seen = set()
    for pause in run.pauses:
        colour = PAUSE_COLOURS.get(pause.name, OTHER_PAUSE)
        for ax in axes:
            if x_axis == TIME:
                ax.axvspan(pause.start, pause.end, color=colour, alpha=0.45, zorder=0.5, linewidth=0)
            else:
                ax.axvline(pause.start, color=colour, alpha=0.8, zorder=0.5, linewidth=1.0)
        if pause.name not in seen:
            seen.add(pause.name)
            handles.append(Patch(color=colour, alpha=0.45, label=f"{pause.name} pause"))
    for x in run.resumes:
        for ax in axes:
            ax.axvline(x, color="black", linestyle="--", linewidth=1.2)
    if run.resumes:
        handles.append(Line2D([], [], color="black", linestyle="--", label="resumed"))
    if run.anomalies:
        handles.append(Line2D([], [], color="#cb181d", linestyle=":", label="anomaly"))
    return handles


def _title(runs: Sequence[Run]) -> str:
    if len(runs) > 1:
        return f"{len(runs)} runs: " + " vs ".join(run.name for run in runs)
    s = summarize(runs[0])
    where = f"{fmt.format_count(s['iteration'])}"
    if s["total_iters"]:
        where += f"/{fmt.format_count(s['total_iters'])}"
    figures = [f"{s['status']} at iteration {where}", f"{fmt.format_duration(s['wall_s'])}"]
    if s["best_val_loss"] is not None:
        figures.append(f"best val loss {s['best_val_loss']:.4f}")
    if s["loss"] is not None:
        figures.append(f"last loss {s['loss']:.4f}")
    speed = speed_figures(s)  # the rate comes first: tokens/s and MFU are known only with it
    if speed:
        figures += [f"avg {speed[0]}", *speed[1:]]
    if s["paused_s"] >= 0.05:
        figures.append(f"paused {fmt.format_duration(s['paused_s'])}")
    return f"{runs[0].name}\n" + "  ·  ".join(figures)


def build_figure(runs: Sequence[Run], *, x_axis: str = "auto", width_px: int = WIDTH_PX,
                 height_px: int = HEIGHT_PX, dpi: int = DPI) -> Any:
    """A matplotlib Figure (on an Agg canvas) of ``runs``: one run, or several overlaid.
    ``x_axis``: "time" (since the start, resume gaps left out), "iteration", or "auto"
    (time for one run, iteration to compare several). Raises PlotExtraMissing (an
    ImportError naming the ``plot`` extra) when matplotlib is missing, ValueError for no runs."""
    if not runs:
        raise ValueError("no runs to plot. Fix: pass at least one log with records.")
    Figure, FigureCanvasAgg = _matplotlib()
    if x_axis == "auto":
        x_axis = TIME if len(runs) == 1 else ITERATION
    if x_axis not in (TIME, ITERATION):
        raise ValueError(f"x_axis must be 'time', 'iteration' or 'auto', got {x_axis!r}")
    unit_s, unit = time_unit(max(run_duration_s(run) for run in runs))
    series = [build_series(run, x_axis, unit_s) for run in runs]

    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.subplots(2, 3, sharex=True)
    loss_ax, lr_ax, speed_ax = grid[0]
    mfu_ax, memory_ax, eta_ax = grid[1]
    single = len(series) == 1
    _draw_loss(loss_ax, series, single)
    _draw_simple(lr_ax, series, "lr", "Learning rate", "learning rate", SMOOTHED, "no learning rate (pass lr= to tracker.step)")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    _draw_speed(speed_ax, series)
    _draw_simple(mfu_ax, series, "mfu_pct", "Model FLOPs utilisation", "MFU (%)", ITERS,
                 "no MFU in this log\n(needs flops_per_iter and a known peak)")
    if any(r.mfu_pct for r in series):
        mfu_ax.set_ylim(bottom=0)
    _draw_memory(memory_ax, series)
    _draw_eta(eta_ax, series, unit)
    if not single:
        lr_ax.legend(fontsize=7.5)

    x_label = "iteration" if x_axis == ITERATION else f"time since start ({unit})"
    if x_axis == TIME and any(r.resumes for r in series):
        x_label += ", gaps before resumes left out"
    for ax in grid.flat:
        ax.grid(True, alpha=0.3)
        ax.set_xlim(left=0)
    for ax in grid[1]:
        ax.set_xlabel(x_label)
    handles = _shade(list(grid.flat), series[0], x_axis) if single else []
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize=8.5, frameon=False)
    fig.suptitle(_title(runs), fontsize=13)
    stride = max(r.report_stride for r in series)
    if stride > 1:
        fig.text(0.995, 0.005, f"lines drawn from 1 report in {fmt.format_count(stride)}", ha="right",
                 va="bottom", fontsize=7.5, color="0.4")
    return fig


def save_plot(runs: Sequence[Run], path: str | os.PathLike[str], **options: Any) -> Path:
    """Draw ``runs`` (see :func:`build_figure` for ``options``) and write the PNG to ``path``
    atomically: a reader never sees a half-written file. Returns the path."""
    path = Path(path)
    figure = build_figure(runs, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own in the same folder (so the rename is atomic), opened through the
    # umask like any file the user writes.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            figure.savefig(handle, format="png")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
