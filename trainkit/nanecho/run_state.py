"""RunState: what a NanEcho run tracks besides the model, one object the loop advances.

The loop asks it, step by step, for the curriculum's work: ``begin_step(it)`` moves to the
phase of step ``it`` and grows the connections when due (both logged on stderr and returned
as events), ``learning_rate(it)`` is the warm-up + cosine times the phase's multiplier,
``record_eval`` keeps a per-dimension evaluation, ``sample_due`` says when a milestone
sample is next. The report sections it sets read its attributes when a report is built
(plain Python values: no device sync), so they always show the state of the latest step.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

from trainkit.nanecho.connections import connection_counts, grow_connections, param_counts
from trainkit.nanecho.curriculum import PhaseState
from trainkit.training import Training
from trainprogress import ProgressTracker

logger = logging.getLogger("nanecho")  # phase changes, growth and evaluations, on stderr
MILESTONES = (25, 50, 75, 100)  # percent of the run at which a sample is generated

Event = tuple[str, dict[str, Any]]  # (kind, fields) for tracker.event


def bar(fraction: float, width: int = 20) -> str:
    """A text bar of ``width`` cells, ``fraction`` (clamped to [0, 1]) of them full."""
    full = round(min(max(fraction, 0.0), 1.0) * width)
    return "█" * full + "░" * (width - full)


def persona_lines(losses: dict[str, float] | None, state: PhaseState, vocab_size: int, next_eval: int) -> dict[str, str]:
    """One line per dimension: val loss and a bar of the share of the uniform-guess loss
    (ln vocab_size, what an untrained model scores) removed so far; focus dimensions marked."""
    if losses is None:
        return {"Validation loss": f"first evaluation at iteration {next_eval:,}"}
    uniform = math.log(vocab_size)
    lines = {}
    for dim, loss in losses.items():
        if dim == "all":
            continue
        focus = " (focus)" if dim in state.phase.focus else ""
        lines[dim] = f"{loss:.4f} {bar(1.0 - loss / uniform)} {100 * (1.0 - loss / uniform):.0f}%{focus}"
    return lines


def curriculum_lines(state: PhaseState) -> dict[str, str]:
    """How far into the phase, the blend in an overlap, the next phase, the lr multiplier."""
    phase = state.phase
    progress = f"{100 * state.progress:.0f}% {bar(state.progress, 10)} ({phase.start_pct:g}-{phase.end_pct:g}% of the run)"
    if state.blending_from is not None:
        # Inside an overlap, lr multiplier and sampling are a mix of the two phases.
        progress += (f"; overlap: {100 * state.blend:.0f}% {phase.name} / "
                     f"{100 * (1 - state.blend):.0f}% {state.blending_from.name}")
    nxt = state.next_phase
    return {
        "Phase progress": progress,
        "Next phase": f"{nxt.name} at {nxt.start_pct:g}%" if nxt else "none (final phase)",
        "LR multiplier": f"×{state.lr_multiplier:.3f}",
    }


class RunState:
    """A NanEcho run's curriculum phase, connections, per-dimension validation losses and
    milestones, from ``training`` (fresh, or resumed with its checkpoint's NanEcho entries).
    ``cfg`` is train_nanecho.py's NanEchoConfig (its curriculum, connection and lr schedules)."""

    def __init__(self, cfg: Any, training: Training, vocab_size: int) -> None:
        self.cfg, self.training, self.vocab_size = cfg, training, vocab_size
        self.curriculum, self.growth = cfg.curriculum(), cfg.connections()
        #: the rate of 0-based step ``it``: warm-up + cosine times the curriculum's multiplier at that step
        self.learning_rate: Callable[[int], float] = cfg.step_learning_rate()
        model, start = training.raw_model, training.iter_num
        self.phase_name: str | None = training.extras.get("phase")  # of the latest step run
        self.dim_losses: dict[str, float] | None = training.extras.get("val_losses")
        self.active_conn, self.total_conn = connection_counts(model)
        self.active_params, self.total_params = param_counts(model)
        self.state = self.curriculum.state(self.percent(start))
        self.next_eval = (start // cfg.eval_interval + 1) * cfg.eval_interval
        self.grown_to = self.growth.target_ratio(max(start - 1, 0))  # the masks' ratio: the target of the last step run
        self.milestones = sorted({math.ceil(cfg.max_iters * p / 100) for p in MILESTONES if cfg.max_iters * p / 100 > start})

    def percent(self, iteration: int) -> float:
        """How far into the run ``iteration`` steps are, in percent (what the phases are in)."""
        return 100.0 * iteration / self.cfg.max_iters

    @property
    def connection_ratio(self) -> float:
        """The active share of the maskable connections, as the masks hold them."""
        return self.active_conn / self.total_conn

    def set_sections(self, tracker: ProgressTracker) -> None:
        """The run's report sections; each reads this object when a report is built."""
        cfg, rt = self.cfg, self.training.rt
        # The connection ratio and the phase name are named values of step(); these add the rest.
        tracker.set_section("Connections", lambda: {"Connections": f"{self.active_conn:,}/{self.total_conn:,} active"},
                            into="metrics")
        tracker.set_section("Batch", {
            "Batch size": f"{cfg.batch_size} × {self.training.micro_steps} accumulation"
                          + (f" × {rt.world_size} processes" if rt.ddp else ""),
            "Tokens/batch": self.training.tokens_per_iter,
        }, into="memory")
        tracker.set_section("📚 Curriculum", lambda: {"Focus": self.state.phase.description, **curriculum_lines(self.state)})
        tracker.set_section("🧠 Model State", lambda: {"Active params": self.active_params, "Total params": self.total_params})
        tracker.set_section("🎭 Persona Dimensions",
                            lambda: persona_lines(self.dim_losses, self.state, self.vocab_size, self.next_eval))

    def begin_step(self, it: int) -> list[Event]:
        """Move to 0-based step ``it``: its phase (a change is logged), and the connections
        grown when a growth is due (measured from the masks). Returns the events to send
        after the step: recorded with its iteration, which a resumed run redoes (and a log
        reader supersedes) when it was not checkpointed."""
        self.state = state = self.curriculum.state(self.percent(it))
        events: list[Event] = []
        if state.phase.name != self.phase_name:
            logger.info("phase %s at iteration %d (%.1f%%): %s; lr multiplier %.3f", "change" if self.phase_name else "start",
                        it, self.percent(it), state.label, state.lr_multiplier)
            events.append(("phase_change", dict(phase=state.phase.name, previous=self.phase_name,
                                                description=state.phase.description, start_iteration=it)))
            self.phase_name = state.phase.name
        if self.growth.target_ratio(it) > self.grown_to:
            self.grown_to = self.growth.target_ratio(it)
            model = self.training.raw_model
            added = grow_connections(model, self.grown_to, seed=self.cfg.seed, iteration=it)
            self.active_conn, self.active_params = connection_counts(model)[0], param_counts(model)[0]
            logger.info("connection growth at iteration %d: +%d connections, ratio %.2f%% (%d active params)",
                        it, added, 100 * self.connection_ratio, self.active_params)
            events.append(("connection_growth", dict(added=added, connection_ratio=self.connection_ratio,
                                                     active_params=self.active_params, start_iteration=it)))
        return events

    def step_values(self, grad_norm: Any) -> dict[str, Any]:
        """The step's named values, so that log sinks (JSONL, TensorBoard, W&B) carry them."""
        return {"connection_ratio": self.connection_ratio, "phase": self.state.phase.name, "grad_norm": grad_norm}

    def record_eval(self, done: int, losses: dict[str, float]) -> Event:
        """Keep the evaluation after ``done`` steps (logged); returns its event."""
        self.dim_losses, self.next_eval = losses, done + self.cfg.eval_interval
        logger.info("eval at iteration %d: val loss %.4f; %s", done, losses["all"],
                    ", ".join(f"{d} {v:.4f}" for d, v in losses.items() if d != "all"))
        return "persona_eval", {f"val_loss/{d}": v for d, v in losses.items()}

    def sample_due(self, done: int) -> bool:
        """Whether a milestone sample is due after ``done`` steps (then it counts as taken):
        on rank 0 with sample_at_milestones only."""
        if self.training.rt.is_master and self.cfg.sample_at_milestones and self.milestones and done >= self.milestones[0]:
            self.milestones.pop(0)
            return True
        return False

    def checkpoint_extras(self, done: int) -> dict[str, Any]:
        """The checkpoint's NanEcho entries after ``done`` steps."""
        return dict(phase=self.phase_name, val_losses=self.dim_losses, percent=self.percent(done),
                    connection_ratio=self.connection_ratio)

    def summary(self) -> str:
        """The phase and connections reached, for the run's last line."""
        return f"phase {self.phase_name}, connections {100 * self.connection_ratio:.2f}%"
