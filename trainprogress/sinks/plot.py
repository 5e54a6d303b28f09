"""A sink that draws the run's progress plot when the run ends, from its JSONL log."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from .base import Sink


class ProgressPlotSink(Sink):
    """When the tracker closes (the run completed, stopped or crashed), draws the latest run
    of the JSONL log at ``jsonl_path`` as a PNG at ``png_path`` and writes where on
    ``stream`` (stdout by default). Put it after the JSONL sink, which writes the log's last
    records as it closes. Needs matplotlib (the ``plot`` extra)."""

    def __init__(self, jsonl_path: str | os.PathLike[str], png_path: str | os.PathLike[str],
                 stream: TextIO | None = None) -> None:
        self.jsonl_path = Path(jsonl_path)
        self.png_path = Path(png_path)
        self._stream = stream
        self._started = False

    def start(self, run: object) -> None:
        self._started = True

    def close(self) -> None:
        if not self._started:
            return
        from ..reading.plot import save_plot
        from ..reading.runlog import read_log

        log = read_log(self.jsonl_path)
        save_plot(log.runs[-1:], self.png_path)
        stream = self._stream or sys.stdout
        stream.write(f"Progress plot: {self.png_path}\n")
        stream.flush()
