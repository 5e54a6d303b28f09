"""How often does anomaly detection cry wolf, and how fast does it catch real faults?

    python benchmarks/bench_anomaly_rates.py [TRACE_DIR] [--no-real-runs]

Prints one table. False alarms: anomalies raised (and one-line blips) on healthy runs:
- real runs, each in a subprocess with its JSON Lines log read back: the demo at 100 and
  1,000 iterations (report every 1%), train.py's CPU preset (Shakespeare), NanEcho's tiny
  preset at 300 iterations (skipped with --no-real-runs: they take minutes);
- the step times of every real trace in ../shared/traces (or TRACE_DIR), replayed through a
  tracker on a fake clock with a healthy noisy loss.
Catches: faults injected into a healthy simulated run of 100,000 steps of 0.1 s (noisy
falling loss, jittered step times with rare stalls, gradient-norm noise with one-step
blips, memory flat after warm-up), fed to the AnomalyMonitor at the tracker's default
check cadence (every 100 steps, as AnomalyConfig.min_check_steps allows on such a run)
and told the run's length, as the tracker does. Each fault starts at 50% of the run; its
latency is the steps from the fault's start until the anomaly is raised, as a percent of
the run. The same simulated run without a fault, and with memory that warms up over the
first 10% of the run or steps up and stays, counts false alarms. False alarms in a fault's
row: anomalies of other kinds, and of its own kind before the fault started.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_eta_traces import DEFAULT_DIR, load_steps  # noqa: E402
from trainprogress import ProgressTracker  # noqa: E402
from trainprogress.anomaly.config import AnomalyConfig  # noqa: E402
from trainprogress.anomaly.monitor import AnomalyMonitor  # noqa: E402
from trainprogress.run_size import RunSize  # noqa: E402
from trainprogress.sinks.base import Sink  # noqa: E402

MIB = 1024**2
REAL_RUNS = {
    "demo, 100 iterations": ["test_verbose_logging.py", "--max_iters", "100", "--jsonl", "{dir}/progress.jsonl"],
    "demo, 1,000 iterations": ["test_verbose_logging.py", "--max_iters", "1000", "--log_every", "1", "--jsonl", "{dir}/progress.jsonl"],
    "train.py, CPU preset": ["train.py", "config/train_shakespeare_char.py", "--jsonl_log=True", "--out_dir={dir}"],
    "NanEcho tiny, 300 iterations": ["train_nanecho.py", "--preset", "tiny", "--max_iters", "300", "--jsonl_log=True", "--out_dir={dir}"],
}


class AnomalyEvents(Sink):
    """Keeps the anomalies raised and the blips seen, as (iteration, kind)."""

    wants_ticks = False

    def __init__(self) -> None:
        self.raised: list[tuple[int, str]] = []
        self.blips: list[tuple[int, str]] = []

    def event(self, event) -> None:
        if event.kind == "anomaly":
            self.raised.append((event.iteration, event.data["anomaly"]))
        elif event.kind == "anomaly_blip":
            self.blips.append((event.iteration, event.data["anomaly"]))


def real_run(args: list[str]) -> tuple[list, list]:
    """Run a trainer in a subprocess and read its anomalies and blips from its JSONL log."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, *(a.format(dir=folder) for a in args)]
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        events = [json.loads(line) for line in Path(folder, "progress.jsonl").read_text().splitlines()]
    raised = [(e["iteration"], e["data"]["anomaly"]) for e in events if e.get("event") == "anomaly"]
    blips = [(e["iteration"], e["data"]["anomaly"]) for e in events if e.get("event") == "anomaly_blip"]
    return raised, blips


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def replay_trace(total: int, steps: list[float], seed: int = 0) -> tuple[list, list]:
    """A trace's step times through a tracker with anomaly detection on its defaults, with a
    healthy falling, noisy loss and gradient norm."""
    rng = random.Random(seed)
    clock, events = FakeClock(), AnomalyEvents()
    with ProgressTracker(total, sinks=[events], clock=clock, anomaly=True) as tracker:
        for it, seconds in enumerate(steps[:total], start=1):
            clock.now += seconds
            loss = 2.0 + 3.0 * math.exp(-10 * it / total) + rng.gauss(0, 0.05)
            tracker.step(loss=loss, lr=1e-3, grad_norm=rng.uniform(0.5, 1.5))
    return events.raised, events.blips


FAULTS = {
    "none (healthy)": {},
    "NaN loss": {"loss": lambda it, x: math.nan},
    "loss spike that persists (+50%)": {"loss": lambda it, x: 1.5 * x},
    "slowdown that persists (2x)": {"time": lambda it, t: 2 * t},
    "memory leak (1 MiB a step)": {"memory": lambda it, m: m + (it - FAULT_AT) * MIB},
    "memory leak (0.2 MiB a step)": {"memory": lambda it, m: m + (it - FAULT_AT) * 0.2 * MIB},
    "memory leak (0.1 MiB a step)": {"memory": lambda it, m: m + (it - FAULT_AT) * 0.1 * MIB},
    "gradient norm that stays high (20x)": {"grad": lambda it, g: 20 * g},
}
TOTAL, FAULT_AT, CHECK_EVERY = 100_000, 50_000, 100
HEALTHY_MEMORY = {
    "none, memory warming up over the first 10%": lambda it, m: m + min(it, TOTAL // 10) / (TOTAL // 10) * 1024 * MIB,
    "none, memory stepping up at 20%, 45%, 70%":
        lambda it, m: m + sum(300 * MIB for at in (20, 45, 70) if it > at * TOTAL // 100),
}


def simulate(fault: dict, seed: int) -> tuple[list, list]:
    """A healthy simulated run fed to the monitor every CHECK_EVERY steps, the fault applied
    from FAULT_AT on. Returns (raised, blips) as (iteration, kind)."""
    rng = random.Random(seed)
    monitor = AnomalyMonitor(AnomalyConfig(), RunSize(TOTAL))
    raised, blips, active = [], [], set()
    for check in range(TOTAL // CHECK_EVERY):
        losses, times = [], []
        for it in range(check * CHECK_EVERY + 1, (check + 1) * CHECK_EVERY + 1):
            loss = 2.0 + 3.0 * math.exp(-it / 20_000) + rng.gauss(0, 0.15)
            t = 0.1 * rng.uniform(0.95, 1.05) + (0.5 if rng.random() < 0.01 else 0.0)
            if it > FAULT_AT:
                loss = fault.get("loss", lambda i, x: x)(it, loss)
                t = fault.get("time", lambda i, x: x)(it, t)
            losses.append(loss)
            times.append(t)
        # The gradient norm the tracker holds at a check: noisy, and in 3% of steps a
        # one-step blip of 10x to 70x (a bad batch, clipped), as the demo shows.
        grad = (3.0 * math.exp(-it / 50_000) + 0.5) * rng.uniform(0.6, 1.6)
        if rng.random() < 0.03:
            grad *= rng.uniform(10, 70)
        memory = int(2048 * MIB * min(1.0, 0.5 + check / 10)) + rng.randint(-20, 20) * MIB
        memory = fault.get("healthy memory", lambda i, x: x)(it, memory)
        if it > FAULT_AT:
            grad = fault.get("grad", lambda i, x: x)(it, grad)
            memory = fault.get("memory", lambda i, x: x)(it, memory)
        now = monitor.observe(iteration=it, losses=losses, step_times_s=times, grad_norm=grad, memory_bytes=memory)
        raised += [(it, a.kind) for a in now if a.kind not in active]
        blips += [(it, b.kind) for b in monitor.blips]
        active = {a.kind for a in now}
    return raised, blips


def describe(raised: list) -> str:
    if not raised:
        return "none"
    kinds = sorted({kind for _, kind in raised})
    return f"{len(raised)} ({', '.join(kinds)})"


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    folder = Path(args[0]) if args else DEFAULT_DIR
    print("False alarms on healthy runs (target: none)")
    print(f"{'run':58} {'anomalies raised':28} {'blips (one line each)':>22}")
    if "--no-real-runs" not in sys.argv:
        for name, command in REAL_RUNS.items():
            raised, blips = real_run(command)
            print(f"{name:58} {describe(raised):28} {len(blips):>22}")
    for path in sorted(folder.glob("*.json")):
        raised, blips = replay_trace(*load_steps(path))
        print(f"{'trace: ' + path.stem:58} {describe(raised):28} {len(blips):>22}")
    print()
    print(f"Injected faults: {TOTAL:,} simulated steps, fault from step {FAULT_AT:,}, checks every {CHECK_EVERY} steps, 3 seeds")
    print(f"{'fault':44} {'caught':>7} {'latency, % of run (worst)':>27} {'false alarms':>13}")
    runs = {**FAULTS, **{name: {"healthy memory": shape} for name, shape in HEALTHY_MEMORY.items()}}
    for name, fault in runs.items():
        caught, latencies, others = 0, [], 0
        for seed in range(3):
            raised, _ = simulate(fault, seed)
            expected = {"NaN loss": "nonfinite_loss", "loss spike": "loss_spike", "slowdown": "throughput_drop",
                        "memory leak": "memory_growth", "gradient norm": "grad_explosion"}
            kind = next((k for prefix, k in expected.items() if name.startswith(prefix)), None)
            hits = [it for it, k in raised if k == kind and it > FAULT_AT]
            others += sum(1 for it, k in raised if k != kind or it <= FAULT_AT)
            if hits:
                caught += 1
                latencies.append(100 * (hits[0] - FAULT_AT) / TOTAL)
        worst = f"{max(latencies):.2f}%" if latencies else "-"
        print(f"{name:44} {caught if kind else '-':>5}/3 {worst:>27} {others:>13}")


if __name__ == "__main__":
    main()
