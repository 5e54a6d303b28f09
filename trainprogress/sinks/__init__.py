"""Sinks: each renders Reports somewhere (console, bar, JSONL, TensorBoard, W&B, notifications).

The sinks with optional dependencies are imported on first use, and import their package
(tqdm, tensorboard, wandb) only when built, so ``import trainprogress`` stays light.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Iterable, TextIO

from ..report import Event, RunInfo, Tick
from .base import Sink, SinkGroup
from .console import ConsoleSink

_LAZY = {
    "BarSink": ".bar",
    "JsonlSink": ".jsonl",
    "NotebookSink": ".notebook",
    "NotifySink": ".notify",
    "TensorBoardSink": ".tensorboard",
    "WandbSink": ".wandb",
}

__all__ = ["ConsoleSink", "Event", "RunInfo", "Sink", "SinkGroup", "Tick", "build_sinks", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_sinks(
    *,
    console: bool = True,
    ascii: bool | None = None,
    stream: TextIO | None = None,
    bar: bool = False,
    jsonl: str | os.PathLike[str] | None = None,
    tensorboard: str | os.PathLike[str] | None = None,
    wandb: str | None = None,
    wandb_run_name: str | None = None,
    notify: bool = False,
    milestones: Iterable[float] = (25, 50, 75, 100),
) -> list[Sink]:
    """The sinks a trainer's config keys or flags ask for, for ``ProgressTracker(sinks=...)``.

    ``console``: the report blocks on ``stream`` (stdout; in a notebook, one display
    updated in place unless a ``stream`` is given), ASCII-only with ``ascii=True``
    (None: when the stream cannot write emoji). ``bar``: a tqdm bar on stderr (plain lines
    when stderr is not a terminal). ``jsonl``: the JSON Lines log's path. ``tensorboard``:
    the event files' folder. ``wandb``: the W&B project (W&B reads the rest, such as
    WANDB_MODE=offline, from its environment), ``wandb_run_name`` the run's name. ``notify``:
    webhook and e-mail notifications at ``milestones`` (percent), configured by environment
    variables (see ``trainprogress.sinks.notify``).

    Building has no side effects: files, writers, runs and threads are opened when the
    tracker starts, which happens only on the master rank, so every rank may call this.
    An optional package that is missing raises ImportError naming what to install."""
    sinks: list[Sink] = []
    if console:
        from .notebook import default_sink

        sinks.append(default_sink(stream, ascii=ascii))
    if bar:
        from .bar import BarSink

        sinks.append(BarSink(ascii=ascii))
    if jsonl is not None:
        from .jsonl import JsonlSink

        sinks.append(JsonlSink(jsonl))
    if tensorboard is not None:
        from .tensorboard import TensorBoardSink

        sinks.append(TensorBoardSink(tensorboard))
    if wandb is not None:
        from .wandb import WandbSink

        sinks.append(WandbSink(wandb, name=wandb_run_name))
    if notify:
        from .notify import NotifySink

        sinks.append(NotifySink(milestones=milestones))
    return sinks
