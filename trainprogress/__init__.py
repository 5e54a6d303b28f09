"""trainprogress: detailed, low-overhead progress reports for training loops.

    from trainprogress import ProgressTracker
    tracker = ProgressTracker(total_iters)
    for it in range(total_iters):
        ...
        tracker.step(loss=loss, lr=lr)
    tracker.close()

torch is never imported here; it is used only where the caller already imported it.

The public API is exactly ``__all__`` below, with the sinks (``trainprogress.sinks``) and the
framework integrations (``trainprogress.integrations.hf``, ``.lightning``); every other module
is internal and may move (the README's Layout section shows where each thing lives).
"""

from .anomaly.config import AnomalyConfig
from .cost import CostConfig, RunCost
from .flops import gpt_flops_per_token
from .ranks import CrossRankConfig
from .report import Anomaly, Event, MemoryStats, Report, RunInfo, Section, Tick
from .reading.runlog import LogFileError, read_log
from .sinks import build_sinks
from .sinks.base import Sink
from .sinks.console import ConsoleSink
from .stragglers import StragglerConfig
from .tracker import ProgressTracker
from .watchdog import WatchdogConfig

__all__ = [
    "Anomaly",
    "AnomalyConfig",
    "ConsoleSink",
    "CostConfig",
    "CrossRankConfig",
    "Event",
    "LogFileError",
    "MemoryStats",
    "ProgressTracker",
    "Report",
    "RunCost",
    "RunInfo",
    "Section",
    "Sink",
    "StragglerConfig",
    "Tick",
    "WatchdogConfig",
    "build_sinks",
    "gpt_flops_per_token",
    "read_log",
]
__version__ = "0.1.0"
