"""Anomaly detection: clean runs stay silent, each injected fault is caught, episodes clear,
and the tracker reports at once and densely while one is active."""

from __future__ import annotations

import io
import json
import math
import random
import statistics
import subprocess
import sys
import time

import pytest

from helpers import REPO, FakeClock, RecordingSink
from trainprogress import ProgressTracker
from trainprogress.anomaly.config import AnomalyConfig
from trainprogress.anomaly.monitor import AnomalyMonitor
from trainprogress.report import ANOMALY, SCHEDULED
from trainprogress.run_size import RunSize
from trainprogress.sinks.console import ConsoleSink

MIB = 1024**2


def simulate(
    checks: int,
    *,
    seed: int,
    steps_per_check: int = 5,
    config: AnomalyConfig | None = None,
    total_iters: int | None = None,
    start_iter: int = 0,
    loss_fault=None,
    time_fault=None,
    memory_fault=None,
    grad_fault=None,
):
    """Feed a monitor a clean noisy run (loss falling with batch noise, steady step times
    with jitter and rare GC stalls, memory growing during warm-up then flat with noise,
    gradient norm noisy and slowly falling), with optional faults that change a value by
    iteration. ``total_iters`` is the run's length as the tracker tells the monitor, and
    ``start_iter`` where this process starts (a resume). Returns {kind: first anomaly seen}
    and the per-check results."""
    rng = random.Random(seed)
    monitor = AnomalyMonitor(config or AnomalyConfig(), None if total_iters is None else RunSize(total_iters))
    first: dict = {}
    results = []
    it = start_iter
    for check in range(checks):
        losses, times = [], []
        for _ in range(steps_per_check):
            it += 1
            loss = 2.0 + 3.0 * math.exp(-it / 400) + rng.gauss(0, 0.15)
            losses.append(loss_fault(it, loss) if loss_fault else loss)
            t = 0.05 * (1 + rng.uniform(-0.1, 0.1)) + (0.5 if rng.random() < 0.01 else 0.0)
            times.append(time_fault(it, t) if time_fault else t)
        memory = int(2000 * MIB * min(1.0, 0.5 + check / 10) + rng.randint(-20, 20) * MIB)
        grad = (3.0 * math.exp(-it / 2000) + 0.5) * rng.uniform(0.6, 1.6)
        active = monitor.observe(
            iteration=it,
            losses=losses,
            step_times_s=times,
            grad_norm=grad_fault(it, grad) if grad_fault else grad,
            memory_bytes=memory_fault(it, memory) if memory_fault else memory,
        )
        results.append((it, active))
        for a in active:
            first.setdefault(a.kind, a)
    return first, results


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("steps_per_check", [1, 5, 60])
def test_clean_noisy_run_raises_nothing(seed, steps_per_check):
    first, _ = simulate(1000, seed=seed, steps_per_check=steps_per_check)
    assert first == {}


def test_nonfinite_loss_is_caught_with_its_first_iteration():
    first, _ = simulate(300, seed=1, loss_fault=lambda it, x: math.nan if it >= 503 else x)
    assert set(first) == {"nonfinite_loss"}
    assert first["nonfinite_loss"].since_iter == 503
    assert "nan" in first["nonfinite_loss"].message


def test_infinite_loss_is_caught():
    first, _ = simulate(300, seed=2, loss_fault=lambda it, x: math.inf if it == 777 else x)
    assert first["nonfinite_loss"].since_iter == 777


def test_loss_spike_is_caught_and_clears():
    # 5 steps per check, so the spike detector judges pools of 10 steps: at 1010, 1020, ...
    config = AnomalyConfig(clear_after_checks=3)
    first, results = simulate(400, seed=3, config=config, loss_fault=lambda it, x: 3 * x if 1000 < it <= 1040 else x)
    assert set(first) == {"loss_spike"}
    assert first["loss_spike"].since_iter == 1010
    assert "above its recent median" in first["loss_spike"].message
    # Active with the same start through the spike and two clean pools, cleared by the third.
    active = {it: a for it, a in results}
    assert all(active[it] and active[it][0].since_iter == 1010 for it in range(1010, 1070, 5))
    assert not active[1070]
    assert not any(active[it] for it in range(1070, 2001, 5))


def test_throughput_drop_is_caught_when_sustained():
    first, _ = simulate(400, seed=4, time_fault=lambda it, t: 3 * t if it > 1200 else t)
    assert set(first) == {"throughput_drop"}
    assert 1200 < first["throughput_drop"].since_iter <= 1250
    assert "ms/iter" in first["throughput_drop"].message


def test_isolated_stalls_are_not_a_throughput_drop():
    # A GC pause of 20 typical steps every 7 steps: the ETA's business, not an anomaly.
    first, _ = simulate(400, seed=5, steps_per_check=1, time_fault=lambda it, t: t + 1.0 if it % 7 == 0 else t)
    assert first == {}


def test_memory_leak_is_caught_but_warmup_growth_is_not():
    leak = lambda it, m: m + it * 2 * MIB  # noqa: E731 - 10 MiB per check, steady
    first, _ = simulate(300, seed=6, memory_fault=leak)
    assert set(first) == {"memory_growth"}
    assert "probable leak" in first["memory_growth"].message
    # Growth of 1 GiB spread over the first 10% of the run (long warm-up), then flat.
    warmup = lambda it, m: m + min(it, 150) * 7 * MIB  # noqa: E731
    first, _ = simulate(300, seed=6, memory_fault=warmup)
    assert first == {}


# At the tracker's cadence on a run of 100,000 steps: a check every 100 steps, 10 in 1% of it.
LONG_RUN = dict(checks=1000, steps_per_check=100, total_iters=100_000)


def leak_reports(memory_fault, *, seed: int, **run):
    """The iterations at which a memory leak was raised on a long run (each time it was)."""
    _, results = simulate(**{**LONG_RUN, **run}, seed=seed, memory_fault=memory_fault)
    raised, was = [], False
    for it, active in results:
        now = any(a.kind == "memory_growth" for a in active)
        if now and not was:
            raised.append(it)
        was = now
    return raised


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("start, mib_per_step", [(30_000, 1.0), (50_000, 1.0), (77_777, 1.0), (50_000, 0.3)])
def test_a_leak_after_flat_memory_is_caught_within_one_percent_of_the_run(seed, start, mib_per_step):
    leak = lambda it, m: m + max(0, it - start) * mib_per_step * MIB  # noqa: E731
    raised = leak_reports(leak, seed=seed)
    assert len(raised) == 1, raised  # raised once, and reported for as long as it goes on
    assert start < raised[0] <= start + 1_000  # 1% of the 100,000-step run


def test_a_leak_from_the_start_is_caught_once_past_the_warmup_allowance():
    leak = lambda it, m: m + it * 0.1 * MIB  # noqa: E731 - 10 MiB per check, from the first step
    raised = leak_reports(leak, seed=0)
    assert len(raised) == 1 and 10_000 < raised[0] <= 20_000, raised


WARMUPS = {
    # Growth of 1 GiB at an even rate over the first 10% of the run, then flat.
    "linear over the first 10%": lambda it, m: m + min(it, 10_000) / 10_000 * 1024 * MIB,
    # Caching allocator, compile and optimizer state: quick at first, then levelling off
    # (still growing a little after 10% of the run).
    "saturating": lambda it, m: m + 1536 * MIB * (1 - math.exp(-it / 3_000)),
    # Steps up that stay (buffers allocated at the first eval, a curriculum phase's larger
    # model), far apart.
    "steps up": lambda it, m: m + (it > 20_000) * 512 * MIB + (it > 45_000) * 300 * MIB + (it > 70_000) * 300 * MIB,
    # Buffers freed at 40% (an eval's, empty_cache) and the training state grown back to
    # where it was over the next 2% of the run.
    "freed, then grown back": lambda it, m: m - 600 * MIB * min(1.0, max(0.0, (42_000 - it) / 2_000)) * (it > 40_000),
}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", WARMUPS)
def test_warmup_and_steps_of_memory_are_no_leak(seed, shape):
    assert leak_reports(WARMUPS[shape], seed=seed) == []


@pytest.mark.parametrize("seed", range(3))
def test_a_resumed_process_warming_up_again_is_no_leak(seed):
    # Resumed at 60%: the checkpoint's copy held for a moment, then a warm-up that levels off.
    def resume(it, m):
        since = it - 60_000
        return m + (since <= 300) * 800 * MIB + 1024 * MIB * (1 - math.exp(-since / 2_000))

    assert leak_reports(resume, seed=seed, checks=400, start_iter=60_000) == []


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("scatter_mib", [50, 100])
def test_noisy_flat_memory_is_no_leak(seed, scatter_mib):
    # Probes scattered by up to ±5% of the 2 GiB, one in fifty 600 MiB higher (a moment's
    # buffer), and a step up of 500 MiB at 30% of the run.
    rng = random.Random(seed)
    noisy = lambda it, m: (m + rng.uniform(-scatter_mib, scatter_mib) * MIB  # noqa: E731
                           + (rng.random() < 0.02) * 600 * MIB + (it > 30_000) * 500 * MIB)
    assert leak_reports(noisy, seed=seed) == []


# A real process whose memory warms up, levels off, then leaks; the tracker probes its resident
# memory at its checks (a check every 10 steps: 0.1% of the run, bounds lowered to allow it),
# and tells the monitor the run's length, so that the warm-up is not taken for a leak.
REAL_LEAK = """
import json, time
from trainprogress import ProgressTracker, Sink
from trainprogress.anomaly.config import AnomalyConfig

class Events(Sink):
    wants_ticks = False
    def __init__(self):
        self.raised = []
    def event(self, event):
        if event.kind == "anomaly":
            self.raised.append([event.iteration, event.data["anomaly"]])

total, leak_from = 10_000, 5_000
held, events = [], Events()
config = AnomalyConfig(min_check_steps=10, min_check_interval_s=0.0)
with ProgressTracker(total, sinks=[events], anomaly=config) as tracker:
    for it in range(1, total + 1):
        if it <= 1_000 and it % 10 == 0:
            held.append(b"w" * (3 * 1024**2))  # warm-up: 300 MiB over the first 10% of the run
        if leak_from < it <= leak_from + 200:
            held.append(b"l" * (2 * 1024**2))  # a leak of 2 MiB a step (stopped after 400 MiB)
        time.sleep(0.0005)
        tracker.step(loss=1.0)
print(json.dumps(events.raised))
"""


@pytest.mark.process
def test_a_real_process_leaking_is_caught_within_one_percent_and_its_warmup_is_not():
    # No leak raised before the leak (warm-up included), the leak within 1% of the run (100
    # steps). A throughput drop may be raised too, and be true: the leak's fresh pages fault
    # in at 1 ms or more a step, and other processes share this machine.
    result = subprocess.run([sys.executable, "-c", REAL_LEAK], capture_output=True, text=True,
                            timeout=300, cwd=REPO, check=True)
    raised = json.loads(result.stdout.splitlines()[-1])
    leaks = [it for it, kind in raised if kind == "memory_growth"]
    assert len(leaks) == 1 and 5_000 < leaks[0] <= 5_100, raised


def test_exploding_gradient_norm_is_caught():
    first, _ = simulate(300, seed=7, grad_fault=lambda it, g: 100 * g if it > 900 else g)
    assert set(first) == {"grad_explosion"}
    assert 900 < first["grad_explosion"].since_iter <= 905
    first, _ = simulate(300, seed=7, grad_fault=lambda it, g: math.inf if 500 <= it < 515 else g)
    assert first["grad_explosion"].message == "gradient norm is inf"
    assert first["grad_explosion"].since_iter == 500  # the episode began at its first showing
    first, _ = simulate(300, seed=7, config=AnomalyConfig(grad_norm_max=10.0), grad_fault=lambda it, g: 20.0 if 20 <= it < 35 else g)
    assert first["grad_explosion"].since_iter == 20  # an absolute limit needs no history


@pytest.mark.parametrize("blip", [math.inf, 1000.0])
def test_a_one_check_gradient_blip_is_a_blip_not_an_anomaly(blip):
    monitor = AnomalyMonitor(AnomalyConfig())
    blips = []
    for it in range(1, 101):
        active = monitor.observe(iteration=it, losses=[2.0], step_times_s=[0.1], grad_norm=blip if it in (50, 70) else 1.0)
        assert active == ()
        blips += [(it, b.kind) for b in monitor.blips]
    assert blips == [(50, "grad_explosion"), (70, "grad_explosion")]


def test_detectors_without_input_stay_silent():
    monitor = AnomalyMonitor(AnomalyConfig())
    for it in range(1, 200):
        assert monitor.observe(iteration=it, losses=[], step_times_s=[], grad_norm=None, memory_bytes=None) == ()


@pytest.mark.parametrize(
    "field, value",
    [
        ("check_percent", 0),
        ("dense_percent", 150),
        ("clear_after_checks", 0),
        ("history_checks", 2.5),
        ("min_history_checks", 100),  # more than history_checks
        ("warmup_checks", -1),
        ("loss_spike_sigmas", -1.0),
        ("throughput_drop", 1.0),
        ("memory_growth", -0.1),
        ("memory_warmup_percent", -1.0),
        ("memory_plateau_checks", 0),
        ("grad_norm_factor", 1.0),
        ("grad_norm_max", 0.0),
    ],
)
def test_config_rejects_impossible_values(field, value):
    with pytest.raises((ValueError, TypeError), match=field):
        AnomalyConfig(**{field: value})


# ---------------------------------------------------------------------- through the tracker
# Checks on the 0.1% grid with no bound on their cadence, so that these tests can place them.
EVERY_CHECK = dict(min_check_steps=1, min_check_interval_s=0.0)


def run_tracker(total, losses, *, config=AnomalyConfig(clear_after_checks=3, **EVERY_CHECK), interval=10.0, sinks=()):
    clock = FakeClock()
    sink = RecordingSink()
    tracker = ProgressTracker(total, interval_percent=interval, sinks=[sink, *sinks], clock=clock, anomaly=config)
    reports = []
    for it in range(1, total + 1):
        clock.advance(0.1)
        report = tracker.step(loss=losses(it), lr=1e-3)
        if report is not None:
            reports.append(report)
    tracker.close()
    return sink, reports


def test_tracker_reports_at_once_then_densely_until_the_anomaly_holds_steady_then_regularly_until_cleared():
    # 2,000 iterations: checks and dense reports every 0.1% (2 iterations), regular every 10%.
    # The loss is NaN from 1,001 to 1,500: new at 1,002, steady after 3 dense reports.
    rng = random.Random(0)
    console = io.StringIO()
    sink, reports = run_tracker(
        2000, lambda it: math.nan if 1001 <= it <= 1500 else 2 + rng.gauss(0, 0.05),
        sinks=[ConsoleSink(console, ascii=False)],
    )
    anomaly_reports = [r for r in reports if r.kind == ANOMALY]
    assert [r.iteration for r in anomaly_reports] == [1002]
    assert anomaly_reports[0].anomalies[0].kind == "nonfinite_loss"
    assert anomaly_reports[0].anomalies[0].since_iter == 1001
    # Dense for the anomaly report and two more, then the regular 10% while it lasts.
    dense = [r.iteration for r in reports if r.kind == SCHEDULED and 1000 < r.iteration < 1100]
    assert dense == [1004, 1006]
    named = {r.iteration: r.anomalies for r in reports if r.anomalies}
    assert list(named) == [1002, 1004, 1006, 1200, 1400]
    assert all(not a[0].steady and not a[0].message.startswith("still: ") for it, a in named.items() if it < 1200)
    assert all(a[0].steady and a[0].message.startswith("still: loss is nan") and a[0].since_iter == 1001
               for it, a in named.items() if it >= 1200)
    # Cleared by the third clean check (1,502, 1,504, 1,506); regular reports, none lost or doubled.
    regular = [r.iteration for r in reports if r.kind == SCHEDULED and not 1000 < r.iteration < 1100]
    assert regular == [200, 400, 600, 800, 1000, 1200, 1400, 1600, 1800, 2000]
    kinds = [(e.kind, e.iteration) for e in sink.events]
    assert kinds == [("anomaly", 1002), ("anomaly_cleared", 1506)]
    assert "⚠️ Anomalies:" in console.getvalue()
    assert "• still: loss is nan" in console.getvalue() and "(since iteration 1,001)" in console.getvalue()


def run_slowdown(slowdown, total=2000):
    """A ``total``-step run at the default anomaly settings, reports every 1%, on an injected
    clock: 0.1 s steps (jittered by up to 5%) times ``slowdown(iteration)``."""
    clock, sink, rng = FakeClock(), RecordingSink(), random.Random(0)
    tracker = ProgressTracker(total, sinks=[sink], clock=clock, anomaly=True)
    for it in range(1, total + 1):
        clock.advance(0.1 * slowdown(it) * (1 + 0.05 * rng.random()))
        tracker.step(loss=2 + rng.gauss(0, 0.05), lr=1e-3)
    tracker.close()
    return sink, [r for r in sink.reports if r.kind != "final"]


def test_a_steady_slowdown_is_reported_densely_three_times_then_every_1_percent_until_it_clears():
    # 4x slower from 1,001 to 1,300 of 2,000: dense reports for all of it made 221 reports.
    sink, reports = run_slowdown(lambda it: 4 if 1001 <= it <= 1300 else 1)
    events = [(e.kind, e.iteration, e.data.get("anomaly")) for e in sink.events]
    raised = next(it for kind, it, _ in events if kind == "anomaly")
    cleared = next(it for kind, it, _ in events if kind == "anomaly_cleared")
    assert 1001 < raised <= 1080 and 1300 < cleared <= 1420  # 3 pools to raise it, 5 to clear it
    assert [kind for kind, _, _ in events if kind != "anomaly_blip"] == ["anomaly", "anomaly_cleared"]
    assert len(reports) == 102  # 100 regular, 2 dense
    dense = [r.iteration for r in reports if r.iteration % 20]
    assert dense == [raised + 2, raised + 4]
    while_it_lasts = [r for r in reports if raised <= r.iteration < cleared]
    assert len(while_it_lasts) == 3 + (cleared - raised - 1) // 20
    for report in while_it_lasts:  # named in every report while it lasts, "still" once steady
        [anomaly] = report.anomalies
        assert anomaly.kind == "throughput_drop" and anomaly.since_iter > 1000
        assert anomaly.steady == (report.iteration > raised + 4) == anomaly.message.startswith("still: throughput fell")
    assert not any(r.anomalies for r in reports if not raised <= r.iteration < cleared)


def test_a_slowdown_that_gets_worse_is_reported_densely_again():
    # 4x from 1,001 to 1,300, then 8x to 1,500: worse by more than AnomalyConfig.worse_factor.
    sink, reports = run_slowdown(lambda it: 4 if 1001 <= it <= 1300 else 8 if 1301 <= it <= 1500 else 1)
    anomaly_reports = [r.iteration for r in reports if r.kind == ANOMALY]
    assert len(anomaly_reports) == 2 and anomaly_reports[0] < 1100 and 1300 < anomaly_reports[1] <= 1340
    worse = anomaly_reports[1]
    assert [r.iteration for r in reports if r.iteration % 20] == [anomaly_reports[0] + 2, anomaly_reports[0] + 4,
                                                                  worse + 2, worse + 4]
    assert len(reports) == 104
    at_worse = next(r for r in reports if r.iteration == worse).anomalies[0]
    before = next(r for r in reports if r.iteration == worse - 20).anomalies[0]
    assert not at_worse.steady and before.steady and at_worse.severity > 1.5 * before.severity
    assert at_worse.since_iter == before.since_iter  # the same episode, worse
    assert [e.kind for e in sink.events if e.kind != "anomaly_blip"] == ["anomaly", "anomaly_cleared"]


def test_tracker_keeps_a_regular_report_when_an_anomaly_clears_on_its_boundary():
    # NaN at 991..994 is seen at the check of 994 (0.1% of 2,000 = 2 iterations), then
    # clean checks at 996, 998, 1000 clear it on the 50% boundary.
    sink, reports = run_tracker(2000, lambda it: math.nan if 991 <= it <= 994 else 2.0)
    assert ("anomaly_cleared", 1000) in [(e.kind, e.iteration) for e in sink.events]
    assert 1000 in [r.iteration for r in reports if r.kind == SCHEDULED]


def test_every_report_is_a_check():
    # Checks every 5% and reports every 1%: the report at 10, which syncs anyway, is a check.
    config = AnomalyConfig(check_percent=5.0, dense_percent=1.0)
    sink, reports = run_tracker(1000, lambda it: math.nan if it == 3 else 2.0, config=config, interval=1.0)
    anomaly_reports = [r for r in reports if r.kind == ANOMALY]
    assert [r.iteration for r in anomaly_reports] == [10]
    assert anomaly_reports[0].anomalies[0].since_iter == 3


def test_checks_between_reports_keep_their_bounds_in_steps_and_seconds():
    # Reports every 10% of 10,000 steps; checks on the 0.1% grid (every 10 steps) but at
    # least 100 steps and 29.5 seconds apart: at 0.1 s a step, one check every 300 steps.
    config = AnomalyConfig(min_check_steps=100, min_check_interval_s=29.5)
    sink, _ = run_tracker(10_000, lambda it: math.nan if it > 1_001 else 2.0, config=config)
    raised = [e.iteration for e in sink.events if e.kind == "anomaly"]
    assert raised == [1_300]  # checks at 10, 310, 610, 910, the 1,000 report, then 1,300


def test_clean_simulated_tracker_run_raises_nothing():
    rng = random.Random(11)
    sink, reports = run_tracker(3000, lambda it: 2 + 3 * math.exp(-it / 500) + rng.gauss(0, 0.2), interval=1.0)
    assert not [e for e in sink.events if e.kind.startswith("anomaly")]
    assert not any(r.anomalies for r in reports)
    assert len(reports) == 100


# ---------------------------------------------------------------------- a real training run
def train_regression(total: int, *, seed: int, blow_up_at: int | None = None):
    """A small MLP learning a noisy regression with Adam, tracked with anomaly detection on
    the real clock and real process memory; at ``blow_up_at`` the learning rate jumps to 50.
    Returns the recording sink and each step's wall time as measured here."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    x = torch.randn(1024, 16)
    y = torch.sin(x @ torch.randn(16, 1)) + 0.05 * torch.randn(1024, 1)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sink = RecordingSink()
    step_s = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model; two threads only contend on a 2-core machine
    try:
        with ProgressTracker(total, sinks=[sink], anomaly=True) as tracker:
            for it in range(total):
                t0 = time.perf_counter()
                if it == blow_up_at:
                    for group in opt.param_groups:
                        group["lr"] = 50.0
                batch = torch.randint(0, 1024, (64,))
                loss = torch.nn.functional.mse_loss(model(x[batch]), y[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
                opt.step()
                tracker.step(loss=loss.detach(), lr=opt.param_groups[0]["lr"], grad_norm=grad_norm)
                step_s.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return sink, step_s


def test_real_training_run_raises_nothing_and_a_blow_up_is_caught():
    clean, step_s = train_regression(1500, seed=1)
    assert clean.reports[-1].loss < clean.reports[0].loss  # it did learn
    raised = [e for e in clean.events if e.kind == "anomaly"]
    # This machine is shared: another process may really slow this run down. A throughput
    # drop is only a false alarm if the steps, timed here, were not in fact slower.
    for event in raised:
        assert event.data["anomaly"] == "throughput_drop", event
        it = event.iteration
        recent, before = statistics.median(step_s[it - 10:it]), statistics.median(step_s[:it - 10])
        assert recent > 1.5 * before, (event, recent, before)
    assert all(a.kind == "throughput_drop" for r in clean.reports for a in r.anomalies)

    broken, _ = train_regression(1500, seed=1, blow_up_at=900)
    raised = {e.data["anomaly"]: e.iteration for e in broken.events if e.kind == "anomaly"}
    assert raised.get("grad_explosion", 0) > 900 and raised.get("loss_spike", 0) > 900
    # Checks come with the reports (every 15 steps here, and every step once the loss spike
    # makes reports dense); the gradient norm must stay high at three checks in a row.
    assert raised["grad_explosion"] <= 945 and raised["loss_spike"] <= 930
    assert any(r.kind == ANOMALY for r in broken.reports)
