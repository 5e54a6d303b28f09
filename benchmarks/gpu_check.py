"""Checks every GPU claim of the README on this machine's CUDA device, in one command.

    python benchmarks/gpu_check.py [--skip_train] [--device cuda:0]

1. dtype: train.py's "auto" picks bf16 where the GPU has native bf16
   (``torch.cuda.is_bf16_supported(including_emulation=False)``), else fp16 (which trains
   with a GradScaler: check 7).
2. compile: train.py compiles the model on CUDA by default.
3. peak: the peak-FLOPs table entry the MFU uses names this GPU (``get_device_name()``) and
   the training precision.
4. MFU: ``train.py config/bench_gpt2_124m.py`` reports an MFU in a plausible range.
5. syncs: between report boundaries, a training loop with the tracker makes no host-device
   sync (``torch.cuda.set_sync_debug_mode("error")`` is on for every step but the boundaries).
6. memory: the report's GPU memory line equals torch.cuda's allocated, reserved and peak
   figures and the device's total.
7. fp16: 200 steps in fp16 with a GradScaler train (the loss falls, stays finite).
8. report cost: one report's time as a fraction of the training time between reports.
9. energy counter read (cost=, needs ``pip install trainprogress[cost]``): one
   ``nvmlDeviceGetTotalEnergyConsumption`` read costs under 100 microseconds (median of
   10,000 reads).
10. energy counter vs power: over 60 seconds of steady bf16 matmuls, the counter's energy
   agrees with the integral of ``nvmlDeviceGetPowerUsage`` sampled every 10 ms within 5%.
11. tracker energy: ``train.py config/train_shakespeare.py`` (the GPU preset) with
   ``--cost_report=True``: the reports' energy never decreases, comes from the GPU counter, and
   the final figure is within 1% of the counter's delta over the same window read by this
   script (polled every 5 ms, interpolated at the run_start and final records' times).

Prints a table (check, expected, measured, verdict) and exits 1 if any check fails. On a
machine without CUDA it says so and exits 0. Checks 1-4 and 11 run train.py in a subprocess
(about a minute each with compilation; ``--skip_train`` leaves them out); 5-10 run here
(``--skip_energy`` leaves out the minute of check 10). Without nvidia-ml-py, 9-11 are
skipped with the install line.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

MFU_RANGE = (0.15, 0.70)  # GPT-2 small, compiled, on a modern GPU: well inside; a wrong peak lands outside
COUNTER_READ_BUDGET_US = 100.0  # one energy-counter read, median
POWER_AGREEMENT = 0.05  # counter energy vs the integral of sampled power
TRACKER_AGREEMENT = 0.01  # the tracker's final energy vs a counter delta read outside it
REPORT_BUDGET = 0.01  # a report may cost at most 1% of the time between reports...
STEPS_BETWEEN_REPORTS = 100  # ...of a 10,000-step run reporting every 1%


@dataclass
class Row:
    check: str
    expected: str
    measured: str
    ok: bool | None  # None: could not be checked here

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.ok]


def print_table(rows: list[Row]) -> None:
    widths = [max(len(getattr(r, name)) for r in rows + [Row("check", "expected", "measured", None)])
              for name in ("check", "expected", "measured")]
    header = ("check", "expected", "measured", "verdict")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths + [7])))
    print("  ".join("-" * w for w in widths + [7]))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip((r.check, r.expected, r.measured, r.verdict), widths + [7])))


# ---------------------------------------------------------------------------- train.py
def run_bench_training(device: str) -> tuple[str, list[dict]]:
    """train.py on the GPT-2-small benchmark config; its stdout and JSONL records."""
    with tempfile.TemporaryDirectory() as out_dir:
        result = subprocess.run(
            [sys.executable, str(REPO / "train.py"), str(REPO / "config" / "bench_gpt2_124m.py"), f"--device={device}",
             f"--out_dir={out_dir}", "--jsonl_log=True", "--max_iters=300"],
            capture_output=True, text=True, cwd=REPO, timeout=1800,
        )
        if result.returncode != 0:
            raise RuntimeError(f"train.py failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
        log = Path(out_dir) / "progress.jsonl"
        return result.stdout, [json.loads(line) for line in log.read_text().splitlines()]


def training_rows(device: str) -> list[Row]:
    native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    want_dtype = "bfloat16" if native_bf16 else "float16"
    name = torch.cuda.get_device_name(torch.device(device))
    try:
        stdout, records = run_bench_training(device)
    except Exception as exc:
        return [Row("train.py bench run", "exit 0", str(exc).splitlines()[0][:80], False)]
    rows = []
    runtime = re.search(r"runtime: \S+ (\w+),.*compile (True|False)", stdout)
    if runtime is None:
        return [Row("train.py runtime line", "runtime: <device> <dtype>, ... compile <bool>", "not found", False)]
    dtype, compiled = runtime.group(1), runtime.group(2) == "True"
    rows.append(Row("dtype auto", f"{want_dtype} (native bf16: {native_bf16})", dtype, dtype == want_dtype))
    rows.append(Row("torch.compile", "on (CUDA default)", "on" if compiled else "off", compiled))

    start = next(r for r in records if r["type"] == "run_start")
    source = start.get("peak_flops_source") or ""
    precision = {"bfloat16": "bf16", "float16": "fp16"}.get(dtype, "tf32")
    rows.append(Row("peak label", f"names '{name}', {precision}", source or "none", peak_label_matches(source, name, precision)))

    scheduled = [r for r in records if r["type"] == "report" and r["kind"] == "scheduled"]
    late = [r["mfu"] for r in scheduled[len(scheduled) // 2:] if r.get("mfu") is not None]  # after compilation
    mfu = median(late) if late else None
    low, high = MFU_RANGE
    rows.append(Row("MFU, GPT-2 small", f"{low:.0%} to {high:.0%}", "none" if mfu is None else f"{mfu:.1%}",
                    mfu is not None and low <= mfu <= high))
    return rows


def peak_label_matches(source: str, device_name: str, precision: str) -> bool:
    """Whether the table label ("table: NVIDIA H100 SXM bf16") is this device's: every word of
    the model name in the label (less "NVIDIA", "GeForce" and the form factor "SXM"/"SXM2") is
    a word of the device name ("L4" is not "L40S"), a PCIe or NVL device gets a PCIe or NVL
    label, and the precision is the training one."""
    if not source.startswith("table: ") or not source.endswith(f" {precision}"):
        return False
    label = {w.lower() for w in source[len("table: "):-len(precision) - 1].split()}
    device = {w.lower() for w in re.split(r"[\s\-_]+", device_name) if w}
    if not label - {"nvidia", "geforce", "sxm", "sxm2"} <= device:
        return False
    return all(form in label for form in ("pcie", "nvl") if form in device)


# ---------------------------------------------------------------------------- in-process loops
def small_gpt(device: torch.device):
    from trainkit.model import GPT, GPTConfig

    torch.manual_seed(0)
    config = GPTConfig(block_size=256, vocab_size=64, n_layer=6, n_head=6, n_embd=384, dropout=0.0, bias=False)
    return GPT(config).to(device), config


def counting_batch(config, device: torch.device, batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable task made on the GPU (no host copy): each token is the previous plus one."""
    starts = torch.randint(config.vocab_size, (batch, 1), device=device)
    x = (starts + torch.arange(config.block_size, device=device)) % config.vocab_size
    return x, (x + 1) % config.vocab_size


def sync_and_memory_rows(device: torch.device, steps: int = 300) -> list[Row]:
    from trainprogress import ProgressTracker
    from trainprogress.anomaly.config import AnomalyConfig
    from trainprogress.report_schedule import ReportSchedule
    from trainprogress.sinks import ConsoleSink

    model, config = small_gpt(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=True)  # its step count stays on the GPU
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16

    def train_step():
        x, y = counting_batch(config, device)
        with torch.autocast("cuda", dtype=dtype):
            _, loss = model(x, y)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach(), grad_norm

    for _ in range(10):  # warm-up: allocator, kernels, optimizer state
        train_step()
    torch.cuda.synchronize()
    rows = []
    try:  # the bare loop first: a sync here is the loop's own, not the tracker's
        torch.cuda.set_sync_debug_mode("error")
        for _ in range(5):
            train_step()
    except RuntimeError as exc:
        return [Row("no sync between reports", "0 syncs", f"the bare training step syncs: {exc}"[:80], None)]
    finally:
        torch.cuda.set_sync_debug_mode(0)

    total = 10_000
    anomaly = AnomalyConfig()
    due = set(ReportSchedule(total, 1.0).due_iterations()) | set(ReportSchedule(total, anomaly.check_percent).due_iterations())
    with open("/dev/null", "w") as devnull:
        tracker = ProgressTracker(total, sinks=[ConsoleSink(devnull)], is_master=True, anomaly=anomaly,
                                  tokens_per_iter=32 * config.block_size, precision="bf16", cost=True, device=device)
        reports, sync_error = [], None
        try:
            torch.cuda.set_sync_debug_mode("error")
            for it in range(1, steps + 1):
                loss, grad_norm = train_step()
                if it in due:
                    torch.cuda.set_sync_debug_mode(0)
                    report = tracker.step(loss=loss, lr=3e-4, grad_norm=grad_norm)
                    if report is not None:
                        reports.append((report, memory_now(device)))
                    torch.cuda.set_sync_debug_mode("error")
                else:
                    tracker.step(loss=loss, lr=3e-4, grad_norm=grad_norm)
        except RuntimeError as exc:
            sync_error = str(exc)
        finally:
            torch.cuda.set_sync_debug_mode(0)
            tracker.close()
    boundaries = len([i for i in due if i <= steps])
    rows.append(Row("no sync between reports", f"0 syncs in {steps - boundaries} steps",
                    "0 syncs" if sync_error is None else sync_error[:80], sync_error is None))
    rows.append(memory_row(reports))
    return rows


def memory_now(device: torch.device) -> dict[str, int]:
    return {
        "used_bytes": torch.cuda.memory_allocated(device),
        "reserved_bytes": torch.cuda.memory_reserved(device),
        "peak_bytes": torch.cuda.max_memory_allocated(device),
        "total_bytes": torch.cuda.get_device_properties(device).total_memory,
    }


def memory_row(reports: list) -> Row:
    """Each report's CUDA memory line against torch.cuda's figures read right after it."""
    if not reports:
        return Row("memory line = torch.cuda", "a report", "no report", False)
    worst, missing = 0, 0
    for report, truth in reports:
        cuda = next((m for m in report.memory if m.device == "cuda"), None)
        if cuda is None:
            missing += 1
            continue
        for name, value in truth.items():
            worst = max(worst, abs(getattr(cuda, name) - value))
    ok = missing == 0 and worst <= 2 * 1024**2
    measured = f"{missing} reports without a GPU line" if missing else f"max difference {worst / 1024**2:.2f} MiB"
    return Row("memory line = torch.cuda", "allocated/reserved/peak/total within 2 MiB", measured, ok)


def fp16_and_cost_rows(device: torch.device, steps: int = 200) -> list[Row]:
    from trainprogress import ProgressTracker
    from trainprogress.sinks import ConsoleSink

    model, config = small_gpt(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    every = 10
    report_s, losses = [], []
    with open("/dev/null", "w") as devnull:
        tracker = ProgressTracker(steps, interval_percent=100 * every / steps, sinks=[ConsoleSink(devnull)], is_master=True,
                                  tokens_per_iter=32 * config.block_size, precision="fp16")
        torch.cuda.synchronize()
        start = time.perf_counter()
        for it in range(1, steps + 1):
            x, y = counting_batch(config, device)
            with torch.autocast("cuda", dtype=torch.float16):
                _, loss = model(x, y)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if it % every == 0:
                torch.cuda.synchronize()  # the GPU's queue is not the report's cost
                t0 = time.perf_counter()
                report = tracker.step(loss=loss.detach(), lr=1e-3)
                report_s.append(time.perf_counter() - t0)
                losses.append(report.smoothed_loss)
            else:
                tracker.step(loss=loss.detach(), lr=1e-3)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        tracker.close()
    step_s = (elapsed - sum(report_s)) / steps
    finite = all(math.isfinite(x) for x in losses)
    trained = finite and losses[-1] < 0.5 * losses[0]
    scale = scaler.get_scale()
    rows = [Row(f"{steps} fp16 steps, GradScaler", "loss finite, falls by half, scale finite",
                f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, scale {scale:g}", trained and math.isfinite(scale) and scale > 0)]
    cost = median(report_s[1:]) if len(report_s) > 1 else report_s[0]  # the first report times the first probes
    fraction = cost / (STEPS_BETWEEN_REPORTS * step_s)
    rows.append(Row("report cost", f"<= {REPORT_BUDGET:.0%} of {STEPS_BETWEEN_REPORTS} steps",
                    f"{1000 * cost:.2f} ms vs {1000 * step_s:.2f} ms/step: {fraction:.3%}", fraction <= REPORT_BUDGET))
    return rows


# ---------------------------------------------------------------------------- energy (cost=)
def open_nvml(device: torch.device):
    """(pynvml, the handle of ``device`` matched by UUID), or (None, why not)."""
    from trainprogress.energy import COST_EXTRA, normalise_uuid

    try:
        import pynvml
    except ImportError:
        return None, f"nvidia-ml-py not installed: {COST_EXTRA}"
    pynvml.nvmlInit()
    uuid = normalise_uuid(torch.cuda.get_device_properties(device).uuid)
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        if normalise_uuid(pynvml.nvmlDeviceGetUUID(handle)) == uuid:
            try:
                pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            except pynvml.NVMLError as exc:
                return None, f"energy counter unreadable: {exc}"
            return pynvml, handle
    return None, "no NVML device has this GPU's UUID"


def counter_read_row(nvml, handle, reads: int = 10_000) -> Row:
    times_us = []
    for _ in range(reads):
        start = time.perf_counter_ns()
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        times_us.append((time.perf_counter_ns() - start) / 1000)
    typical = median(times_us)
    return Row("energy counter read", f"< {COUNTER_READ_BUDGET_US:.0f} us (median of {reads:,})",
               f"{typical:.1f} us (p99 {sorted(times_us)[int(0.99 * reads)]:.1f} us)", typical < COUNTER_READ_BUDGET_US)


def integrate_power(samples: list[tuple[float, float]], start: float, end: float) -> float:
    """Joules from (time, watts) samples over [start, end]: trapezoids between samples, the
    first and last sample held to the window's edges."""
    if not samples:
        return 0.0
    joules = samples[0][1] * (samples[0][0] - start) + samples[-1][1] * (end - samples[-1][0])
    for (t0, w0), (t1, w1) in zip(samples, samples[1:]):
        joules += (w0 + w1) / 2 * (t1 - t0)
    return joules


def power_integral_row(device: torch.device, nvml, handle, seconds: float = 60.0) -> Row:
    """The counter's energy against sampled power over ``seconds`` of steady bf16 matmuls
    (measured after 5 s of warm-up, so that both see a steady load)."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16, generator=generator)
    b, c = torch.randn_like(a), torch.empty_like(a)

    def burn(until: float) -> None:
        while time.perf_counter() < until:
            for _ in range(20):
                torch.mm(a, b, out=c)
            torch.cuda.synchronize()

    burn(time.perf_counter() + 5.0)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter(), nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    first, start = nvml.nvmlDeviceGetTotalEnergyConsumption(handle), time.perf_counter()
    sampler.start()
    burn(start + seconds)
    last, end = nvml.nvmlDeviceGetTotalEnergyConsumption(handle), time.perf_counter()
    stop.set()
    sampler.join()
    counter_j = (last - first) / 1000.0
    sampled_j = integrate_power([s for s in samples if start <= s[0] <= end], start, end)
    gap = counter_j / sampled_j - 1 if sampled_j > 0 else math.inf
    return Row(f"counter vs power, {seconds:.0f} s bf16 matmul", f"within {POWER_AGREEMENT:.0%}",
               f"{counter_j / 1000:.2f} kJ vs {sampled_j / 1000:.2f} kJ ({gap:+.2%}, {counter_j / (end - start):.0f} W)",
               abs(gap) <= POWER_AGREEMENT)


def counter_at(polls: list[tuple[float, float]], when: float) -> float:
    """The counter (mJ) at Unix time ``when``, interpolated between the polls around it."""
    for (t0, e0), (t1, e1) in zip(polls, polls[1:]):
        if t0 <= when <= t1:
            return e0 + (e1 - e0) * (when - t0) / (t1 - t0) if t1 > t0 else e0
    raise ValueError(f"no counter polls around {when}")


def tracker_energy_rows(device: str, nvml, handle) -> list[Row]:
    """train.py's GPU preset with cost on, while this script polls the same counter."""
    polls: list[tuple[float, float]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            polls.append((time.time(), nvml.nvmlDeviceGetTotalEnergyConsumption(handle)))
            time.sleep(0.005)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    with tempfile.TemporaryDirectory() as out_dir:
        try:
            result = subprocess.run(
                [sys.executable, str(REPO / "train.py"), str(REPO / "config" / "train_shakespeare.py"), f"--device={device}",
                 f"--out_dir={out_dir}", "--jsonl_log=True", "--cost_report=True", "--max_iters=400",
                 "--eval_interval=200", "--eval_iters=20", "--final_full_eval=False"],
                capture_output=True, text=True, cwd=REPO, timeout=1800)
        finally:
            stop.set()
            poller.join()
        if result.returncode != 0:
            return [Row("tracker energy, train.py GPU preset", "exit 0", result.stderr.strip().splitlines()[-1][:80], False)]
        records = [json.loads(line) for line in (Path(out_dir) / "progress.jsonl").read_text().splitlines()]
    start = next(r for r in records if r["type"] == "run_start")
    reports = [r for r in records if r["type"] == "report"]
    energies = [r.get("energy_j") for r in reports]
    sources = {r.get("energy_source") for r in reports}
    rising = None not in energies and all(b >= a for a, b in zip(energies, energies[1:]))
    rows = [Row("tracker energy never decreases", f"{len(reports)} reports, rising, source nvml",
                f"{'rising' if rising else energies}, source {'/'.join(map(str, sources))}"[:80],
                rising and sources == {"nvml"})]
    if not rising:
        return rows
    outside_j = (counter_at(polls, reports[-1]["time"]) - counter_at(polls, start["time"])) / 1000.0
    gap = energies[-1] / outside_j - 1 if outside_j > 0 else math.inf
    rows.append(Row("tracker energy = counter delta", f"within {TRACKER_AGREEMENT:.0%}",
                    f"{energies[-1] / 1000:.2f} kJ vs {outside_j / 1000:.2f} kJ ({gap:+.2%})", abs(gap) <= TRACKER_AGREEMENT))
    return rows


def energy_rows(device: torch.device, skip_train: bool, skip_energy: bool) -> list[Row]:
    nvml, handle = open_nvml(device)
    if nvml is None:
        return [Row("energy counter (cost=)", "an NVML energy counter", handle, None)]
    rows = [counter_read_row(nvml, handle)]
    if not skip_energy:
        rows.append(power_integral_row(device, nvml, handle))
    if not skip_train:
        rows += tracker_energy_rows(str(device), nvml, handle)
    nvml.nvmlShutdown()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0", help="the CUDA device to check (default cuda:0)")
    parser.add_argument("--skip_train", action="store_true",
                        help="leave out the train.py runs (dtype, compile, peak, MFU; tracker energy)")
    parser.add_argument("--skip_energy", action="store_true", help="leave out the 60-second counter-vs-power check")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing to check. "
              "Run this on a machine with an NVIDIA GPU and a CUDA build of torch.")
        return 0
    device = torch.device(args.device)
    torch.cuda.set_device(device)
    print(f"gpu_check on {torch.cuda.get_device_name(device)} ({device}), torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}")
    rows = [] if args.skip_train else training_rows(args.device)
    rows += sync_and_memory_rows(device)
    rows += fp16_and_cost_rows(device)
    rows += energy_rows(device, args.skip_train, args.skip_energy)
    print_table(rows)
    failed = [r.check for r in rows if r.ok is False]
    print(f"{len(rows) - len(failed)} of {len(rows)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
