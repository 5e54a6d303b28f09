"""Where the run will end: the final loss, forecast from the curve so far, with a band.

With the learning-rate schedule known, the curve is fitted with the LR-annealing law of
Tissue et al. (2024), L(s) = L0 + A * S1(s)^-alpha - C * S2(s): S1 is the area under the
learning rate so far, S2 the annealing area (the rate's drops, carried with momentum).
Without it, a power law in steps, L0 + A * s^-alpha. For each alpha on a grid the law is
linear in (L0, A, C), so each fit is one small weighted least-squares solve; the alphas
are averaged by how well they fit (a Bayesian model average), and the band is the average's
spread plus each fit's extrapolation uncertainty, plus the law's own error on this curve:
fitted to the curve up to 60% and 80% of the current step, how far off it forecast the
current loss, scaled to the forecast's horizon (a backtest). That last part widens the band
of a curve the law does not follow (a plateau, then a second drop) and leaves alone one it does.

An anneal that has not started yet cannot be fitted: a prior on its size (a full anneal takes
ANNEAL_DROP of the loss, give or take ANNEAL_DROP_SD) stands in for it, and gives way as the
decay shows in the curve. That prior, the band's INFLATION, the backtest's BACKTEST_AT and
BACKTEST_WEIGHT and the window are the only tuned constants (with the choice to fit from the
warm-up's end), tuned on the "tune" half of the curves; benchmarks/bench_forecast.py measures
what they give on both halves.

numpy is needed (the `forecast` extra); it is imported when the first forecast is made.
"""

from __future__ import annotations

from dataclasses import dataclass

from .schedule_areas import ScheduleAreas

# Tuned on the "tune" half of the curves (benchmarks/bench_forecast.py), chosen to be defensible:
# a full learning-rate anneal lowers an LLM's loss by a few percent (3 +- 2% here).
ANNEAL_DROP = 0.03
ANNEAL_DROP_SD = 0.02
# The fit residuals are autocorrelated: the residual noise is taken this many times larger than
# it looks (the law's own misfit is the backtest's part of the band; the anneal prior is not widened).
INFLATION = 2.0
Z_BAND = 1.645                  # a 90% band
WINDOW_START = 0.25             # fit on the observed curve from this fraction of the current step,
AFTER_WARMUP_UP_TO = 0.5        # or from the warm-up's end when that is at most this fraction
MIN_FRACTION = 0.1              # silent before 10% of the run
MIN_POINTS = 10                 # ...or with fewer logged losses than this
BINS = 48                       # log-spaced bins the curve is averaged into
BACKTEST_AT = (0.6, 0.8)       # the law's own error is measured from these fractions of the curve so far,
BACKTEST_WEIGHT = 0.5           # and this share of its mean square (scaled to the horizon) joins the variance
FINAL_SPAN = 0.01              # the final loss is the mean over the run's last 1% of steps,
FINAL_MIN_STEPS = 20            # and at least over its last 20 steps
ALPHAS = tuple(0.04 * 1.16 ** k for k in range(28))   # 0.04 .. about 2.2


@dataclass(frozen=True)
class Forecast:
    """The loss forecast for the run's last step, with a band that should hold it."""

    final: float
    low: float
    high: float


def forecast_loss(steps, losses, total_steps, lrs=None) -> Forecast | None:
    """The final loss of a run of `total_steps` optimizer steps (the mean loss over its last 1%
    of steps, at least its last 20), or None with too little to go on.

    `steps` are the 1-based steps logged so far (increasing), `losses` their losses, `lrs`
    the learning rate of every step 1..total_steps when the schedule is known, or the
    schedule's ScheduleAreas made once for the run (which saves summing them at each call).
    """
    np = _numpy()
    steps = np.asarray(steps, dtype=float)
    losses = np.asarray(losses, dtype=float)
    keep = np.isfinite(losses) & (steps >= 1)
    steps, losses = steps[keep], losses[keep]
    if total_steps <= 0 or steps.size < MIN_POINTS or steps[-1] < MIN_FRACTION * total_steps:
        return None
    current = _current_smoothed(np, steps, losses)
    curve = _curve(np, lrs, total_steps)
    estimate = _fit_until(np, curve, steps, losses, total_steps, total_steps, current)
    if estimate is None:
        return None
    mean, sd = estimate
    sd = (sd ** 2 + BACKTEST_WEIGHT * _backtest_square(np, curve, steps, losses, total_steps, current)
          + _final_mean_variance(np, steps, losses, total_steps)) ** 0.5
    final = min(max(mean, 0.0), current)
    # Without the schedule an anneal may still come: the band's low end makes room for one.
    unknown_anneal = 0.0 if isinstance(curve, ScheduleAreas) else (ANNEAL_DROP + Z_BAND * ANNEAL_DROP_SD) * current
    low = min(max(mean - Z_BAND * sd - unknown_anneal, 0.0), final)
    high = max(min(mean + Z_BAND * sd, current), final)
    return Forecast(final=float(final), low=float(low), high=float(high))


def _final_mean_variance(np, steps, losses, total_steps):
    """The noise of the final loss as measured, the mean of the losses logged over the run's
    last FINAL_SPAN (at least its last FINAL_MIN_STEPS steps): the recent losses' scatter
    (from consecutive differences, blind to the trend) over the number of them in that span."""
    recent = steps >= 0.75 * steps[-1]
    if recent.sum() < 3:
        return 0.0
    s, v = steps[recent], losses[recent]
    scatter = float(np.mean(np.diff(v) ** 2)) / 2
    per_step = (s.size - 1) / max(s[-1] - s[0], 1.0)
    count = max(1.0, per_step * max(FINAL_SPAN * total_steps, FINAL_MIN_STEPS))
    return scatter / count


def _fit_until(np, curve, steps, losses, target_step, total_steps, current):
    """Mean and sd of the loss at ``target_step``, fitted to the whole curve given (from the
    window's start on), or None with too little to fit."""
    # The warm-up's losses follow no law of the rate's area: leave them out while there is enough after them.
    start = steps[-1] * max(WINDOW_START, min(curve.warmup_end / steps[-1], AFTER_WARMUP_UP_TO))
    x, y = _binned(np, steps, losses, start)
    if x.size < 5 or current <= 0:
        return None
    return _model_average(np, curve, x, y, target_step, total_steps, current)


def _backtest_square(np, curve, steps, losses, total_steps, current):
    """The law's own extrapolation error on this curve: fitted to the curve up to BACKTEST_AT
    of the current step, how far off is its forecast of the current loss? Each error is scaled
    to the real forecast's horizon (by log steps), and their mean square is returned (0 when
    too early to tell). It widens the band of a curve the law does not follow (a second drop
    after a plateau, a phase change) and leaves a curve it follows alone."""
    now = steps[-1]
    recent = steps >= 0.95 * now
    now_step = float(steps[recent].mean()) if recent.sum() >= 5 else float(steps[-5:].mean())
    errors = []
    for fraction in BACKTEST_AT:
        seen = steps <= fraction * now
        if seen.sum() < MIN_POINTS:
            continue
        past = _current_smoothed(np, steps[seen], losses[seen])
        estimate = _fit_until(np, curve, steps[seen], losses[seen], now_step, total_steps, past)
        if estimate is None:
            continue
        horizon = np.log(total_steps / now) / np.log(now_step / steps[seen][-1])
        errors.append((estimate[0] - current) * horizon)
    return float(np.mean(np.square(errors))) if errors else 0.0


def _numpy():
    try:
        import numpy
    except ImportError as error:  # pragma: no cover - numpy is in every test environment
        raise ImportError(
            "the loss forecast needs numpy: pip install 'trainprogress[forecast]'") from error
    return numpy


def _curve(np, lrs, total_steps):
    """The schedule's areas when it is known (and covers the run), else a power law in steps."""
    if isinstance(lrs, ScheduleAreas):
        return lrs if lrs.total_steps == total_steps else _StepCurve(np, total_steps)
    rates = None if lrs is None else np.asarray(lrs[:total_steps], dtype=float)
    if rates is not None and rates.size == total_steps and np.isfinite(rates).all() and rates.max() > 0:
        return ScheduleAreas.from_rates(np, rates)
    return _StepCurve(np, total_steps)


def _current_smoothed(np, steps, losses):
    """The mean loss over the last 5% of the steps so far (at least the last 5 points)."""
    recent = steps >= steps[-1] * 0.95
    if recent.sum() < 5:
        recent = np.arange(steps.size) >= steps.size - 5
    return float(losses[recent].mean())


def _binned(np, steps, losses, start):
    """The curve from step ``start`` on, averaged into log-spaced bins."""
    inside = steps >= start
    s, v = steps[inside], losses[inside]
    edges = np.geomspace(max(s[0], 1.0), s[-1] + 1, BINS + 1)
    index = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, BINS - 1)
    counts = np.bincount(index, minlength=BINS)
    filled = counts > 0
    mean_step = np.bincount(index, weights=s, minlength=BINS)[filled] / counts[filled]
    mean_loss = np.bincount(index, weights=v, minlength=BINS)[filled] / counts[filled]
    return mean_step, mean_loss


class _StepCurve:
    """No schedule: a power law in steps; no annealing term."""

    has_anneal = False
    warmup_end = 0

    def __init__(self, np, total_steps):
        self.np = np
        self.total_steps = total_steps

    def progress(self, step):
        return self.np.asarray(step, dtype=float)

    def anneal(self, step):
        return self.np.zeros_like(self.np.asarray(step, dtype=float))


def _model_average(np, curve, x, y, target_step, total_steps, current):
    """Mean and sd of the loss at ``target_step``, averaged over the alpha grid by fit quality.
    The anneal's prior is on the whole run's anneal (at ``total_steps``)."""
    progress, anneal = curve.progress(x), curve.anneal(x)
    target_progress, target_anneal = float(curve.progress(target_step)), float(curve.anneal(target_step))
    final_anneal = float(curve.anneal(total_steps))
    use_anneal = curve.has_anneal and final_anneal > 0
    results = []
    for alpha in ALPHAS:
        fit = _fit_one(np, alpha, progress, anneal, y, (target_progress, target_anneal), final_anneal,
                       current, use_anneal)
        if fit is not None:
            results.append(fit)
    if not results:
        return None
    sse = np.array([r[0] for r in results])
    means = np.array([r[1] for r in results])
    variances = np.array([r[2] for r in results])
    dof = max(y.size - 3, 1)
    sigma2 = max(sse.min() / dof, 1e-18) * INFLATION ** 2
    weights = np.exp(-0.5 * (sse - sse.min()) / sigma2)
    weights /= weights.sum()
    mean = float(weights @ means)
    spread = float(weights @ (means - mean) ** 2)
    variance = float(weights @ variances) + spread
    return mean, variance ** 0.5


def _fit_one(np, alpha, progress, anneal, y, target, final_anneal, current, use_anneal):
    """One weighted least-squares fit at a fixed alpha: (sse, mean and variance at the target
    step, whose S1 and S2 are ``target``)."""
    columns = [np.ones_like(y), progress ** -alpha]
    target_row = [1.0, target[0] ** -alpha]
    if use_anneal:
        columns.append(-anneal)
        target_row.append(-target[1])
    design = np.stack(columns, axis=1)
    coef = _solve(np, design, y, use_anneal, final_anneal, current)
    if coef[1] < 0 or coef[0] < 0:  # a rising curve or a negative floor: no law of this family
        return None
    residual = y - design @ coef
    sse = float(residual @ residual)
    sigma2 = max(sse / max(y.size - design.shape[1], 1), 1e-18) * INFLATION ** 2
    covariance = _posterior_covariance(np, design, sigma2, use_anneal, final_anneal, current)
    row = np.array(target_row)
    return sse, float(row @ coef), float(row @ covariance @ row)


def _solve(np, design, y, use_anneal, final_anneal, current):
    """Least squares, with the anneal's prior as one pseudo-observation when the law has C."""
    if not use_anneal:
        coef = _least_squares(np, design, y)
        return coef
    first = _least_squares(np, design[:, :2], y)
    noise = max(float(np.std(y - design[:, :2] @ first)), 1e-6)
    prior_row, prior_value = _anneal_prior(np, final_anneal, current)
    stacked = np.vstack([design / noise, prior_row])
    coef = _least_squares(np, stacked, np.append(y / noise, prior_value))
    if coef[2] < 0:
        coef[2] = 0.0
        coef[:2] = _least_squares(np, design[:, :2], y)
    return coef


def _least_squares(np, design, y):
    """Least squares by the normal equations on scaled columns: a 3x3 solve is far cheaper
    than lstsq's SVD, and the scaling keeps it well conditioned."""
    scale = np.maximum(np.abs(design).max(axis=0), 1e-300)
    scaled = design / scale
    gram = scaled.T @ scaled
    gram[np.diag_indices_from(gram)] += 1e-12
    return np.linalg.solve(gram, scaled.T @ y) / scale


def _anneal_prior(np, final_anneal, current):
    """C * S2(end) ~ N(ANNEAL_DROP * loss, (ANNEAL_DROP_SD * loss)^2) as one row of unit weight
    (the data rows are divided by their noise)."""
    scale = ANNEAL_DROP_SD * current
    row = np.array([0.0, 0.0, final_anneal / scale])
    return row, ANNEAL_DROP * current / scale


def _posterior_covariance(np, design, sigma2, use_anneal, final_anneal, current):
    """The coefficients' covariance: the data's precision plus the anneal prior's."""
    precision = design.T @ design / sigma2
    if use_anneal:
        precision[2, 2] += (final_anneal / (ANNEAL_DROP_SD * current)) ** 2
    precision[np.diag_indices_from(precision)] *= 1 + 1e-12
    return np.linalg.inv(precision)
