"""The NanEcho curriculum: training phases over progress, and the eight persona dimensions.

A phase covers a range of training progress in percent, ``[start_pct, end_pct)`` (the last
phase also includes 100%). It carries a learning-rate multiplier, a description, and focus
dimensions whose documents are sampled more often while the phase is active.

Overlap rule (blend). Neighbouring phases may overlap, e.g. basic_awareness 0-20% and
persona_dimensions 15-50%. Inside an overlap ``[later.start_pct, earlier.end_pct)``:

* the *named* phase (shown in reports, logged as a phase change) is the later one, from the
  moment it starts: a new phase takes over as soon as it begins;
* the learning-rate multiplier and the dimension sampling weights blend linearly from the
  earlier phase to the later one across the overlap, so neither jumps at a boundary
  (at 17.5% above: lr multiplier 0.5 * 1.2 + 0.5 * 1.0 = 1.1).

Outside overlaps a phase's own values hold. A table must cover 0-100% without gaps, in
order of start, with at most two phases overlapping at any point. So an overlap is only ever
the end of one phase and the start of the next: a table that does anything else is refused
with a ConfigError naming the phases and the fix (a phase that ends before it starts, two
phases that start together, a phase inside another, three phases at one point, a name used
twice), never blended silently.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from trainkit.config import ConfigError

DIMENSIONS: tuple[str, ...] = (
    "cognitive",
    "introspective",
    "adaptive",
    "recursive",
    "synergistic",
    "holographic",
    "neural_symbolic",
    "dynamic",
)


def _check_dimension(name: str, where: str) -> None:
    if name not in DIMENSIONS:
        close = difflib.get_close_matches(name, DIMENSIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}: unknown persona dimension {name!r}{hint}; known: {', '.join(DIMENSIONS)}")


@dataclass(frozen=True)
class Phase:
    """One curriculum phase over ``[start_pct, end_pct)`` percent of training."""

    name: str
    start_pct: float
    end_pct: float
    lr_multiplier: float  # multiplies the warm-up + cosine learning rate
    description: str
    focus: tuple[str, ...] = ()  # persona dimensions sampled ``focus_weight`` times as often

    def __post_init__(self) -> None:
        object.__setattr__(self, "focus", tuple(self.focus))
        if not self.name:
            raise ConfigError("a phase has an empty name. Fix: give every phase a name (reports and logs show it).")
        if not (0.0 <= self.start_pct <= 100.0 and 0.0 <= self.end_pct <= 100.0):
            raise ConfigError(f"phase {self.name!r}: start_pct and end_pct are percent of the run, within 0-100; got "
                              f"{self.start_pct:g}-{self.end_pct:g}. Fix: give both between 0 and 100.")
        if not self.start_pct < self.end_pct:
            raise ConfigError(f"phase {self.name!r} ends at {self.end_pct:g}%, not after it starts ({self.start_pct:g}%). "
                              f"Fix: give it an end_pct above its start_pct.")
        if not 0.0 < self.lr_multiplier < math.inf:
            raise ConfigError(f"phase {self.name!r}: lr_multiplier must be > 0 and finite, got {self.lr_multiplier}")
        for dim in self.focus:
            _check_dimension(dim, f"phase {self.name!r} focus")


DEFAULT_PHASES: tuple[Phase, ...] = (
    Phase("basic_awareness", 0, 20, 1.2, "Learning basic Echo Self identity", ("cognitive", "introspective")),
    Phase("persona_dimensions", 15, 50, 1.0, "Developing persona dimensions", ("adaptive", "synergistic", "dynamic")),
    Phase("hypergraph_patterns", 40, 70, 0.9, "Learning hypergraph patterns", ("holographic", "synergistic", "neural_symbolic")),
    Phase("recursive_reasoning", 60, 85, 0.8, "Mastering recursive reasoning", ("recursive", "introspective", "neural_symbolic")),
    Phase("adaptive_mastery", 80, 100, 0.7, "Achieving Echo Self mastery", ("adaptive", "dynamic")),
)

_PHASE_KEYS = ("name", "start_pct", "end_pct", "lr_multiplier", "description", "focus")


def phases_from_config(entries: Sequence[Mapping[str, Any]]) -> tuple[Phase, ...]:
    """Build a phase table from JSON-like dicts with the keys of :class:`Phase`
    (percent units); unknown keys are rejected with a did-you-mean."""
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ConfigError("phases: expected a non-empty list of phase objects")
    phases = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"phases[{i}]: expected an object with keys {', '.join(_PHASE_KEYS)}")
        for key in entry:
            if key not in _PHASE_KEYS:
                close = difflib.get_close_matches(key, _PHASE_KEYS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"phases[{i}]: unknown key {key!r}{hint}")
        missing = [k for k in _PHASE_KEYS[:5] if k not in entry]
        if missing:
            raise ConfigError(f"phases[{i}]: missing {', '.join(missing)}")
        phases.append(_phase_from_entry(i, entry))
    return tuple(phases)


def _phase_from_entry(i: int, entry: Mapping[str, Any]) -> Phase:
    """phases[i] as a Phase: numbers must be numbers (not true/false), focus a list."""
    if not isinstance(entry["name"], str):
        raise ConfigError(f"phases[{i}]: name must be a string, got {entry['name']!r}")
    numbers = {}
    for key in ("start_pct", "end_pct", "lr_multiplier"):
        try:
            if isinstance(entry[key], bool):
                raise TypeError
            numbers[key] = float(entry[key])
        except (TypeError, ValueError):
            raise ConfigError(f"phases[{i}] ({entry['name']!r}): {key} must be a number, got {entry[key]!r}") from None
    focus = entry.get("focus", ())
    if not isinstance(focus, (list, tuple)):
        raise ConfigError(f"phases[{i}] ({entry['name']!r}): focus must be a list of persona dimensions, got {focus!r}. "
                          f"Fix: e.g. \"focus\": [\"dynamic\"].")
    return Phase(name=entry["name"], description=str(entry["description"]), focus=tuple(focus), **numbers)


@dataclass(frozen=True)
class PhaseState:
    """Where the curriculum stands at one moment of training."""

    index: int  # position of ``phase`` in the table
    phase: Phase  # the named (current) phase
    progress: float  # fraction in [0, 1] of the way through ``phase``'s range
    next_phase: Phase | None
    blending_from: Phase | None  # the earlier phase still fading out, inside an overlap
    blend: float  # weight of ``phase`` in lr and sampling; 1.0 outside an overlap
    lr_multiplier: float  # the blended multiplier in force
    sampling_weights: Mapping[str, float] = field(default_factory=dict)  # probability per dimension

    @property
    def label(self) -> str:
        """``"name - description"``, as the report's Phase line shows it."""
        return f"{self.phase.name} - {self.phase.description}"


class Curriculum:
    """A validated phase table with the overlap rule of this module's docstring.

    ``focus_weight`` (> 1) is how many times more often a focus dimension's documents are
    sampled than the others'; every dimension keeps a non-zero weight.
    """

    def __init__(self, phases: Iterable[Phase] = DEFAULT_PHASES, focus_weight: float = 3.0) -> None:
        self.phases = tuple(phases)
        if not focus_weight >= 1.0:
            raise ConfigError(f"focus_weight must be >= 1 (1 means no focus), got {focus_weight}")
        self.focus_weight = float(focus_weight)
        self._validate()

    def _validate(self) -> None:
        ps = self.phases
        if not ps:
            raise ConfigError("the phase table is empty")
        seen: dict[str, int] = {}
        for i, p in enumerate(ps):
            if p.name in seen:
                raise ConfigError(f"phase names must be unique: {p.name!r} names phases[{seen[p.name]}] and phases[{i}]. "
                                  f"Fix: give each phase its own name (phase changes are told apart by it).")
            seen[p.name] = i
        for prev, cur in zip(ps, ps[1:]):
            if cur.start_pct < prev.start_pct:
                raise ConfigError(f"phase {cur.name!r} (starts {cur.start_pct:g}%) is listed after {prev.name!r} (starts "
                                  f"{prev.start_pct:g}%). Fix: list the phases in order of start_pct.")
        if ps[0].start_pct != 0.0 or ps[-1].end_pct != 100.0:
            raise ConfigError("phases must cover 0-100%. Fix: start the first phase at 0 and end the last at 100.")
        for i in range(1, len(ps)):
            self._check_neighbours(ps[i - 1], ps[i], ps[i - 2] if i >= 2 else None)

    @staticmethod
    def _check_neighbours(prev: Phase, cur: Phase, before: Phase | None) -> None:
        """``cur`` may overlap only the end of ``prev`` (the blend), and not ``before``."""
        if cur.start_pct == prev.start_pct:
            raise ConfigError(f"phases {prev.name!r} and {cur.name!r} both start at {cur.start_pct:g}%: one would never "
                              f"be the named phase. Fix: start {cur.name!r} later than {prev.start_pct:g}%, or merge them.")
        if cur.end_pct <= prev.end_pct:
            fix = f"end {prev.name!r} before {cur.end_pct:g}%"
            if prev.end_pct < 100.0:
                fix += f" or {cur.name!r} after {prev.end_pct:g}%"
            raise ConfigError(f"phase {cur.name!r} ({cur.start_pct:g}-{cur.end_pct:g}%) lies inside {prev.name!r} "
                              f"({prev.start_pct:g}-{prev.end_pct:g}%): neighbours may only overlap at the end of "
                              f"{prev.name!r}, where they blend. Fix: {fix}.")
        if cur.start_pct > prev.end_pct:
            raise ConfigError(f"gap between {prev.name!r} (ends {prev.end_pct:g}%) and {cur.name!r} "
                              f"(starts {cur.start_pct:g}%). Fix: start {cur.name!r} at or before {prev.end_pct:g}%.")
        if before is not None and cur.start_pct < before.end_pct:
            raise ConfigError(f"{cur.name!r} (from {cur.start_pct:g}%) overlaps both {before.name!r} (to {before.end_pct:g}%) "
                              f"and {prev.name!r}: at most two phases may overlap at any point. Fix: start {cur.name!r} "
                              f"at or after {before.end_pct:g}%, or end {before.name!r} by {cur.start_pct:g}%.")

    def _weights(self, phase: Phase) -> dict[str, float]:
        raw = {d: (self.focus_weight if d in phase.focus else 1.0) for d in DIMENSIONS}
        total = sum(raw.values())
        return {d: w / total for d, w in raw.items()}

    def state(self, percent: float) -> PhaseState:
        """The curriculum at ``percent`` (0-100) of training: named phase, progress through
        it, next phase, and the blended lr multiplier and sampling weights."""
        pct = min(max(float(percent), 0.0), 100.0)
        index = max(i for i, p in enumerate(self.phases) if p.start_pct <= pct)
        phase = self.phases[index]
        prev = self.phases[index - 1] if index > 0 else None
        blending_from, blend = None, 1.0
        if prev is not None and pct < prev.end_pct:
            blending_from = prev
            blend = (pct - phase.start_pct) / (prev.end_pct - phase.start_pct)
        mine = self._weights(phase)
        if blending_from is None:
            lr_mult, weights = phase.lr_multiplier, mine
        else:
            lr_mult = (1.0 - blend) * blending_from.lr_multiplier + blend * phase.lr_multiplier
            theirs = self._weights(blending_from)
            weights = {d: (1.0 - blend) * theirs[d] + blend * mine[d] for d in DIMENSIONS}
        progress = (pct - phase.start_pct) / (phase.end_pct - phase.start_pct)
        return PhaseState(
            index=index,
            phase=phase,
            progress=min(progress, 1.0),
            next_phase=self.phases[index + 1] if index + 1 < len(self.phases) else None,
            blending_from=blending_from,
            blend=blend,
            lr_multiplier=lr_mult,
            sampling_weights=weights,
        )
