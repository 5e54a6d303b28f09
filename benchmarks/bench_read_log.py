"""Time to read a 100,000-report JSONL log with trainprogress.read_log (target: well under a
second), next to the floor: json.loads of every line and nothing else.

    python benchmarks/bench_read_log.py [--reports 100000] [--repeats 3]

The log is written by the real JSONL sink from Reports shaped like the trainers' (loss,
lr, speed, MFU, tokens, CPU memory, val_loss and grad_norm, every 10th iteration an eval
pause event), once plain as train.py's and once with NanEcho's five report sections, which
make each line about four times longer. Each figure is the best of ``--repeats`` reads of a
file the OS already caches. Also timed, each from a fresh read: the summary (which parses
only the few report lines it needs) and the plot's series (which parse them all).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from trainprogress import read_log
from trainprogress.report import MemoryStats, Report, Section
from trainprogress.reading.series import build_series
from trainprogress.report import Event, RunInfo
from trainprogress.sinks.jsonl import JsonlSink
from trainprogress.reading.summary import summarize

NANECHO_SECTIONS = (
    Section("📊 Metrics", (("Connection Ratio", "65.00% (47,924/73,728 connections)"), ("Phase", "adaptive_mastery - mastery"))),
    Section("📚 Curriculum", (("Phase progress", "98% ██████████ (80-100% of the run)"), ("Next phase", "none (final phase)"))),
    Section("🧠 Model State", (("Active params", 80180), ("Total params", 105984))),
    Section("🎭 Persona Dimensions", tuple((f"dimension_{d}", "1.1334 ██████████████░░░░░░ 71%") for d in range(8))),
    Section("✍️ Sample", (("At 100%", "Echo Self ... can belong together " * 4),)),
)


def write(path: Path, reports: int, sections: tuple) -> None:
    """A log of ``reports`` scheduled reports (one per iteration) and its events, each line
    as the JSONL sink writes it."""
    sink = JsonlSink(path)
    now = time.time()
    sink.start(RunInfo(total_iters=reports, start_iter=0, interval_percent=100 / reports, tokens_per_iter=768,
                       flops_per_iter=1.2e9, peak_flops=4e11, peak_flops_source="measured", wall_time=now))
    memory = (MemoryStats("cpu", used_bytes=380_000_000, total_bytes=25_000_000_000),)
    for it in range(1, reports + 1):
        if it % 10 == 0:
            sink.event(Event("pause", it, now + it * 0.03, {"name": "eval", "duration_s": 0.4}))
        sink.report(Report(
            kind="scheduled", iteration=it, total_iters=reports, percent=100 * it / reports, elapsed_s=it * 0.03,
            paused_s=it * 0.004, eta_s=(reports - it) * 0.03, iters_per_s=33.3, ms_per_iter=30.0, loss=4.2 - it / reports,
            smoothed_loss=4.3 - it / reports, lr=1e-3, best_val_loss=2.0, mfu=0.12, peak_flops=4e11,
            peak_flops_source="measured", tokens_processed=768 * it, tokens_per_s=25_600.0, memory=memory,
            metrics={"val_loss": 2.0 + (it // 500) * 1e-3, "grad_norm": 0.8}, sections=sections,
            wall_time=now + it * 0.03,
        ))
    sink.close()


def best_s(function, repeats: int) -> tuple[float, float]:
    """The best wall and the best CPU seconds of ``repeats`` calls. On a machine shared with
    other jobs, the CPU time is what the read itself costs."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for name, sections in (("train.py-like", ()), ("NanEcho-like", NANECHO_SECTIONS)):
            path = Path(folder) / f"{name}.jsonl"
            write(path, args.reports, sections)
            data = path.read_bytes()
            floor = best_s(lambda: [json.loads(line) for line in data.splitlines()], args.repeats)
            read = best_s(lambda: read_log(path), args.repeats)
            assert len(read_log(path).runs[0].reports) == args.reports
            summary = best_s(lambda: summarize(read_log(path).runs[0]), args.repeats)
            series = best_s(lambda: build_series(read_log(path).runs[0]), args.repeats)
            print(f"{name}: {args.reports:,} reports, {len(data) / 1e6:.0f} MB. Seconds, CPU (wall): "
                  f"read_log {read[1]:.3f} ({read[0]:.3f}); json.loads of each line alone {floor[1]:.3f} "
                  f"({floor[0]:.3f}), ratio {read[1] / floor[1]:.2f}; read_log and summary {summary[1]:.3f}; "
                  f"read_log and plot series {series[1]:.3f}", flush=True)


if __name__ == "__main__":
    main()
