"""A live tqdm progress bar between the report blocks: percent, iteration, and in the postfix
the tracker's ETA, speed and smoothed loss (tqdm's own rate and remaining time are not
shown: the tracker's estimates exclude pauses and stalls, tqdm's do not).

The bar and the console blocks share the terminal without garbling each other: the console
sink writes each block inside ``tqdm.external_write_mode``, which clears the bar, and the
bar is redrawn below the block. On a stream that is not a terminal (a log file, CI, a SLURM
job) there is no bar, only plain lines (never carriage returns): one when the run starts,
so a log shows signs of life before the first report, then a status line every
``plain_interval_s`` seconds whatever the reports do (they may well go to another stream,
stdout, while this is stderr); nothing at all with ``plain_interval_s=None``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

from .. import format as fmt
from ..report import FINAL, Report, RunInfo, Tick
from .base import Sink


def _import_tqdm() -> Any:
    try:
        from tqdm import tqdm
    except ImportError as exc:
        raise ImportError("the progress bar needs tqdm: pip install tqdm (or pip install trainprogress[bar])") from exc
    return tqdm


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def status_text(eta_s: float | None, iters_per_s: float | None, loss: float | None) -> str:
    """The bar's postfix: "ETA 01:02:03, 17.23 iter/s, loss 1.234567" (parts that are
    unknown are left out, except the ETA, which shows "--:--:--")."""
    parts = [f"ETA {fmt.format_eta(eta_s)}"]
    if iters_per_s is not None:
        parts.append(fmt.format_rate(iters_per_s))
    if loss is not None:
        parts.append(f"loss {fmt.format_loss(loss)}")
    return ", ".join(parts)


class BarSink(Sink):
    """A tqdm bar on ``stream`` (stderr by default, looked up when the run starts), updated
    by the tracker's live ticks (every 0.5 s) and at each report.

    ``interactive=None`` shows the bar only when the stream is a terminal; otherwise a
    plain line at the start and one every ``plain_interval_s`` seconds (of ``clock``). ``ascii`` is passed to tqdm (None: tqdm picks by the stream's encoding)."""

    wants_ticks = True

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interactive: bool | None = None,
        plain_interval_s: float | None = 60.0,
        ascii: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if plain_interval_s is not None and not plain_interval_s > 0:
            raise ValueError(f"plain_interval_s must be > 0 seconds or None, got {plain_interval_s!r}")
        self._tqdm = _import_tqdm()  # fail at build time, not mid-run
        self._stream = stream
        self._interactive = interactive
        self._plain_interval_s = plain_interval_s
        self._ascii = ascii
        self._clock = clock
        self._bar: Any = None
        self._out: TextIO | None = None
        self._next_line = float("inf")

    def start(self, run: RunInfo) -> None:
        self._out = self._stream or sys.stderr
        interactive = _isatty(self._out) if self._interactive is None else self._interactive
        if interactive:
            self._bar = self._tqdm(
                total=run.total_iters or None, initial=run.start_iter, file=self._out, ascii=self._ascii,
                bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}{postfix}", postfix=status_text(None, None, None),
                dynamic_ncols=True, mininterval=0, leave=False,
            )
        elif self._plain_interval_s is not None:
            self._next_line = self._clock() + self._plain_interval_s
            self._write_line(
                f"trainprogress: started at iteration {fmt.format_count(run.start_iter)}/"
                f"{fmt.format_count(run.total_iters)}; a status line here every {self._plain_interval_s:g} s"
            )

    def _write_line(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()

    def _show(self, iteration: int, total_iters: int, postfix: str) -> None:
        self._bar.n = iteration
        self._bar.total = total_iters  # moves with set_total, or is estimated (sized in tokens or seconds)
        self._bar.set_postfix_str(postfix)  # redraws the bar

    def tick(self, tick: Tick) -> None:
        postfix = status_text(tick.eta_s, tick.iters_per_s, tick.smoothed_loss)
        if self._bar is not None:
            self._show(tick.iteration, tick.total_iters, postfix)
            return
        now = self._clock()
        if now >= self._next_line:
            # On a fixed beat (no drift), but never a burst after a long step.
            self._next_line = max(self._next_line + self._plain_interval_s, now)
            self._write_line(
                f"trainprogress: {fmt.format_percent(tick.percent)} "
                f"({fmt.format_count(tick.iteration)}/{fmt.format_count(tick.total_iters)}), {postfix}"
            )

    def report(self, report: Report) -> None:
        if self._bar is not None:
            if report.kind == FINAL:
                self.close()  # the summary block says it all; the bar clears itself
            else:
                self._show(report.iteration, report.total_iters, status_text(report.eta_s, report.iters_per_s, report.smoothed_loss))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
