"""ProgressTracker's options, each wrong value answered by one TypeError or ValueError line
naming the argument, the problem and the fix; and a bool-or-config option's False means off."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers import FakeClock, RecordingSink
from trainprogress import ProgressTracker
from trainprogress.sinks import build_sinks


@pytest.mark.parametrize("option", ["anomaly", "cross_rank", "watchdog"])
@pytest.mark.parametrize("setting", [False, None])
def test_false_or_none_turns_a_bool_or_config_option_off(option, setting):
    sink = RecordingSink()
    clock = FakeClock()
    with ProgressTracker(20, interval_percent=50, sinks=[sink], clock=clock, **{option: setting}) as tracker:
        for _ in range(20):
            clock.advance(0.01)
            tracker.step(loss=1.0)
    assert len(sink.reports) == 3


@pytest.mark.parametrize("kwargs, error, names, fix", [
    ({"anomaly": "yes"}, TypeError, "anomaly must be True, False or an instance of AnomalyConfig, got str 'yes'", "pass anomaly=True"),
    ({"cross_rank": 1.5}, TypeError, "cross_rank must be True, False or an instance of CrossRankConfig", "pass cross_rank=True"),
    ({"watchdog": "on"}, TypeError, "watchdog must be True, False or an instance of WatchdogConfig", "pass watchdog=True"),
    ({"sinks": "console"}, TypeError, "sinks must be a list of Sink objects, got str 'console'", "build_sinks("),
    ({"sinks": 42}, TypeError, "sinks must be a list of Sink objects, got int 42", "build_sinks("),
    ({"sinks": [object()]}, TypeError, "sinks must hold Sink objects, got object", "build_sinks("),
    ({"clock": "x"}, TypeError, "clock must be callable, got str 'x'", "time.perf_counter"),
    ({"clock": lambda: math.nan}, TypeError, "clock() must return a finite number of seconds, got float nan", "time.perf_counter"),
    ({"clock": lambda: None}, TypeError, "clock() must return a finite number of seconds, got NoneType None", "time.perf_counter"),
    ({"run_config": [1, 2]}, TypeError, "run_config must be a mapping of names to values, got list [1, 2]", "run_config={"),
    ({"peak_flops": math.inf}, ValueError, "peak_flops must be a finite number of FLOP/s, got inf", "or None to detect it"),
    ({"precision": "int4"}, ValueError, "precision must be one of bf16, fp16, tf32, fp32 or None, got 'int4'", "precision='bf16'"),
])
def test_a_wrong_option_is_one_line_naming_it_and_the_fix(kwargs, error, names, fix):
    with pytest.raises(error) as raised:
        ProgressTracker(10, **kwargs)
    message = str(raised.value)
    assert names in message and fix in message and "\n" not in message, message


def test_build_sinks_refuses_a_jsonl_path_that_is_not_a_path():
    with pytest.raises(TypeError) as raised:
        build_sinks(console=False, jsonl=123)
    assert "jsonl must be a file path (str or Path), got int 123" in str(raised.value)
    assert "jsonl='out/progress.jsonl'" in str(raised.value)


def one_line(raised) -> str:
    message = str(raised.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("bad", ["abc", True, [1e-3]])
def test_a_learning_rate_that_is_not_a_number_is_refused_naming_lr(bad):
    clock = FakeClock()
    sink = RecordingSink()
    tracker = ProgressTracker(40, interval_percent=50, sinks=[sink], clock=clock)
    with pytest.raises(TypeError) as raised:
        tracker.step(loss=1.0, lr=bad)  # the first step is always checked
    message = one_line(raised)
    assert f"step(lr=...) takes a number or a one-element tensor, got {type(bad).__name__}" in message
    assert "lr=optimizer.param_groups[0]['lr']" in message
    assert tracker.iteration == 0  # the rejected step does not count
    for _ in range(20):  # steps of 10 ms: the clock is read, and the rate checked, at every one
        clock.advance(0.01)
        tracker.step(loss=1.0, lr=np.float32(3e-4))
    clock.advance(0.01)
    with pytest.raises(TypeError, match=r"step\(lr=\.\.\.\)"):
        tracker.step(loss=1.0, lr=bad)
    assert tracker.iteration == 20
    tracker.close()
    assert sink.reports[0].lr == pytest.approx(3e-4)


@pytest.mark.parametrize("name", ["val_loss", "grad_norm", "best_val_loss"])
@pytest.mark.parametrize("bad", ["abc", [1.0], False])
def test_a_named_value_read_as_a_number_is_refused_naming_it(name, bad):
    clock = FakeClock()
    tracker = ProgressTracker(40, interval_percent=50, sinks=[], clock=clock, anomaly=True)
    for _ in range(3):
        clock.advance(0.01)
        tracker.step(loss=1.0, **{name: 2.0})
    with pytest.raises(TypeError) as raised:
        tracker.step(loss=1.0, **{name: bad})
    message = one_line(raised)
    assert f"step({name}=...) takes a number or a one-element tensor, got {type(bad).__name__}" in message
    assert f"pass float({name})" in message
    assert tracker.iteration == 3
    with pytest.raises(TypeError, match=rf"close\({name}=\.\.\.\)"):
        tracker.close(**{name: bad})
    report = tracker.close(**{name: 1.5})  # a refused close() closed nothing
    assert report is not None and report.iteration == 3


def test_other_named_values_may_be_text():
    sink = RecordingSink()
    with ProgressTracker(4, interval_percent=100, sinks=[sink], clock=FakeClock()) as tracker:
        for _ in range(4):
            tracker.step(loss=1.0, phase="warmup", val_loss=torch.tensor(2.5), grad_norm=np.float64(0.5))
    assert sink.reports[-1].metrics == {"phase": "warmup", "val_loss": 2.5, "grad_norm": 0.5}
    assert sink.reports[-1].best_val_loss == 2.5


@pytest.mark.parametrize("device, error, problem", [
    ("tpu:7", ValueError, "device 'tpu:7' is not a device trainprogress knows"),
    ("cuda:x", ValueError, "device 'cuda:x' is not a device trainprogress knows"),
    ("gpu", ValueError, "device 'gpu' is not a device trainprogress knows"),
    (True, TypeError, "device must be a str, a CUDA index or a torch.device, got bool True"),
    (1.5, TypeError, "device must be a str, a CUDA index or a torch.device, got float 1.5"),
])
def test_an_unknown_device_is_refused_with_the_accepted_forms(device, error, problem):
    with pytest.raises(error) as raised:
        ProgressTracker(10, sinks=[], device=device)
    message = one_line(raised)
    assert problem in message and "'cuda', 'cuda:N', 'cpu', 'mps', a torch.device" in message, message


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "cpu", "mps", "cpu:0", 0, torch.device("cpu"), torch.device("meta")])
def test_the_accepted_device_forms_pass(device):
    ProgressTracker(10, sinks=[], device=device).close()


def test_checking_a_device_string_never_imports_torch():
    code = ("import sys\nfrom trainprogress import ProgressTracker\n"
            "ProgressTracker(10, sinks=[], device='cuda:0').close()\n"
            "try:\n    ProgressTracker(10, sinks=[], device='tpu:7')\nexcept ValueError as exc:\n    print(exc)\n"
            "print('torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "device 'tpu:7' is not a device trainprogress knows; pass the device the run trains on: 'cuda', 'cuda:N', "
        "'cpu', 'mps', a torch.device (for another type, e.g. torch.device('xpu')), or None to take the first "
        "loss tensor's", "False"]
