"""Sinks: each renders Reports somewhere (console, bar, JSONL, TensorBoard, W&B, notifications)."""

from .base import Event, RunInfo, Sink, SinkGroup, Tick
from .console import ConsoleSink

__all__ = ["ConsoleSink", "Event", "RunInfo", "Sink", "SinkGroup", "Tick"]
