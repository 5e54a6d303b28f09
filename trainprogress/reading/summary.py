"""A run's summary from its log: how it ended (or where it stands), and its key figures."""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any

from .. import format as fmt
from ..cost import format_energy, format_hours
from ..sinks.console import BULLET
from .runlog import RunLog
from .runs import RUNNING, Run

# A running run whose log has been silent for this many report intervals (and at least
# STALE_MIN_S) has probably been killed without a chance to write its end.
STALE_INTERVALS = 10
STALE_MIN_S = 120.0


def _iso(unix_time: float | None) -> str | None:
    if unix_time is None:
        return None
    return datetime.fromtimestamp(unix_time, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _best_val_loss(run: Run) -> float | None:
    """The lowest validation loss of any process of the run. A report's best_val_loss is
    the best its process saw up to then, so each process's latest report tells it."""
    values = []
    for segment in run.segments:
        for report in segment.reports[-1:]:
            values.append(report.get("best_val_loss"))
            metrics = report.get("metrics")
            if isinstance(metrics, dict):
                values.append(metrics.get("val_loss"))
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return min(finite) if finite else None


def _pauses(run: Run) -> dict[str, dict[str, float]]:
    """Time in marked pauses by name, over every process of the run (redone parts included:
    that time was spent)."""
    pauses: dict[str, dict[str, float]] = {}
    for segment in run.segments:
        for event in segment.events:
            data = event.get("data")
            if event.get("event") != "pause" or not isinstance(data, dict):
                continue
            entry = pauses.setdefault(str(data.get("name", "pause")), {"count": 0, "seconds": 0.0})
            entry["count"] += 1
            entry["seconds"] += float(data.get("duration_s") or 0.0)
    return pauses


def _throughput(run: Run) -> dict[str, float | None]:
    """Iterations done, training seconds (pauses excluded) and the averages, over every
    process of the run."""
    iterations, training_s, wall_s = 0, 0.0, 0.0
    for segment in run.segments:
        last_report = segment.reports[-1] if segment.reports else None
        begin, last = segment.start_time, segment.last_record
        if begin is not None and last is not None:
            wall_s += max(0.0, last["time"] - begin)  # a clock set back never makes time negative
        if last_report is not None:
            iterations += last_report["iteration"] - segment.start_iter
            training_s += max(0.0, (last_report.get("elapsed_s") or 0.0) - (last_report.get("paused_s") or 0.0))
    iters_per_s = iterations / training_s if iterations and training_s > 0 else None
    start = run.segments[-1].start or {}
    tokens_per_iter = start.get("tokens_per_iter")
    flops, peak = start.get("flops_per_iter"), start.get("peak_flops")
    return {
        "iterations_done": iterations,
        "training_s": training_s,
        "wall_s": wall_s,
        "iters_per_s": iters_per_s,
        "tokens_per_s": iters_per_s * tokens_per_iter if iters_per_s and tokens_per_iter else None,
        "mfu": iters_per_s * flops / peak if iters_per_s and flops and peak else None,
    }


# The cost figures a summary adds up over the run's processes (a resumed run's earlier
# processes spent theirs too), each with the key of its projection to the run's end.
_COST_KEYS = {"device_hours": "device_hours_total", "energy_j": "energy_total_j", "cost": "cost_total",
              "co2_kg": "co2_total_kg"}


def _cost(run: Run) -> dict[str, Any] | None:
    """The run's cost over every process that logged cost figures: what was spent (the sum
    of each process's latest figures) and, for a run still going, what it will have cost at
    the end (earlier processes' spending plus the latest one's projection). None when no
    report carries cost figures."""
    latest = [segment.reports[-1] for segment in run.segments if segment.reports]
    latest = [r for r in latest if r.get("device_hours") is not None]
    if not latest:
        return None
    spent: dict[str, Any] = {}
    last = latest[-1]
    for name, at_end in _COST_KEYS.items():
        known = [r.get(name) for r in latest if r.get(name) is not None]
        spent[name] = sum(known) if known else None
        earlier = sum(r.get(name) or 0.0 for r in latest[:-1])
        spent[at_end] = None if last.get(at_end) is None else earlier + last[at_end]
    spent.update(currency=last.get("currency"), energy_source=last.get("energy_source"),
                 energy_note=last.get("energy_note"), devices=last.get("devices"))
    return spent


def _cost_line(cost: dict[str, Any]) -> str:
    parts = [f"{format_hours(cost['device_hours'])} device-hours on {cost['devices']} device(s)"]
    if cost["energy_j"] is not None:
        parts.append(f"{format_energy(cost['energy_j'])} measured ({cost['energy_source']})")
    if cost["cost"] is not None:
        parts.append(f"{cost['cost']:,.2f}" + (f" {cost['currency']}" if cost["currency"] else ""))
    if cost["co2_kg"] is not None:
        parts.append(f"{cost['co2_kg']:,.3f} kg CO2")
    note = f" ({cost['energy_note']})" if cost["energy_note"] else ""
    return f"{BULLET}Cost: {', '.join(parts)}{note}"


FORECAST_POINTS = (30.0, 50.0, 70.0)  # the summary shows what was forecast at these percents


def _forecasts(run: Run) -> list[dict[str, float]]:
    """The final-loss forecast of the first report at or past each of FORECAST_POINTS."""
    out = []
    for point in FORECAST_POINTS:
        for report in run.reports:
            if (report.get("percent") or 0.0) >= point and report.get("loss_forecast") is not None:
                out.append({"percent": point, "forecast": report["loss_forecast"],
                            "low": report.get("loss_forecast_low"), "high": report.get("loss_forecast_high")})
                break
    return out


def summarize(run: Run, log: RunLog | None = None, now: float | None = None) -> dict[str, Any]:
    """The run's key figures as plain JSON-ready values (seconds, Unix times as ISO strings,
    ``mfu`` a fraction): status, iteration, times, losses, speed, tokens, pauses, resumes,
    anomalies, the error of a crashed run, and ``loss_forecasts``: the final-loss forecast
    made at 30%, 50% and 70% of the run ({percent, forecast, low, high} each)."""
    now = time.time() if now is None else now
    latest = run.latest_report or {}
    last = run.last_record or {}
    total = run.total_iters
    pauses = _pauses(run)
    speed = _throughput(run)
    summary: dict[str, Any] = {
        "name": run.name,
        "file": str(log.path) if log else None,
        "status": run.status,
        "iteration": run.iteration,
        "total_iters": total,
        "percent": 100.0 * run.iteration / total if total else None,
        "started": _iso(run.segments[0].start_time),
        "last_record": _iso(last.get("time")),
        "seconds_since_last_record": max(0.0, now - last["time"]) if last else None,
        "eta_s": None,
        "wall_s": speed["wall_s"],
        "training_s": speed["training_s"],
        "paused_s": sum(p["seconds"] for p in pauses.values()),
        "pauses": pauses,
        "loss": latest.get("loss"),
        "smoothed_loss": latest.get("smoothed_loss"),
        "best_val_loss": _best_val_loss(run),
        "loss_forecasts": _forecasts(run),
        "iters_per_s": speed["iters_per_s"],
        "tokens_per_s": speed["tokens_per_s"],
        "tokens_processed": latest.get("tokens_processed"),
        "mfu": speed["mfu"],
        "error": run.error,
        "resumed_at": [r["iteration"] for r in run.resumes],
        "superseded_records": run.superseded,
        "anomalies": [
            {"iteration": e["iteration"], **(e.get("data") or {})}
            for e in run.events if e.get("event") == "anomaly"
        ],
        "reports": len(run.reports),
        "cost": _cost(run),
        "skipped_lines": log.skipped_lines if log else 0,
        "gaps": [
            {key: gap.get(key) for key in ("records", "reports", "from_iteration", "to_iteration", "error")}
            for gap in run.gaps
        ],
    }
    if run.status == RUNNING and latest.get("eta_s") is not None and "time" in latest:
        summary["eta_s"] = max(0.0, latest["eta_s"] - max(0.0, now - latest["time"]))
    summary["probably_killed"] = run.status == RUNNING and _is_stale(run, summary["seconds_since_last_record"])
    return summary


def _is_stale(run: Run, silent_s: float | None) -> bool:
    if silent_s is None:
        return False
    times = [r["time"] for r in run.reports[-20:]]
    gaps = sorted(b - a for a, b in zip(times, times[1:]))
    typical = gaps[len(gaps) // 2] if gaps else 0.0
    return silent_s > max(STALE_MIN_S, STALE_INTERVALS * typical)


def _state_line(s: dict[str, Any]) -> str:
    where = f"{fmt.format_count(s['iteration'])}"
    if s["total_iters"]:
        where += f"/{fmt.format_count(s['total_iters'])} iterations ({fmt.format_percent(s['percent'])})"
    status = s["status"]
    if status == RUNNING:
        if s["probably_killed"]:
            return f"no end record, silent for {fmt.format_duration(s['seconds_since_last_record'])}: probably killed at {where}"
        return f"running at {where}, ETA {fmt.format_eta(s['eta_s'])}"
    return f"{status} at {where}"


def speed_figures(s: dict[str, Any]) -> list[str]:
    """The run's average speed from a ``summarize`` dict: iter/s, tokens/s and MFU, those known
    (the summary's "Average speed" line and the plot's title)."""
    figures = []
    if s["iters_per_s"] is not None:
        figures.append(fmt.format_rate(s["iters_per_s"]))
    if s["tokens_per_s"] is not None:
        figures.append(f"{fmt.format_count(round(s['tokens_per_s']))} tokens/s")
    if s["mfu"] is not None:
        figures.append(f"MFU {fmt.format_mfu(s['mfu'])}")
    return figures


def format_summary(s: dict[str, Any]) -> list[str]:
    """The summary as text lines for a terminal."""
    lines = [f"{s['name']}: {_state_line(s)}"]
    if s["error"]:
        lines.append(f"{BULLET}Error: {s['error']}")
    age = s["seconds_since_last_record"]
    lines.append(f"{BULLET}Started {s['started']}; last record {s['last_record']}"
                 + (f" ({fmt.format_duration(age)} ago)" if age is not None else ""))
    pauses = ", ".join(f"{name} {fmt.format_duration(p['seconds'])} ×{p['count']}" for name, p in s["pauses"].items())
    lines.append(f"{BULLET}Wall time: {fmt.format_duration(s['wall_s'])} (training {fmt.format_duration(s['training_s'])}"
                 + (f"; pauses {fmt.format_duration(s['paused_s'])}: {pauses})" if pauses else ")"))
    losses = []
    if s["loss"] is not None:
        losses.append(f"loss {fmt.format_loss(s['loss'])}")
    if s["smoothed_loss"] is not None:
        losses.append(f"smoothed {fmt.format_loss(s['smoothed_loss'])}")
    if s["best_val_loss"] is not None:
        losses.append(f"best validation loss {fmt.format_loss(s['best_val_loss'])}")
    if losses:
        lines.append(f"{BULLET}{'; '.join(losses).capitalize()}")
    if s["loss_forecasts"]:
        made = "; ".join(f"at {f['percent']:.0f}% {fmt.format_forecast(f['forecast'], f['low'], f['high'])}"
                         for f in s["loss_forecasts"])
        final = f", final smoothed loss {fmt.format_loss(s['smoothed_loss'])}" if s["smoothed_loss"] is not None else ""
        lines.append(f"{BULLET}Final-loss forecasts: {made}{final}")
    speed = speed_figures(s)
    if speed:
        lines.append(f"{BULLET}Average speed: {', '.join(speed)}")
    if s["tokens_processed"] is not None:
        lines.append(f"{BULLET}Tokens processed: {fmt.format_count(s['tokens_processed'])}")
    if s["resumed_at"]:
        at = ", ".join(fmt.format_count(i) for i in s["resumed_at"])
        lines.append(f"{BULLET}Resumed {len(s['resumed_at'])}× (at iteration {at}); "
                     f"{s['superseded_records']} records of redone iterations superseded")
    for gap in s["gaps"]:
        lines.append(f"{BULLET}Log gap: {gap['records']} records ({gap['reports']} reports) of iterations "
                     f"{gap['from_iteration']} to {gap['to_iteration']} could not be written ({gap['error']})")
    if s.get("cost"):
        lines.append(_cost_line(s["cost"]))
    if s["anomalies"]:
        shown = "; ".join(f"{a.get('anomaly', '?')} at iteration {fmt.format_count(a['iteration'])}" for a in s["anomalies"][:5])
        more = f" (+{len(s['anomalies']) - 5} more)" if len(s["anomalies"]) > 5 else ""
        lines.append(f"{BULLET}Anomalies: {shown}{more}")
    return lines
