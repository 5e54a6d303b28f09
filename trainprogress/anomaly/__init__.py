"""Anomaly detection for adaptive verbosity: what the tracker checks at every report and,
between reports, as often as ``trainprogress.boundary_scheduler.CheckCadence`` allows (every ``check_percent`` of the run,
but at most one check per ``min_check_steps`` steps and ``min_check_interval_s`` seconds),
and what makes it report at once and more often.

Five detectors, each fed what the tracker already has at a check (no extra device syncs
beyond the one that materialises the losses):

- ``nonfinite_loss``: a loss since the last check is NaN or infinite.
- ``loss_spike``: the median loss of the last ``pool_steps`` or more steps is far above
  the median of its ``history_checks`` previous values: by more than ``loss_spike_sigmas``
  robust standard deviations (1.4826 x their median absolute deviation) and by more than
  ``loss_spike_min_rise`` of that median. Only rises count: a falling loss is the point of
  training. The pooled median ignores one bad batch; a spike that lasts moves it.
- ``throughput_drop``: the median step time of the last ``pool_steps`` or more steps is so
  far above the median of its previous values that the speed lost more than
  ``throughput_drop`` of itself. The median ignores a single GC pause or data-loader
  hiccup; a sustained slowdown moves it.
- ``memory_growth`` (a probable leak): memory grows steadily, at a roughly constant rate,
  where warm-up would not (``LeakDetector``). Memory is judged by levels, each the median of
  3 consecutive checks: one odd probe is ignored, and a single step up (buffers allocated at
  the first eval, a larger model after a growth step) moves one level only. The threshold
  is ``memory_growth`` of the memory the growth is measured from, and at least
  ``memory_min_growth_bytes``. Two rules, either one enough:

  - off a plateau (fast, a leak that starts mid-run): memory that stayed within half the
    threshold over ``memory_plateau_checks`` checks levelled off there. The last three
    levels rising at a steady rate (each rise at least a quarter of the threshold, three
    times the probes' own scatter, and a quarter of both rises) to more than the threshold
    above the highest such plateau is a leak, called 5 or 6 checks after it starts. Warm-up
    never passes: it comes before any plateau, and growth that slows down cannot rise
    further above a plateau than it rose across it. Memory back at a level it held before
    is no leak either. A leak stays reported while memory keeps rising.
  - past warm-up (slow, a leak that starts with the process): over the last
    ``memory_window_checks`` checks, all past the first ``memory_warmup_percent`` of the
    run, the window's four quarters have medians each above the one before by a third of the
    threshold (of the memory when this rule first judged) and twice the probes' scatter.
- ``grad_explosion``: the latest ``grad_norm`` is not finite, above ``grad_norm_max``, or
  more than ``grad_norm_factor`` times the median of its recent values.

A gradient explosion or a throughput drop must show at ``persist_checks`` checks in a row
to be an anomaly; shown at one check, it is a blip (``monitor.AnomalyMonitor.blips``): worth a
short line, not a report.

The detectors that compare against history stay silent until they have
``min_history_checks`` values. Their history includes the anomalous values, so a lasting
new level (a new curriculum phase, a bigger model after a growth step) becomes the baseline
within about half the history and its anomaly clears. An anomaly clears once its condition
has been absent for ``clear_after_checks`` checks in a row; its ``since_iter`` is the
iteration at which its episode began.

Dense reports are for what is new or getting worse (``dense.DenseReports``): an anomaly that
holds steady goes back to the regular schedule after ``steady_after_reports`` dense reports
and shows in each regular report as "still: ..."; one that gets worse by ``worse_factor``
has dense reports again.

The package's modules: ``config`` (AnomalyConfig, Finding), ``monitor`` (AnomalyMonitor: the
detectors at a check; raised, blip and cleared episodes), ``leak`` (LeakDetector, the
memory-growth detector), ``checks`` (AnomalyChecks: runs the monitor at a check and the
cross-rank findings, says what was raised, cleared or a blip), ``dense`` (DenseReports: when
an anomaly gets dense reports). Stragglers are found by the cross-rank exchange
(``trainprogress.stragglers``), which hands its findings to the checks.
"""

from .config import AnomalyConfig, Finding

__all__ = ["AnomalyConfig", "Finding"]
