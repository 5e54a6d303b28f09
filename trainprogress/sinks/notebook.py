"""Jupyter: one display, updated in place (as tqdm.auto does), instead of a new output per
report. It shows a bar with the ETA, speed and loss, and below it the full block of the
latest report (then the final summary): the whole report is in the cell's output at each
moment, without a hundred outputs piling up.

Chosen automatically when the tracker's default sinks are built inside an IPython kernel
(Jupyter, JupyterLab, VS Code notebooks), where stdout is not a terminal.
"""

from __future__ import annotations

import html
import sys
from typing import Any, TextIO

from .. import format as fmt
from ..report import FINAL, Event, Report, RunInfo, Tick
from .bar import status_text
from .base import Sink
from .console import ConsoleSink, render_final, render_progress, to_ascii


def in_notebook() -> bool:
    """True inside an IPython kernel (a notebook), False in a terminal IPython or plain Python."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def default_sink(stream: TextIO | None = None, *, ascii: bool | None = None) -> Sink:
    """The report sink for where the code runs: the notebook display in a kernel (unless a
    ``stream`` is given), else the console block on ``stream`` (stdout)."""
    if stream is None and in_notebook():
        return NotebookSink(ascii=bool(ascii))
    return ConsoleSink(stream, ascii=ascii)


class NotebookSink(Sink):
    """One display in the notebook cell, updated at each report and live tick (every 0.5 s):
    a progress bar with the tracker's ETA, speed and loss, above the latest report's block.
    ``ascii=True`` strips emoji from the block."""

    wants_ticks = True

    def __init__(self, *, ascii: bool = False) -> None:
        from IPython.display import display  # present wherever a kernel runs

        self._display = display
        self._ascii = ascii
        self._handle: Any = None
        self._total = 1
        self._iteration = 0
        self._status = status_text(None, None, None)
        self._block: list[str] = []
        self._crash: str | None = None

    def start(self, run: RunInfo) -> None:
        self._total = run.total_iters
        self._iteration = run.start_iter
        self._handle = self._display(self._bundle(), raw=True, display_id=True)

    def tick(self, tick: Tick) -> None:
        self._iteration, self._total = tick.iteration, tick.total_iters
        self._status = status_text(tick.eta_s, tick.iters_per_s, tick.smoothed_loss)
        self._update()

    def report(self, report: Report) -> None:
        self._iteration, self._total = report.iteration, report.total_iters
        if report.kind == FINAL:
            self._status = "finished" if self._crash is None else f"crashed: {self._crash}"
            self._block = self._block + render_final(report)
        else:
            self._status = status_text(report.eta_s, report.iters_per_s, report.smoothed_loss)
            self._block = render_progress(report)
        self._update()

    def event(self, event: Event) -> None:
        if event.kind == "crash":
            self._crash = str(event.data.get("error"))

    def _update(self) -> None:
        if self._handle is not None:
            self._handle.update(self._bundle(), raw=True)

    def _bundle(self) -> dict[str, str]:
        percent = 100.0 * self._iteration / max(self._total, 1)  # 0: not known yet (sized in tokens or seconds)
        status = (
            f"{fmt.format_percent(percent)} ({fmt.format_count(self._iteration)}/"
            f"{fmt.format_count(self._total)}), {self._status}"
        )
        block = "\n".join(self._block)
        if self._ascii:
            block = to_ascii(block)
        plain = status + ("\n" + block if block else "")
        page = (
            f'<div><progress value="{self._iteration}" max="{self._total}" style="width:60%"></progress> '
            f"<span>{html.escape(status)}</span>"
            f"<pre>{html.escape(block)}</pre></div>"
        )
        return {"text/plain": plain, "text/html": page}
