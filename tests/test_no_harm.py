"""The tracker does no harm to the run it watches: it draws from no global random stream
and never touches CUDA for a run that does not train on it."""

from __future__ import annotations

import inspect
import io
import random
import sys

import numpy as np
import pytest
import torch
from helpers import FakeClock, RecordingSink, Webhook

from trainprogress import ProgressTracker, flops
from trainprogress.anomaly.config import AnomalyConfig
from trainprogress.sinks import build_sinks
from trainprogress.sinks.bar import BarSink


def global_random_states():
    states = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state()[1].copy(),
        "random": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def assert_same_states(before, after):
    assert before.keys() == after.keys()
    assert torch.equal(before["torch"], after["torch"]), "torch's CPU generator was drawn from"
    assert np.array_equal(before["numpy"], after["numpy"]), "numpy's global generator was drawn from"
    assert before["random"] == after["random"], "the random module's generator was drawn from"
    if "cuda" in before:
        assert all(torch.equal(a, b) for a, b in zip(before["cuda"], after["cuda"]))


def test_every_sink_mfu_anomalies_and_reports_leave_the_random_streams_alone(tmp_path, monkeypatch):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    model = torch.nn.Linear(8, 1)
    data = torch.randn(64, 8)  # drawn before the snapshot: the training run's own draws
    monkeypatch.setattr(flops, "_cpu_peaks", {})  # the CPU probe runs inside this test
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    webhook = Webhook()
    monkeypatch.setenv("TRAINPROGRESS_SLACK_WEBHOOK_URL", webhook.url)
    before = global_random_states()
    clock = FakeClock()
    sinks = build_sinks(
        stream=io.StringIO(), jsonl=tmp_path / "log.jsonl", tensorboard=tmp_path / "tb",
        wandb="no-harm", notify=True, milestones=(50, 100),
    )
    sinks.append(BarSink(io.StringIO(), interactive=False, plain_interval_s=1.0, clock=clock))
    recorder = RecordingSink()
    try:
        with ProgressTracker(
            400, interval_percent=5, sinks=sinks + [recorder], clock=clock, tokens_per_iter=64,
            flops_per_iter=1e6, anomaly=AnomalyConfig(check_percent=1), run_config={"lr": 1e-3},
        ) as tracker:
            for it in range(1, 401):
                clock.advance(0.05)
                loss = model(data).pow(2).mean()
                if it == 300:
                    loss = loss * float("nan")  # an anomaly: an event, a report, notifications
                tracker.step(loss=loss.detach(), lr=1e-3, grad_norm=torch.tensor(0.5))
    finally:
        webhook.close()
    after = global_random_states()
    assert_same_states(before, after)
    assert recorder.reports[-1].mfu is not None and recorder.reports[-1].peak_flops_source.startswith("measured: CPU")
    assert any(r.kind == "anomaly" for r in recorder.reports) and webhook.posts


@pytest.fixture
def cuda_that_must_not_be_touched(monkeypatch):
    """torch.cuda says a GPU is there, and every other CUDA function fails and is recorded."""
    calls = []
    for name, value in list(vars(torch.cuda).items()):
        if name in ("is_available", "is_initialized") or not inspect.isfunction(value):
            continue

        def fail(*args, _name=name, **kwargs):
            calls.append(_name)
            raise RuntimeError(f"torch.cuda.{_name} called by a CPU run")

        monkeypatch.setattr(torch.cuda, name, fail)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)  # nobody started CUDA
    return calls


@pytest.mark.parametrize("device", [None, "cpu", torch.device("cpu")])
def test_a_cpu_run_on_a_gpu_host_gets_the_cpu_peak_and_never_touches_cuda(cuda_that_must_not_be_touched, device):
    recorder = RecordingSink()
    clock = FakeClock()
    with ProgressTracker(100, interval_percent=10, sinks=[recorder], clock=clock, flops_per_iter=1e6,
                         anomaly=True, device=device) as tracker:
        for it in range(100):
            clock.advance(0.01)
            tracker.step(loss=torch.tensor(2.0 - it / 100), grad_norm=torch.tensor(1.0))
    assert cuda_that_must_not_be_touched == []
    assert all(r.peak_flops_source.startswith("measured: CPU fp32 matmul") for r in recorder.reports)
    assert recorder.reports[-1].mfu > 0


def test_float_losses_and_no_cuda_context_mean_the_cpu_peak(cuda_that_must_not_be_touched):
    recorder = RecordingSink()
    with ProgressTracker(10, sinks=[recorder], clock=FakeClock(), flops_per_iter=1e6) as tracker:
        for _ in range(10):
            tracker.step(loss=1.0)
    assert cuda_that_must_not_be_touched == []
    assert recorder.reports[-1].peak_flops_source.startswith("measured: CPU")


def test_the_cpu_probe_draws_nothing_from_torchs_generator(monkeypatch):
    monkeypatch.setattr(flops, "_cpu_peaks", {})
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assert flops.measure_cpu_peak("bf16", seconds=0.01).flops_per_s > 0
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("device", [None, "cpu"])
def test_cost_on_a_cpu_run_on_a_gpu_host_touches_neither_cuda_nor_nvml(cuda_that_must_not_be_touched, device,
                                                                       monkeypatch, tmp_path):
    import types

    from trainprogress.cost import CostConfig

    nvml_calls = []
    nvml = types.ModuleType("pynvml")
    nvml.__getattr__ = lambda name: nvml_calls.append(name)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    recorder = RecordingSink()
    clock = FakeClock()
    with ProgressTracker(100, interval_percent=10, sinks=[recorder], clock=clock, device=device,
                         cost=CostConfig(price_per_device_hour=1.0, rapl_root=str(tmp_path))) as tracker:
        for it in range(100):
            clock.advance(0.01)
            tracker.step(loss=torch.tensor(2.0 - it / 100))
    assert cuda_that_must_not_be_touched == [] and nvml_calls == []
    assert recorder.reports[-1].run_cost.energy_note == "energy: not measured (no NVIDIA GPU; no readable RAPL)"
