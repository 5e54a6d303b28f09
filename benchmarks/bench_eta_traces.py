"""How honest is the ETA on real training runs? Replays the step-time traces in
../shared/traces (or the folder given) on a fake clock and scores each estimator.

    python benchmarks/bench_eta_traces.py [TRACE_DIR] [--explain CASE]

At every 1% of each run (from 5% to 99%) the estimate is compared with the true remaining
time of the trace: error = |ETA - true| / true. Printed per case, one line: the median and
the 90th percentile of that error, for trainprogress's estimator and for two common
baselines measured side by side on the same events, and whether the estimator's median
error is at or below the better baseline's ("ok"; else by how many points it is above):
- "average": remaining x (elapsed / iterations done), the whole-run mean rate;
- "ema": remaining x an exponential moving average of step time (smoothing 0.3 per
  update, as tqdm's default), the estimate progress bars usually show.

After the real traces come synthetic runs with heavy-tailed random stalls (data-loader
waits of 3x to 30x a step, log-uniform, on about one step in twenty, at random), at three
run lengths and three seeds each. The last line counts the cases where the estimator is
at or below the better baseline.

``--explain CASE`` prints instead, for the cases whose name contains CASE, at every report
the candidate the estimator follows and the signed error of its estimate, of each candidate
forecast it judges (model, blend; the whole-run average is one of the baselines) and of the
baselines: where and why it is above a baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path
from statistics import median, quantiles
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainprogress.eta import EtaEstimator  # noqa: E402
from trainprogress.run_size import RunSize  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "traces"


def load_steps(path: Path) -> tuple[int, list[float]]:
    """(total_iters, per-iteration wall seconds) of a trace; gaps are added to the next step."""
    data = json.loads(path.read_text())
    steps, carry = [], 0.0
    for kind, seconds in data["events"]:
        if kind == "gap":
            carry += seconds
        else:
            steps.append(seconds + carry)
            carry = 0.0
    return data["total_iters"], steps


def heavy_tailed_stalls(total: int, seed: int, step_s: float = 0.1, stall_p: float = 0.05) -> list[float]:
    """Step times of a steady run (5% jitter) where about one step in 1/``stall_p`` waits
    3x to 30x a step more (log-uniform: many short waits, a few long ones)."""
    rng = random.Random(seed)
    steps = []
    for _ in range(total):
        t = step_s * rng.uniform(0.95, 1.05)
        if rng.random() < stall_p:
            t += step_s * math.exp(rng.uniform(math.log(3), math.log(30)))
        steps.append(t)
    return steps


def cases(folder: Path) -> list[tuple[str, int, list[float]]]:
    """(name, total_iters, step times) of every real trace, then the synthetic stall runs."""
    out = [(path.stem, *load_steps(path)) for path in sorted(folder.glob("*.json"))]
    for total in (500, 5_000, 50_000):
        for seed in range(3):
            out.append((f"random stalls 3-30x, {total} steps, seed {seed}", total, heavy_tailed_stalls(total, seed)))
    return out


def replay(total: int, steps: list[float]) -> Iterator[tuple[int, float, EtaEstimator, dict[str, float]]]:
    """Feeds the steps one by one; at each 1% boundary from 5% to 99% yields (iteration, true
    remaining seconds, the estimator, each estimate of the remaining seconds by name:
    "trainprogress" and the two baselines)."""
    remaining_true = [0.0] * (len(steps) + 1)
    for i in range(len(steps) - 1, -1, -1):
        remaining_true[i] = remaining_true[i + 1] + steps[i]
    checkpoints = {max(1, round(total * p / 100)) for p in range(5, 100)}
    estimator = EtaEstimator(RunSize(total), window=min(2000, max(10, round(0.02 * total))))
    elapsed, ema = 0.0, None
    for i, t in enumerate(steps, start=1):
        estimator.add_steps([t], i)
        elapsed += t
        ema = t if ema is None else 0.3 * t + 0.7 * ema
        if i in checkpoints and remaining_true[i] > 0:
            left = total - i
            eta = estimator.remaining_s(i)
            estimates = {"trainprogress": eta if eta is not None else 0.0, "average": left * elapsed / i, "ema": left * ema}
            yield i, remaining_true[i], estimator, estimates


def score(total: int, steps: list[float]) -> dict[str, list[float]]:
    """Relative ETA errors at each 1% boundary from 5% to 99%, per estimator."""
    errors: dict[str, list[float]] = {"trainprogress": [], "average": [], "ema": []}
    for _, truth, _, estimates in replay(total, steps):
        for name, eta in estimates.items():
            errors[name].append(abs(eta - truth) / truth)
    return errors


def explain(total: int, steps: list[float]) -> None:
    """Prints, at each 1% boundary, the candidate the estimator follows and the signed error
    (%) of its estimate, of its other candidate forecasts (model, blend) and of the
    baselines (the whole-run average is a candidate too)."""
    print(f"{'iteration':>9} {'follows':>8}" + "".join(f"{name:>14}" for name in ("trainprogress", "model", "blend", "average", "ema")))
    for i, truth, estimator, estimates in replay(total, steps):
        candidates = estimator.forecasts(i) or {}
        signed = [estimates["trainprogress"]] + [candidates.get(name, 0.0) * (total - i) for name in ("model", "blend")]
        signed += [estimates["average"], estimates["ema"]]
        print(f"{i:9d} {estimator.chosen:>8}" + "".join(f"{100 * (eta - truth) / truth:13.2f}%" for eta in signed))


def summarise(errors: list[float]) -> tuple[float, float]:
    """(median, 90th percentile) of relative errors, in percent."""
    p90 = quantiles(errors, n=10)[-1] if len(errors) > 1 else errors[0]
    return 100 * median(errors), 100 * p90


def main() -> None:
    parser = argparse.ArgumentParser(description="ETA error on real step-time traces and on random stalls.")
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR, help="folder of traces (*.json)")
    parser.add_argument("--explain", metavar="CASE", help="print every report of the cases whose name contains CASE")
    args = parser.parse_args()
    if not list(args.folder.glob("*.json")):
        sys.exit(f"no traces (*.json) in {args.folder}; pass the traces folder as the first argument")
    all_cases = cases(args.folder)
    if args.explain:
        chosen = [case for case in all_cases if args.explain in case[0]]
        if not chosen:
            sys.exit(f"no case name contains {args.explain!r}; the cases: " + "; ".join(case for case, _, _ in all_cases))
        for case, total, steps in chosen:
            print(case)
            explain(total, steps)
        return
    names = ("trainprogress", "average", "ema")
    print(f"{'':45}" + "".join(f"{name:>17}" for name in names) + "   vs better baseline")
    print(f"{'case':45}" + f"{'median':>9}{'p90':>8}" * len(names) + "   (median)")
    at_or_below = 0
    for case, total, steps in all_cases:
        figures = {name: summarise(errs) for name, errs in score(total, steps).items()}
        above = figures["trainprogress"][0] - min(figures["average"][0], figures["ema"][0])
        at_or_below += above <= 0
        verdict = "ok" if above <= 0 else f"+{above:.2g} points"
        row = "".join(f"{med:8.2f}%{p90:7.2f}%" for med, p90 in figures.values())
        print(f"{case[:45]:45}{row}   {verdict}")
    print(f"estimator at or below the better baseline (median error) in {at_or_below} of {len(all_cases)} cases")


if __name__ == "__main__":
    main()
