"""How well does trainprogress forecast a run's final loss? Scores
`trainprogress.forecast.forecast_loss` on real loss curves (../shared/forecast/curves and
benchmarks/curves, or the folders given) cut at 10% to 90% of each run, beside two
baselines, with and without the learning-rate schedule.

    python benchmarks/bench_forecast.py [CURVE_DIR ...] [--detail]

The curves are split into two halves, "tune" and "holdout" (alternately by name within each
folder and schedule shape): the forecast's constants were tuned looking at the "tune" half
only, and the targets are reported for the pool, each folder and each half.

Each CSV has `# key: value` header lines (total_steps, schedule JSON) and the columns
step,loss,lr,val_loss. The truth is the loss averaged over the run's last 1% of steps (at
least its last 20 steps). At
each cut (every 5% from 10% to 90%) every method sees the curve up to the cut:
- "forecast+lr": forecast_loss with the schedule (the lr column, interpolated to every step);
- "forecast": forecast_loss without it;
- "last": the last smoothed value (mean of the last 5% of steps so far), band +- the drop
  over the second half of the curve so far;
- "powerlaw": a plain power law in steps, L0 + A s^-alpha (best alpha of a grid), band
  +-1.645 standard errors of its extrapolation.
Printed per 10% cut: median and 90th percentile relative error, band coverage and median
band half-width (relative to the truth); then coverage per schedule shape (taken from the
lr column), the (curve, cut) pairs from 50% on where forecast+lr is worse than "last", the
slow-convergence warning rates at the 50% cut (targets 1% below and 1% above the final
loss; it fires when the whole band lies above the target) and the forecast's time on a
72,000-step curve.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainprogress.forecast import Forecast, forecast_loss  # noqa: E402
from trainprogress.schedule_areas import ScheduleAreas  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DIRS = (HERE.parent.parent / "shared" / "forecast" / "curves", HERE / "curves")
CUTS = [round(0.10 + 0.05 * k, 2) for k in range(17)]
METHODS = ("forecast+lr", "forecast", "last", "powerlaw")


class Curve:
    def __init__(self, path: Path):
        meta, rows = {}, []
        for line in path.read_text().splitlines():
            if line.startswith("#"):
                key, _, value = line[1:].partition(":")
                meta[key.strip()] = value.strip()
            elif line and not line.startswith("step"):
                step, loss, lr = line.split(",")[:3]
                rows.append((float(step), float(loss), float(lr) if lr else np.nan))
        table = np.array(rows)
        self.name = path.stem
        self.folder = f"{path.parent.parent.name}/{path.parent.name}"
        self.half = "tune"  # set by split_halves
        self.total = int(meta["total_steps"])
        self.steps, self.losses, lr_logged = table[:, 0], table[:, 1], table[:, 2]
        schedule = json.loads(meta.get("schedule", "{}"))
        self.lrs = every_step_lr(self.steps, lr_logged, self.total, schedule.get("warmup", 0))
        # The last 1% of the run, and at least its last 20 steps: a short run's 1% is 3 noisy batches.
        self.truth = float(self.losses[self.steps >= min(0.99 * self.total, self.total - 19)].mean())
        self.shape = schedule_shape(self.lrs)


def every_step_lr(steps, lr_logged, total, warmup):
    """The lr column interpolated to steps 1..total (a linear warm-up added where the log starts after it)."""
    known = np.isfinite(lr_logged)
    xs, ys = list(steps[known]), list(lr_logged[known])
    if warmup and xs[0] > 1:
        xs, ys = [0.0, float(min(warmup, xs[0]))] + xs, [0.0, ys[0]] + ys
    return np.interp(np.arange(1, total + 1), xs, ys)


def schedule_shape(lrs) -> str:
    peak = lrs.max()
    if lrs[-1] > 0.9 * peak:
        return "constant"
    at_peak = int(np.argmax(lrs >= 0.99 * peak))
    decay_begins = at_peak + int(np.argmax(lrs[at_peak:] < 0.99 * peak))
    return "decay from start" if decay_begins - at_peak < 0.1 * lrs.size else "hold then decay"


def last_smoothed(steps, losses) -> Forecast:
    current = float(losses[steps >= 0.95 * steps[-1]].mean())
    earlier = float(losses[steps >= 0.5 * steps[-1]][0])
    margin = abs(earlier - current)
    return Forecast(current, current - margin, current + margin)


def plain_power_law(steps, losses, total) -> Forecast | None:
    inside = steps >= 0.25 * steps[-1]
    s, y = steps[inside], losses[inside]
    if s.size < 5:
        return None
    best = None
    for alpha in np.geomspace(0.05, 2.0, 40):
        design = np.stack([np.ones_like(s), s ** -alpha], axis=1)
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        sse = float(((y - design @ coef) ** 2).sum())
        if best is None or sse < best[0]:
            best = (sse, alpha, coef, design)
    sse, alpha, coef, design = best
    sigma2 = sse / max(s.size - 2, 1)
    row = np.array([1.0, total ** -alpha])
    sd = float(np.sqrt(row @ np.linalg.pinv(design.T @ design) @ row * sigma2))
    final = float(row @ coef)
    return Forecast(final, final - 1.645 * sd, final + 1.645 * sd)


def predict(method, curve, cut_step):
    seen = curve.steps <= cut_step
    steps, losses = curve.steps[seen], curve.losses[seen]
    if method == "forecast+lr":
        return forecast_loss(steps, losses, curve.total, curve.lrs)
    if method == "forecast":
        return forecast_loss(steps, losses, curve.total)
    if steps.size < 10:
        return None
    if method == "last":
        return last_smoothed(steps, losses)
    return plain_power_law(steps, losses, curve.total)


def score(curves):
    """rows[(method, cut)] = list of (curve, forecast) for the curves it spoke on."""
    rows = {}
    for curve in curves:
        for cut in CUTS:
            for method in METHODS:
                result = predict(method, curve, cut * curve.total)
                if result is not None:
                    rows.setdefault((method, cut), []).append((curve, result))
    return rows


def stats(pairs):
    errors = np.array([abs(f.final - c.truth) / c.truth for c, f in pairs])
    covered = np.array([f.low <= c.truth <= f.high for c, f in pairs])
    half = np.array([(f.high - f.low) / 2 / c.truth for c, f in pairs])
    return errors, covered, half


def print_detail(rows):
    for cut in CUTS:
        for curve, f in rows.get(("forecast+lr", cut), []):
            print(f"{curve.name:26s} {int(round(cut * 100)):3d}% truth {curve.truth:.4f} forecast {f.final:.4f} "
                  f"({f.low:.4f} to {f.high:.4f}) err {100 * (f.final / curve.truth - 1):+.2f}% "
                  f"half {50 * (f.high - f.low) / curve.truth:.2f}%")


def print_cut_table(rows):
    print("| cut | n | " + " | ".join(f"{m} err med / p90, cover, half-width" for m in METHODS) + " |")
    print("|---|---|" + "---|" * len(METHODS))
    for cut in CUTS[::2]:
        cells = []
        n = len(rows.get(("forecast+lr", cut), []))
        for method in METHODS:
            pairs = rows.get((method, cut), [])
            if not pairs:
                cells.append("-")
                continue
            errors, covered, half = stats(pairs)
            cells.append(f"{100 * np.median(errors):.2f}% / {100 * np.quantile(errors, 0.9):.2f}%, "
                         f"{100 * covered.mean():.0f}%, {100 * np.median(half):.2f}%")
        print(f"| {int(round(cut * 100))}% | {n} | " + " | ".join(cells) + " |")


def print_pooled(rows, curves):
    print("\nPooled over all cuts (every 5%, 10% to 90%): coverage, overall and per shape")
    for method in METHODS:
        pairs = [p for cut in CUTS for p in rows.get((method, cut), [])]
        errors, covered, _ = stats(pairs)
        per_shape = []
        for shape in sorted({c.shape for c in curves}):
            mask = np.array([c.shape == shape for c, _ in pairs])
            if mask.any():
                per_shape.append(f"{shape} {100 * covered[mask].mean():.0f}% (n={mask.sum()})")
        print(f"  {method:12s} median err {100 * np.median(errors):.2f}%  coverage "
              f"{100 * covered.mean():.0f}% (n={len(pairs)}); " + "; ".join(per_shape))


def print_worse_than_last(rows):
    worse = []
    for cut in CUTS:
        if cut < 0.5:
            continue
        last = {c.name: f for c, f in rows.get(("last", cut), [])}
        for curve, f in rows.get(("forecast+lr", cut), []):
            if curve.name in last and abs(f.final - curve.truth) > abs(last[curve.name].final - curve.truth):
                worse.append(f"{curve.name}@{int(round(cut * 100))}%")
    print(f"\nforecast+lr worse than 'last' from 50% on: {len(worse)} of "
          f"{sum(len(rows.get(('forecast+lr', c), [])) for c in CUTS if c >= 0.5)}: {', '.join(worse) or 'none'}")


def print_warning_rates(rows):
    for method in ("forecast+lr", "forecast"):
        pairs = rows.get((method, 0.5), [])
        below = np.mean([f.low > 0.99 * c.truth for c, f in pairs])
        above = np.mean([f.low > 1.01 * c.truth for c, f in pairs])
        print(f"slow-convergence warning at 50% ({method}): fires for {100 * below:.0f}% of targets 1% below "
              f"the final loss, {100 * above:.0f}% of targets 1% above (n={len(pairs)})")


def only(rows, keep):
    """rows restricted to the curves that ``keep`` accepts."""
    return {key: [p for p in pairs if keep(p[0])] for key, pairs in rows.items()}


def targets_line(rows):
    """The forecast's targets for forecast+lr, in one table row."""
    def at(cut):
        return rows.get(("forecast+lr", cut), [])
    cells = []
    for cut in (0.3, 0.5, 0.7):
        errors, _, half = stats(at(cut)) if at(cut) else (np.array([np.nan]),) * 3
        cells.append(f"{100 * np.median(errors):.2f}% / {100 * np.median(half):.2f}%")
    p90 = max((np.quantile(stats(at(c))[0], 0.9) for c in CUTS if c >= 0.3 and at(c)), default=np.nan)
    pooled = [p for c in CUTS for p in at(c)]
    coverage = stats(pooled)[1].mean() if pooled else np.nan
    worse = total = 0
    for cut in (c for c in CUTS if c >= 0.5):
        last = {c.name: f for c, f in rows.get(("last", cut), [])}
        for curve, f in at(cut):
            total += 1
            worse += abs(f.final - curve.truth) > abs(last[curve.name].final - curve.truth)
    fifty = at(0.5)
    below = np.mean([f.low > 0.99 * c.truth for c, f in fifty]) if fifty else np.nan
    above = np.mean([f.low > 1.01 * c.truth for c, f in fifty]) if fifty else np.nan
    curves = len({c.name for c, _ in pooled})
    return (f"{curves} | " + " | ".join(cells) + f" | {100 * p90:.2f}% | {100 * coverage:.0f}% | {worse} of {total} | "
            f"{100 * below:.0f}% / {100 * above:.0f}%")


def print_targets(rows, curves):
    print("\nTargets (forecast+lr): curves | 30% err med / half-width | 50% | 70% | worst p90 err from 30% | coverage "
          "10-90% | worse than 'last' from 50% | warning at 50%, 1% below / 1% above")
    print("| curves | group | 30% err / half | 50% err / half | 70% err / half | p90 max | cover | worse than last | "
          "warn below / above |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups = [("all", lambda c: True)]
    groups += [(f"half {h}", lambda c, h=h: c.half == h) for h in ("tune", "holdout")]
    groups += [(f"folder {f}", lambda c, f=f: c.folder == f) for f in sorted({c.folder for c in curves})]
    groups += [(f"shape {s}", lambda c, s=s: c.shape == s) for s in sorted({c.shape for c in curves})]
    for name, keep in groups:
        line = targets_line(only(rows, keep))
        count, rest = line.split(" | ", 1)
        print(f"| {count} | {name} | {rest} |")


def best_of(function, repeats=20):
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return f"median {1000 * np.median(times):.1f} ms, min {1000 * min(times):.1f} ms"


def time_72k():
    total = 72_000
    steps = np.arange(1, total + 1, dtype=float)
    lrs = 0.5 * (1 + np.cos(np.pi * steps / total))
    rng = np.random.default_rng(0)
    losses = 2.0 + 3.0 * np.cumsum(lrs) ** -0.4 + rng.normal(0, 0.05, total)
    cut = int(0.9 * total)
    areas = ScheduleAreas.from_schedule(np, lambda step: float(lrs[step - 1]), total)
    print("time on a 72,000-step curve (64,800 losses, schedule known; limit 50 ms; on a shared machine the min "
          "is the uncontended cost):")
    print("  a report's forecast, the schedule's areas kept (the tracker): "
          + best_of(lambda: forecast_loss(steps[:cut], losses[:cut], total, areas)))
    print("  forecast_loss with the lr array (sums it each call): "
          + best_of(lambda: forecast_loss(steps[:cut], losses[:cut], total, lrs)))
    print("  the areas from a Python schedule callable, once per run: "
          + best_of(lambda: ScheduleAreas.from_schedule(np, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)),
                                                        total), repeats=5))
    long_run = 5_000_000
    print("  the same for a 5,000,000-step run (65,536 calls on a grid): "
          + best_of(lambda: ScheduleAreas.from_schedule(
              np, lambda step: 0.5 * (1 + math.cos(math.pi * step / long_run)), long_run), repeats=5))


def split_halves(curves):
    """Alternate the curves of each (folder, shape) between the "tune" and "holdout" halves."""
    groups = {}
    for curve in sorted(curves, key=lambda c: c.name):
        groups.setdefault((curve.folder, curve.shape), []).append(curve)
    for members in groups.values():
        for index, curve in enumerate(members):
            curve.half = "tune" if index % 2 == 0 else "holdout"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", default=[str(d) for d in DEFAULT_DIRS])
    parser.add_argument("--detail", action="store_true", help="print every forecast+lr result")
    args = parser.parse_args()
    paths = [p for folder in args.folders for p in sorted(Path(folder).glob("*.csv"))]
    if not paths:
        sys.exit(f"no *.csv curves in {', '.join(args.folders)}: pass folders of loss curves")
    curves = [Curve(p) for p in paths]
    split_halves(curves)
    print("curves: " + ", ".join(f"{c.name} ({c.shape}, {c.half})" for c in curves))
    rows = score(curves)
    if args.detail:
        print_detail(rows)
    print_cut_table(rows)
    print_pooled(rows, curves)
    print_worse_than_last(rows)
    print_warning_rates(rows)
    print_targets(rows, curves)
    time_72k()


if __name__ == "__main__":
    main()
