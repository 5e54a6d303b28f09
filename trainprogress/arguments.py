"""What ProgressTracker is given, checked: its sizes and options at construction, a step's
loss (by type, off the fastest path), and whether this process is the one that reports.
Every error names the problem and the fix."""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from .value_buffer import LOSS_RING
from .materialise import is_tensor

if TYPE_CHECKING:
    from .run_size import RunSize


def detect_is_master() -> bool:
    """True on rank 0 of a torch.distributed job (or when RANK says so), and outside one."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


# Types step() has accepted as a loss or a learning rate; any other type is checked once,
# then joins them.
LOSS_TYPES: set[type] = {float, int, type(None)}

# Named values the tracker itself reads as numbers (the best validation loss, the gradient
# explosion check); any other named value may be text, such as a phase name.
NUMBER_NAMES = ("val_loss", "best_val_loss", "grad_norm")


def _shown(value: Any) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def check_number(call: str, name: str, value: Any, fix: str) -> None:
    """Accept a number or a tensor as ``call(name=...)`` (remembering its type), else raise
    TypeError naming it and ``fix``."""
    kind = type(value)
    if kind is bool or not (is_tensor(value) or hasattr(kind, "__float__")):
        raise TypeError(f"trainprogress: {call}({name}=...) takes a number or a one-element tensor, "
                        f"got {_shown(value)}; {fix}")
    LOSS_TYPES.add(kind)


def check_loss(loss: Any) -> None:
    """Accept a number or a tensor as a loss (remembering its type), else raise TypeError."""
    check_number("step", "loss", loss, "pass loss.detach() or float(loss)")


def check_loss_and_lr(loss: Any, lr: Any) -> None:
    """A step's loss and learning rate (None: not given), each a number or a tensor, else a
    TypeError naming which."""
    check_loss(loss)
    if lr is not None:
        check_number("step", "lr", lr, "pass the optimizer's rate, e.g. lr=optimizer.param_groups[0]['lr'], or leave it out")


def check_named_numbers(values: Mapping[str, Any], call: str = "step") -> None:
    """The named values the tracker reads as numbers (``NUMBER_NAMES``) must be numbers,
    tensors or None (not measured at this step); else a TypeError naming the value."""
    for name in NUMBER_NAMES:
        value = values.get(name)
        if type(value) not in LOSS_TYPES:
            check_number(call, name, value, f"pass float({name}) or a one-element tensor, or None when not measured")


def check_int(name: str, value: Any, minimum: int, fix: str) -> int:
    """``value`` when it is an int >= ``minimum``; else TypeError or ValueError naming
    ``name`` and ``fix``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}; {fix}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}; {fix}")
    return value


def check_run_arguments(
    total_iters: Any,
    start_iter: Any,
    *,
    tokens_per_iter: Any,
    flops_per_iter: Any,
    peak_flops: Any,
    loss_window: Any,
    window: Any,
) -> int:
    """Check ProgressTracker's sizes (steps, FLOP, FLOP/s), raising TypeError or ValueError
    with the fix. Returns the speed window in steps: ``window``, or when None 2% of the run,
    at least 10 and at most 2,000 steps."""
    check_int("total_iters", total_iters, 1, "pass the number of optimizer steps in the whole run")
    check_int("start_iter", start_iter, 0, "pass the iterations already completed before this process")
    if start_iter > total_iters:
        raise ValueError(f"start_iter ({start_iter}) is past total_iters ({total_iters}); a resumed run needs total_iters >= start_iter")
    if tokens_per_iter is not None:
        check_int("tokens_per_iter", tokens_per_iter, 1, "pass batch_size x block_size x accumulation steps x world size, or None")
    if flops_per_iter is not None and not flops_per_iter > 0:
        raise ValueError(f"flops_per_iter must be > 0, got {flops_per_iter!r}; pass None to leave out MFU")
    if peak_flops is not None and not peak_flops > 0:
        raise ValueError(f"peak_flops must be > 0 FLOP/s, got {peak_flops!r}; pass None to detect it")
    check_int("loss_window", loss_window, 1, "use e.g. 100")
    if loss_window > LOSS_RING:
        raise ValueError(f"loss_window must be <= {LOSS_RING} steps, got {loss_window}")
    if window is None:
        window = min(2000, max(10, round(0.02 * total_iters)))
    return check_int("window", window, 1, "use e.g. 100 steps")


def resolve_option(name: str, setting: Any, config_type: type) -> Any:
    """The config object for an option that takes a bool or a config object (anomaly,
    cross_rank, watchdog): None when off (False or None), ``config_type()`` for True, the
    object itself; anything else is a TypeError naming the option and the fix."""
    if setting is None or setting is False:
        return None
    if setting is True:
        return config_type()
    if isinstance(setting, config_type):
        return setting
    raise TypeError(f"{name} must be True, False or an instance of {config_type.__name__}, got {type(setting).__name__} {setting!r}; "
                    f"pass {name}=True for the defaults or {name}={config_type.__name__}(...) to tune it")


def check_sinks(sinks: Any) -> list[Any] | None:
    """``sinks`` as a list of sinks (None: the default), else a TypeError with the fix."""
    from .sinks.base import Sink

    fix = "pass a list of sinks, e.g. sinks=build_sinks(jsonl='out/progress.jsonl') or sinks=[ConsoleSink()]"
    if sinks is None:
        return None
    if isinstance(sinks, (str, bytes)) or not hasattr(sinks, "__iter__"):
        raise TypeError(f"sinks must be a list of Sink objects, got {type(sinks).__name__} {sinks!r}; {fix}")
    sinks = list(sinks)
    for sink in sinks:
        if not isinstance(sink, Sink):
            raise TypeError(f"sinks must hold Sink objects, got {type(sink).__name__} {sink!r}; {fix}")
    return sinks


def check_clock(clock: Any) -> None:
    """Read ``clock`` once: it must be callable and return a finite number of seconds."""
    fix = "pass a function returning seconds as a float, such as time.perf_counter (the default)"
    if not callable(clock):
        raise TypeError(f"clock must be callable, got {type(clock).__name__} {clock!r}; {fix}")
    value = clock()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"clock() must return a finite number of seconds, got {type(value).__name__} {value!r}; {fix}")


def check_options(*, run_config: Any, peak_flops: Any, precision: Any) -> None:
    """ProgressTracker's options that would otherwise be dropped or fail later."""
    if run_config is not None and not isinstance(run_config, Mapping):
        raise TypeError(f"run_config must be a mapping of names to values, got {type(run_config).__name__} "
                        f"{run_config!r}; pass e.g. run_config={{'lr': 3e-4, 'batch_size': 64}}")
    if peak_flops is not None and (isinstance(peak_flops, bool) or not isinstance(peak_flops, (int, float))
                                   or not math.isfinite(peak_flops)):
        raise ValueError(f"peak_flops must be a finite number of FLOP/s, got {peak_flops!r}; "
                         f"pass e.g. peak_flops=989e12, or None to detect it")
    from .flops import PRECISIONS

    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} or None, got {precision!r}; "
                         f"pass the dtype the model trains in, e.g. precision='bf16'")


_DEVICE_STRING = re.compile(r"(cuda|cpu|mps)(:\d+)?")


def check_device(device: Any) -> None:
    """``device`` as the tracker takes it: None, "cuda", "cuda:N", "cpu", "mps", a CUDA
    index N, or a torch.device (any type); else a TypeError or ValueError with the forms.
    Never imports torch: a torch.device exists only where the caller imported torch."""
    if device is None or (isinstance(device, int) and not isinstance(device, bool) and device >= 0):
        return
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(device, torch.device):
        return
    forms = ("pass the device the run trains on: 'cuda', 'cuda:N', 'cpu', 'mps', a torch.device (for another "
             "type, e.g. torch.device('xpu')), or None to take the first loss tensor's")
    if not isinstance(device, str):
        raise TypeError(f"device must be a str, a CUDA index or a torch.device, got {_shown(device)}; {forms}")
    if _DEVICE_STRING.fullmatch(device) is None:
        raise ValueError(f"device {device!r} is not a device trainprogress knows; {forms}")


@dataclass(frozen=True)
class TrackerArguments:
    """ProgressTracker's arguments as given, unchecked (see ProgressTracker for each)."""

    total_iters: Any = None
    epochs: Any = None
    iters_per_epoch: Any = None
    loader: Any = None
    total_tokens: Any = None
    time_budget_s: Any = None
    start_iter: Any = 0
    interval_percent: Any = 1.0
    tokens_per_iter: Any = None
    flops_per_iter: Any = None
    peak_flops: Any = None
    is_master: Any = None
    sinks: Any = None
    clock: Any = None
    precision: Any = None
    window: Any = None
    loss_window: Any = 100
    anomaly: Any = None
    run_config: Any = None
    cross_rank: Any = False
    watchdog: Any = False
    device: Any = None
    cost: Any = False
    lr_schedule: Any = None
    target_loss: Any = None


class Settings(NamedTuple):
    """What TrackerArguments resolve to: the run's size, the options' config objects (None
    when off), the sinks (None: the default), the speed window in steps, and whether this
    process reports."""

    size: RunSize
    anomaly: Any
    cross_rank: Any
    watchdog: Any
    sinks: list[Any] | None
    window: int
    is_master: bool


def resolve_arguments(given: TrackerArguments) -> Settings:
    """Check ProgressTracker's arguments, in the order their errors are reported, and
    resolve them (TypeError or ValueError naming the fix)."""
    from .anomaly import AnomalyConfig
    from .report_schedule import parse_interval
    from .ranks import CrossRankConfig
    from .run_size import RunSize
    from .watchdog import WatchdogConfig

    anomaly = resolve_option("anomaly", given.anomaly, AnomalyConfig)
    cross_rank = resolve_option("cross_rank", given.cross_rank, CrossRankConfig)
    watchdog = resolve_option("watchdog", given.watchdog, WatchdogConfig)
    sinks = check_sinks(given.sinks)
    check_clock(given.clock)
    check_device(given.device)
    check_options(run_config=given.run_config, peak_flops=given.peak_flops, precision=given.precision)
    size = RunSize.resolve(given.total_iters, epochs=given.epochs, iters_per_epoch=given.iters_per_epoch,
                           loader=given.loader, total_tokens=given.total_tokens, time_budget_s=given.time_budget_s,
                           interval_percent=given.interval_percent)
    window = given.window
    if not size.in_steps:
        if cross_rank:
            raise ValueError(f"cross_rank exchanges at step boundaries, but this run is sized in {size.unit}; "
                             "size it with total_iters= or epochs=, or pass cross_rank=False")
        window = 100 if window is None else window
    window = check_run_arguments(size.total_iters, given.start_iter, tokens_per_iter=given.tokens_per_iter,
                                 flops_per_iter=given.flops_per_iter, peak_flops=given.peak_flops,
                                 loss_window=given.loss_window, window=window)
    parse_interval(given.interval_percent)
    is_master = detect_is_master() if given.is_master is None else bool(given.is_master)
    return Settings(size, anomaly, cross_rank, watchdog, sinks, window, is_master)
