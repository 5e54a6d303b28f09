"""What cost=True adds to a report on this machine: one CostMeter.read() plus figures(),
the work the tracker does for it at each report and exchange (never per step).

    python benchmarks/bench_cost_read.py

Measured with two package counters in a RAPL tree written to a temporary folder (real sysfs
files are read the same way; on most machines they are root-only), and with no counter at
all. The GPU counter's own read cost is checked on a GPU by benchmarks/gpu_check.py.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from trainprogress.cost import CostConfig, CostMeter  # noqa: E402

READS = 10_000


def fake_rapl(root: Path) -> None:
    for name in ("intel-rapl:0", "intel-rapl:1"):
        (root / name).mkdir()
        (root / name / "energy_uj").write_text("123456\n")
        (root / name / "max_energy_range_uj").write_text("262143328850\n")


def time_reads(meter: CostMeter) -> tuple[float, float]:
    """Median and 99th percentile microseconds of read() + figures()."""
    times = []
    for _ in range(READS):
        start = time.perf_counter_ns()
        meter.read()
        meter.figures(100.0, 50.0)
        times.append((time.perf_counter_ns() - start) / 1000)
    times.sort()
    return statistics.median(times), times[int(0.99 * READS)]


def main() -> None:
    prices = dict(price_per_device_hour=2.0, price_per_kwh=0.3, grid_kg_co2_per_kwh=0.4)
    with tempfile.TemporaryDirectory() as folder:
        fake_rapl(Path(folder))
        for label, root in (("2 RAPL packages", folder), ("no counter", str(Path(folder) / "none"))):
            median, p99 = time_reads(CostMeter(CostConfig(**prices, rapl_root=root), time.perf_counter, "cpu"))
            print(f"read + figures, {label}: median {median:.1f} us, 99th percentile {p99:.1f} us ({READS:,} reads)")


if __name__ == "__main__":
    main()
