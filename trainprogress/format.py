"""Pure formatting helpers: numbers in, strings out. Each is tested against exact strings."""

from __future__ import annotations

import math
import re

UNKNOWN_ETA = "--:--:--"

GIB = 1024.0**3  # bytes in a GiB: the one definition, for every figure shown in GiB

# Emoji (with the variation selector some carry, and the space after them); for ASCII mode.
_EMOJI = re.compile("[\u2300-\u23ff\u2600-\u27bf\U0001f000-\U0001faff\ufe0f\u200d]+ ?")


def format_eta(seconds: float | None) -> str:
    """Seconds as HH:MM:SS, with a day count past 24 h ("1d 02:03:04"); "--:--:--" for None,
    NaN or infinity. Fractions of a second are rounded to the nearest second."""
    if seconds is None or not math.isfinite(seconds):
        return UNKNOWN_ETA
    total = max(0, int(round(seconds)))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {clock}" if days else clock


def format_duration(seconds: float) -> str:
    """A human duration in the largest fitting unit: "42.0s", "12.50 min", "2.45 hours",
    "3.10 days"."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.2f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.2f} hours"
    return f"{seconds / 86400:.2f} days"


def format_percent(percent: float) -> str:
    """A progress percentage: whole numbers bare ("25%"), others with up to two decimals
    ("0.5%", "24.67%")."""
    text = f"{percent:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def format_count(value: int) -> str:
    """An integer with thousands separators: 1536000000 -> "1,536,000,000"."""
    return f"{int(value):,}"


def format_loss(value: float) -> str:
    """A loss with six decimals, as the reference report shows it: "1.234567"."""
    return f"{value:.6f}"


def format_forecast(final: float, low: float, high: float) -> str:
    """A forecast with its band, to the decimals that tell the band's ends apart: "1.83 (1.79 to 1.88)"."""
    half = max((high - low) / 2, 1e-12)
    decimals = min(max(2, -math.floor(math.log10(half)) + 1), 5)
    return f"{final:.{decimals}f} ({low:.{decimals}f} to {high:.{decimals}f})"


def format_lr(value: float) -> str:
    """A learning rate in scientific notation: 0.0006 -> "6.00e-04"."""
    return f"{value:.2e}"


def format_mfu(fraction: float) -> str:
    """Model FLOPs utilisation, a fraction, as a percentage: 0.4215 -> "42.15%"."""
    return f"{100.0 * fraction:.2f}%"


def format_rate(iters_per_s: float) -> str:
    """Iterations per second: "17.23 iter/s"; below 1/s "0.052 iter/s" keeps three figures."""
    if iters_per_s < 1:
        return f"{iters_per_s:.3g} iter/s"
    return f"{iters_per_s:.2f} iter/s"


def format_ms(ms: float) -> str:
    """Milliseconds per iteration: "58.03ms"."""
    return f"{ms:.2f}ms"


def format_gib(num_bytes: float) -> str:
    """Bytes as gibibytes with two decimals, labelled GB as nvidia-smi users expect: "8.42GB"."""
    return f"{num_bytes / GIB:.2f}GB"


def format_memory(used_bytes: float, total_bytes: float | None) -> str:
    """Used against total memory: "8.42GB / 24.00GB", or "8.42GB" when the total is unknown."""
    if total_bytes is None:
        return format_gib(used_bytes)
    return f"{format_gib(used_bytes)} / {format_gib(total_bytes)}"


def format_value(value: object) -> str:
    """A caller-supplied value for a report line: ints with separators, floats with up to six
    significant digits, anything else as str()."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return format_count(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def strip_emoji(text: str) -> str:
    """Text without emoji or the space after each: "🔄 TRAINING" -> "TRAINING"."""
    return _EMOJI.sub("", text)
