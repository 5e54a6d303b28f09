"""Where the run will end: the final loss, forecast from the curve so far, with a band.

With the learning-rate schedule known, the curve is fitted with two laws, L(s) = L0 + A *
S1(s)^-alpha - B * D(s), S1 the area under the learning rate so far and D an anneal term
(trainprogress.schedule_areas): the multi-power law's loss drop LD (Luo et al. 2025) and the
LR-annealing law's annealing area S2 (Tissue et al. 2024). Without the schedule, a power law
in steps, L0 + A * s^-alpha. For each alpha on a grid a law is linear in (L0, A, B), so the
fits are a batch of small weighted least-squares solves; the laws and alphas are averaged by
how well they fit (a Bayesian model average), and the band is the average's spread plus each
fit's extrapolation uncertainty, plus the laws' own error on this curve: fitted to the curve
up to 60% and 80% of the current step, how far off they forecast the current loss, scaled to
the forecast's horizon (a backtest). That last part widens the band of a curve the laws do
not follow (a plateau, then a second drop) and leaves alone one they do.

An anneal that has not started yet cannot be fitted: a prior on its size (a full anneal takes
ANNEAL_DROP of the loss, give or take ANNEAL_DROP_SD) stands in for it, and gives way as the
decay shows in the curve. That prior, the band's INFLATION, the backtest's BACKTEST_AT and
BACKTEST_WEIGHT, the window and the loss drop's shape (schedule_areas.DROP_*) are the only
tuned constants (with the choice to fit from the warm-up's end), tuned on the "tune" half of
the curves; benchmarks/bench_forecast.py measures what they give on both halves.

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
WINDOW_START = 0.4              # fit on the observed curve from this fraction of the current step,
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


def _model_average(np, curve, x, y, target_step, total_steps, current):
    """Mean and sd of the loss at ``target_step``, averaged by fit quality over the alpha grid
    and, with a schedule, over its anneal terms (the multi-power law's loss drop and the
    LR-annealing law's S2: the one that fits the curve better weighs more). The anneal's prior
    is on the whole run's anneal (at ``total_steps``)."""
    progress, target_progress = curve.progress(x), float(curve.progress(target_step))
    fits = []
    for anneal in curve.anneal_terms() if curve.has_anneal else (None,):
        term = None
        if anneal is not None and float(anneal(total_steps)) > 0:
            term = (anneal(x), float(anneal(target_step)), float(anneal(total_steps)))
        fits.append(_fits(np, progress, y, target_progress, term, current))
    sse, means, variances = (np.concatenate(part) for part in zip(*fits))
    if not sse.size:
        return None
    dof = max(y.size - 3, 1)
    sigma2 = max(sse.min() / dof, 1e-18) * INFLATION ** 2
    weights = np.exp(-0.5 * (sse - sse.min()) / sigma2)
    weights /= weights.sum()
    mean = float(weights @ means)
    spread = float(weights @ (means - mean) ** 2)
    variance = float(weights @ variances) + spread
    return mean, variance ** 0.5


def _fits(np, progress, y, target_progress, term, current):
    """Weighted least-squares fits at every alpha of the grid at once: their (sse, mean and
    variance at the target step) as arrays, leaving out the fits that are no law of this family
    (a rising curve or a negative floor). ``term``: the anneal term at the curve's points, the
    target step and the run's end, or None for a law without one."""
    alphas = np.asarray(ALPHAS)
    power = progress[None, :] ** -alphas[:, None]
    design = np.stack([np.ones_like(power), power], axis=2)
    rows = np.stack([np.ones_like(alphas), target_progress ** -alphas], axis=1)
    coef = _least_squares(np, design, y)
    if term is not None:
        design, rows, coef = _with_anneal(np, design, rows, coef, y, term, current)
    keep = (coef[:, 0] >= 0) & (coef[:, 1] >= 0)
    residual = y[None, :] - np.einsum("mnk,mk->mn", design, coef)
    sse = np.einsum("mn,mn->m", residual, residual)
    sigma2 = np.maximum(sse / max(y.size - design.shape[2], 1), 1e-18) * INFLATION ** 2
    precision = np.einsum("mnk,mnj->mkj", design, design) / sigma2[:, None, None]
    if term is not None:
        precision[:, 2, 2] += (term[2] / (ANNEAL_DROP_SD * current)) ** 2
    precision *= 1 + 1e-12 * np.eye(design.shape[2])
    covariance = np.linalg.inv(precision)
    means = np.einsum("mk,mk->m", rows, coef)
    variances = np.einsum("mk,mkj,mj->m", rows, covariance, rows)
    return sse[keep], means[keep], variances[keep]


def _with_anneal(np, design, rows, first, y, term, current):
    """The anneal's column and target entry added, and the fits redone with its prior as one
    pseudo-observation (the data rows divided by the two-term fit's noise); a fit whose anneal
    comes out negative keeps the two-term fit with no anneal."""
    anneal, target_anneal, final_anneal = term
    count = design.shape[0]
    design = np.concatenate([design, np.broadcast_to(-anneal[None, :, None], (count, anneal.size, 1))], axis=2)
    rows = np.concatenate([rows, np.full((count, 1), -target_anneal)], axis=1)
    noise = np.maximum(np.std(y[None, :] - np.einsum("mnk,mk->mn", design[:, :, :2], first), axis=1), 1e-6)
    prior_row, prior_value = _anneal_prior(np, final_anneal, current)
    stacked = np.concatenate([design / noise[:, None, None], np.broadcast_to(prior_row, (count, 1, 3))], axis=1)
    targets = np.concatenate([y[None, :] / noise[:, None], np.full((count, 1), prior_value)], axis=1)
    coef = _least_squares(np, stacked, targets)
    negative = coef[:, 2] < 0
    coef[negative] = np.column_stack([first, np.zeros(count)])[negative]
    return design, rows, coef


def _least_squares(np, design, y):
    """Least squares of each of a stack of designs (fits, rows, columns) by the normal equations
    on scaled columns: a batch of 3x3 solves is far cheaper than lstsq's SVDs, and the scaling
    keeps them well conditioned. ``y``: one target vector for all, or one per design."""
    scale = np.maximum(np.abs(design).max(axis=1), 1e-300)
    scaled = design / scale[:, None, :]
    gram = np.einsum("mrk,mrj->mkj", scaled, scaled) + 1e-12 * np.eye(design.shape[2])
    rhs = np.einsum("mrk,mr->mk", scaled, np.broadcast_to(y, scaled.shape[:2]))
    return np.linalg.solve(gram, rhs[:, :, None])[:, :, 0] / scale


def _anneal_prior(np, final_anneal, current):
    """B * LD(end) ~ N(ANNEAL_DROP * loss, (ANNEAL_DROP_SD * loss)^2) as one row of unit weight
    (the data rows are divided by their noise)."""
    scale = ANNEAL_DROP_SD * current
    row = np.array([[0.0, 0.0, final_anneal / scale]])
    return row, ANNEAL_DROP * current / scale
