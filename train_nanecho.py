"""
Train NanEcho: a GPT whose connections grow during training, over curriculum phases, on a
corpus tagged with eight persona dimensions, reporting progress through trainprogress.

    python train_nanecho.py --preset tiny --max_iters 300      # 2-core CPU, a minute or two
    python train_nanecho.py --max_iters 50000                  # the default preset, for a GPU
    python train_nanecho.py --config my.json --init_from resume
    python data/nanecho/prepare.py --input my.jsonl --out_dir data/my_echo
    python train_nanecho.py --data_dir data/my_echo             # train on your own corpus
    python train_nanecho.py --preset tiny --help               # every key, its default and meaning

Settings: the defaults of --preset (tiny, small, default), then the --config file (JSON, or
`key = value` lines; parsed, never executed), then --key value / --key=value flags. A report
prints every report_interval percent; phase changes, connection growth and evaluations are
also logged (stderr) and sent to the tracker's log sinks as events, recorded with the first
step that ran after them (so a resumed run's log holds each of them once).

SIGINT (Ctrl-C) or SIGTERM (SLURM, Kubernetes, torchrun, kill) stops the run after its
current step: it saves a checkpoint, writes the summary and exits with 130 or 143; resume
with --init_from resume; a signal during an evaluation stops it at once (it is not
recorded). A diverged run (NaN or infinite loss or weights) stops with exit 1 and keeps its
last good checkpoint. A second run in an out_dir that a live run holds is refused.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import sys
import typing
from dataclasses import dataclass
from typing import Callable, Literal

import torch

from trainkit.config import ConfigError, format_help, load_config, opt, require
from trainkit.nanecho.connections import ConnectionSchedule, init_connections
from trainkit.nanecho.curriculum import DEFAULT_PHASES, DIMENSIONS, Curriculum, phases_from_config
from trainkit.nanecho.data import NanEchoData, load_index
from trainkit.nanecho.model import NanEchoGPT
from trainkit.nanecho.run_state import RunState
from trainkit.run_end import exit_on_config_error, run_until_done
from trainkit.runtime import Runtime
from trainkit.schedule import CosineSchedule
from trainkit.signals import GracefulStop
from trainkit.settings import GPTTrainingConfig, require_positive
from trainkit.training import Training, start
from trainprogress import ProgressTracker

SAMPLE_PROMPT = "Echo Self"


@dataclass
class NanEchoConfig(GPTTrainingConfig):
    """Defaults of the "default" preset: a 25M-parameter model for one GPU."""

    preset: Literal["tiny", "small", "default"] = opt("default", "tiny (CPU, minutes), small (laptop GPU), default (GPU)")
    # I/O
    data_dir: str = opt("data/nanecho", "prepared dataset (data/nanecho/prepare.py); the default is built when missing")
    eval_interval: int | None = opt(None, "evaluate and checkpoint every this many iterations; None: 10% of the run")
    eval_iters: int = opt(0, "at most this many batches per dimension per evaluation; 0: the whole val split")
    sample_at_milestones: bool = opt(True, "show a short generated sample in the report at 25/50/75/100%")
    sample_tokens: int = opt(160, "tokens per milestone sample")
    # GPTTrainingConfig's keys with this preset's defaults (GPTTrainingConfig has GPT-2 small's)
    out_dir: str = "out-nanecho"
    batch_size: int = 8
    gradient_accumulation_steps: int = 4
    block_size: int = 256
    n_layer: int = 8
    n_head: int = 8
    n_embd: int = 512
    dropout: float = opt(0.1, "dropout probability (the built-in corpus is small: some helps)")
    learning_rate: float = opt(3e-4, "peak learning rate, before the phase multiplier")
    max_iters: int = 50000
    weight_decay: float = opt(0.1, "AdamW weight decay of matrices (masked entries are zero and stay zero)")
    # learning-rate schedule
    warmup_iters: int | None = opt(None, "linear warm-up steps; None: 2% of max_iters")
    lr_decay_iters: int | None = opt(None, "step at which the cosine reaches min_lr; None: max_iters")
    min_lr: float | None = opt(None, "floor of the learning rate; None: learning_rate / 10")
    # growing connections (fractions of the masked weight entries)
    initial_connections: float = opt(0.10, "fraction of masked connections active at the start")
    connection_growth_rate: float = opt(0.05, "fraction added at each growth event")
    connection_growth_interval: int = opt(500, "iterations between growth events")
    max_connections: float = opt(1.0, "growth stops at this fraction")
    # curriculum
    phases: list | None = opt(None, "phase table: a list of {name, start_pct, end_pct, lr_multiplier, "
                                    "description, focus}; neighbours may overlap (lr and sampling blend); None: the five "
                                    "default phases")
    focus_weight: float = opt(3.0, "sampling weight of a phase's focus dimensions relative to the others (>= 1)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, ("sample_tokens",))
        require(self.eval_iters >= 0, f"eval_iters must be >= 0 (0: the whole split), got {self.eval_iters}.")
        # Settings that follow the run's length unless given.
        if self.eval_interval is None:
            self.eval_interval = max(1, self.max_iters // 10)
        require(self.eval_interval > 0, f"eval_interval must be > 0, got {self.eval_interval}.")
        if self.warmup_iters is None:
            self.warmup_iters = self.max_iters // 50
        if self.lr_decay_iters is None:
            self.lr_decay_iters = self.max_iters
        if self.min_lr is None:
            self.min_lr = self.learning_rate / 10
        self.lr_schedule()
        self.connections()
        self.curriculum()

    def lr_schedule(self) -> CosineSchedule:
        return CosineSchedule(self.learning_rate, self.warmup_iters, self.lr_decay_iters, self.min_lr)

    def step_learning_rate(self) -> Callable[[int], float]:
        """The rate of 0-based step ``it`` as the run sets it: the warm-up + cosine times the
        curriculum's multiplier at that step. The phases are fixed by the step's percent, so
        the whole schedule is known in advance (the final-loss forecast reads it)."""
        schedule, curriculum = self.lr_schedule(), self.curriculum()
        return lambda it: schedule(it) * curriculum.state(100.0 * it / self.max_iters).lr_multiplier

    def connections(self) -> ConnectionSchedule:
        return ConnectionSchedule(self.initial_connections, self.connection_growth_rate,
                                  self.connection_growth_interval, self.max_connections)

    def curriculum(self) -> Curriculum:
        phases = DEFAULT_PHASES if self.phases is None else phases_from_config(self.phases)
        return Curriculum(phases, self.focus_weight)


# Each preset changes only these defaults; the config file and flags still win over them.
PRESETS: dict[str, dict[str, object]] = {
    "tiny": dict(n_layer=2, n_head=4, n_embd=64, block_size=64, batch_size=32, gradient_accumulation_steps=1,
                 dropout=0.0, learning_rate=8e-3, max_iters=300, connection_growth_interval=25, sample_tokens=120,
                 eval_iters=4),  # 4 batches per dimension: the whole val split would cost more than training
    "small": dict(n_layer=4, n_head=4, n_embd=256, block_size=128, batch_size=16, gradient_accumulation_steps=2,
                  learning_rate=1e-3, max_iters=5000, connection_growth_interval=200),
    "default": {},
}


def config_class(preset: str) -> type[NanEchoConfig]:
    """NanEchoConfig with the defaults of ``preset`` (so --help shows them too)."""
    hints = typing.get_type_hints(NanEchoConfig)
    changed = {"preset": preset, **PRESETS[preset]}
    fields = [(key, hints[key], value) for key, value in changed.items()]  # help: NanEchoConfig's (format_help)
    return dataclasses.make_dataclass(f"NanEchoConfig_{preset}", fields, bases=(NanEchoConfig,))


def parse_args(argv: list[str]) -> NanEchoConfig:
    """The configuration from ``argv``: ``--config FILE`` (or a bare file name) and flags."""
    args: list[str] = []
    i = 0
    while i < len(argv):  # --config names a file; the config parser takes files as positionals
        if argv[i] == "--config":
            if i + 1 >= len(argv):
                raise ConfigError("--config needs a file. Fix: --config my_settings.json.")
            args.append(argv[i + 1])
            i += 2
            continue
        args.append(argv[i].removeprefix("--config="))
        i += 1
    preset = "default"
    cfg = load_config(config_class(preset), args, prog="train_nanecho.py")
    if cfg.preset != preset:  # the file or a flag chose a preset: read again over its defaults
        cfg = load_config(config_class(cfg.preset), args, prog="train_nanecho.py")
    return cfg


# ------------------------------------------------------------------------------------------
# Evaluation and samples (the report sections: trainkit/nanecho/run_state.py)
# ------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: torch.nn.Module, data: NanEchoData, rt: Runtime, cfg: NanEchoConfig,
             stop: Callable[[], bool] = lambda: False) -> dict[str, float] | None:
    """Validation loss per persona dimension, in nats per token, over each dimension's whole
    val split (or its first eval_iters batches), plus "all": the mean over every token.
    Under DDP each rank evaluates its share of the batches and the sums are added up
    (every rank calls this). ``stop()`` is asked before each batch: once it is True on any
    rank the evaluation ends early and returns None on every rank."""
    model.eval()
    sums, counts, cut = [], [], 0.0
    for dim in data.dimensions:
        total = torch.zeros((), device=rt.device, dtype=torch.float64)
        count = 0
        for x, y, n in rt.share(itertools.islice(data.iter_split("val", dim, cfg.batch_size), cfg.eval_iters or None)):
            if stop():
                cut = 1.0
                break
            with rt.autocast():
                _, loss = model(x, y)
            total += loss.double() * n
            count += n
        sums.append(total)
        counts.append(count)
        if cut:
            break
    missing = len(data.dimensions) - len(sums)  # a cut pass: the reduced tensor keeps one shape on every rank
    sums += [torch.zeros((), device=rt.device, dtype=torch.float64)] * missing
    counts += [0] * missing
    model.train()
    both = torch.cat([torch.stack(sums), torch.tensor([*counts, cut], dtype=torch.float64, device=rt.device)])
    both = rt.sum_across_ranks(both).tolist()  # one device sync for all
    if both[-1]:
        return None
    values, counts = both[:len(sums)], both[len(sums):-1]
    losses = {d: v / n for d, v, n in zip(data.dimensions, values, counts)}
    losses["all"] = sum(values) / sum(counts)
    return losses


@torch.no_grad()
def generate_sample(model: NanEchoGPT, data: NanEchoData, rt: Runtime, cfg: NanEchoConfig) -> str:
    """A short continuation of SAMPLE_PROMPT, drawn with a fixed seed (so consecutive samples
    differ only by what the model learned) and without touching the training RNG."""
    tok = data.tokenizer
    prompt = SAMPLE_PROMPT if all(c in tok.chars for c in SAMPLE_PROMPT) or tok.kind == "byte" else tok.decode([0])
    idx = torch.tensor([tok.encode(prompt)], dtype=torch.long, device=rt.device)
    model.eval()
    with torch.random.fork_rng(devices=[rt.device] if rt.device_type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        with rt.autocast():
            out = model.generate(idx, cfg.sample_tokens, temperature=0.8, top_k=20)
    model.train()
    return tok.decode(out[0].tolist())


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------

def main(argv: list[str]) -> None:
    if "-h" in argv or "--help" in argv:
        # Show the chosen preset's defaults: --preset tiny or --preset=tiny.
        given = [b for a, b in zip(argv, argv[1:]) if a == "--preset"] + [a[9:] for a in argv if a.startswith("--preset=")]
        preset = given[-1] if given and given[-1] in PRESETS else "default"
        print(format_help(config_class(preset), "train_nanecho.py", __doc__.strip()))
        return
    cfg = parse_args(argv)
    rt = start(cfg)
    logging.basicConfig(level=logging.INFO if rt.is_master else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    run_until_done(cfg, rt, train)


def data_seed(cfg: NanEchoConfig, rank: int) -> int:
    """The seed of this rank's batches. NanEchoData seeds one generator per dimension past
    its own (seed + 1 + i), so ranks' seeds lie that many apart and their streams never share
    a seed; rank 0 keeps cfg.seed."""
    return cfg.seed + rank * (1 + len(DIMENSIONS))


def show_sample(tracker: ProgressTracker, model: NanEchoGPT, data: NanEchoData, rt: Runtime, cfg: NanEchoConfig,
                done: int) -> None:
    """A milestone sample in the report; rank 0 alone draws it (the others wait in the next
    step's all-reduce)."""
    with tracker.pause("sample"):
        text = generate_sample(model, data, rt, cfg)
    # One line per report entry: the sample's newlines shown as " | ".
    tracker.set_section("✍️ Sample", {f"At {100 * done / cfg.max_iters:.0f}%": text.replace("\n", " | ")})


def model_line(cfg: NanEchoConfig, run: RunState, data: NanEchoData) -> str:
    """The model and the data, for the start of the log."""
    return (f"model: {run.total_params / 1e6:.2f}M parameters ({run.active_params:,} active), {cfg.n_layer} layers, "
            f"{cfg.n_head} heads, {cfg.n_embd} wide, context {cfg.block_size}; data: {cfg.data_dir} "
            f"({len(data.dimensions)} dimensions, vocabulary {data.vocab_size}, train {data.num_tokens('train'):,} / "
            f"val {data.num_tokens('val'):,} tokens)")


def train(cfg: NanEchoConfig, rt: Runtime, stop: GracefulStop | None = None) -> int:
    """Train as ``cfg`` says. Returns the exit code: 0, or 128 + the signal's number when
    ``stop`` was requested and the run stopped early (after saving a checkpoint)."""
    if rt.is_master:
        load_index(cfg.data_dir)  # prepares the built-in corpus when it is missing
    rt.barrier()
    torch.manual_seed(cfg.seed + rt.rank)
    data = NanEchoData(cfg.data_dir, cfg.block_size, rt.device, seed=data_seed(cfg, rt.rank))
    # Masks are drawn from the seed, not the rank: equal on every rank.
    training = Training(cfg, rt, NanEchoGPT, data, stop=stop,
                        init_fresh=lambda m: init_connections(m, cfg.connections().target_ratio(0), seed=cfg.seed))
    run = RunState(cfg, training, data.vocab_size)
    rt.print(model_line(cfg, run, data))
    rt.print(f"{training.runtime_line()}; preset {cfg.preset}")
    tracker = training.tracker(run.learning_rate)
    run.set_sections(tracker)
    values = training.first_values()

    def micro_loss() -> torch.Tensor:
        with tracker.data_wait():  # data time in the cross-rank figures under torchrun
            x, y = data.get_batch("train", cfg.batch_size, run.state.sampling_weights)  # the current phase's mix
        with rt.autocast():
            _, loss = training.model(x, y)
        return loss

    with tracker:
        for it in range(training.iter_num, cfg.max_iters):  # it: optimizer steps done before this one
            events = run.begin_step(it)
            lr = run.learning_rate(it)
            loss, grad_norm = training.step(lr, micro_loss)
            values |= run.step_values(grad_norm)
            done, measured, cut_eval = it + 1, None, False  # cut_eval: a signal cut this step's evaluation short
            if done % cfg.eval_interval == 0 or done == cfg.max_iters:
                with tracker.pause("eval"):  # every rank evaluates its share
                    measured = evaluate(training.fast_model, data, rt, cfg, stop=lambda: training.signal_pending)
                cut_eval = measured is None
                if measured is not None:
                    values["val_loss"] = measured["all"]
                    events.append(run.record_eval(done, measured))
            if run.sample_due(done):
                show_sample(tracker, training.raw_model, data, rt, cfg, done)
            # The step's report and events go out before its checkpoint: a kill between them
            # loses none for good (the resumed run redoes the step and sends them again).
            tracker.step(loss=loss, lr=lr, **values)
            values = {}
            for kind, fields in events:
                tracker.event(kind, **fields)
            if measured is not None and (training.record_val_loss(measured["all"], done) or cfg.always_save_checkpoint
                                         or done == cfg.max_iters):
                with tracker.pause("checkpoint"):
                    training.save(done, data.state_dict(), loss=loss, **run.checkpoint_extras(done))
            if cut_eval or (done < cfg.max_iters and training.stop_requested(done)):
                if cut_eval and training.agree_on_stop():
                    rt.print(f"the evaluation after iteration {done:,} was cut short by the signal and is not recorded")
                with tracker.pause("checkpoint"):
                    training.save_for_stop(done, data.state_dict(), loss=loss, **run.checkpoint_extras(done))
                return training.stop_exit_code  # the tracker closes as stopped
    rt.print(f"checkpoint: {training.ckpt_path} (iteration {cfg.max_iters:,}, {run.summary()}, "
             f"best val loss {training.best_val_loss:.4f})")
    return 0


if __name__ == "__main__":
    exit_on_config_error("train_nanecho.py", main)
