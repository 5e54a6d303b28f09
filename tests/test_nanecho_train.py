"""train_nanecho.py end to end: real tiny runs on the CPU, their reports, checkpoints, resume
and errors."""

import json
import math
import re

import numpy as np
import pytest
import torch

import train_nanecho
from helpers import NANECHO_TINY, read_jsonl, run_script
from trainkit.checkpoint import load_checkpoint
from trainkit.config import ConfigError
from trainkit.model import GPTConfig
from trainkit.nanecho.connections import ConnectionSchedule
from trainkit.nanecho.curriculum import DIMENSIONS, Curriculum
from trainkit.nanecho.data import NanEchoData
from trainkit.nanecho.model import NanEchoGPT
from trainkit.runtime import setup_runtime

L, C, BLOCK, BATCH, ITERS = 1, 32, 32, 8, 40
GROWTH = ConnectionSchedule(0.10, 0.05, 10, 1.0)
TOTAL_CONNECTIONS = L * 9 * C * C  # attention's c_proj (C x C) and the MLP's two (4C x C) weights
SMALL = NANECHO_TINY


def run(*args: str, check: bool = True):
    return run_script("train_nanecho.py", *args, check=check)


def this_run(records: list[dict]) -> list[dict]:
    """The records of the latest process (a resumed run appends to the same log)."""
    starts = [i for i, r in enumerate(records) if r["type"] == "run_start"]
    return records[starts[-1]:]


def parse_reports(records: list[dict]) -> list[dict]:
    """Each scheduled report as its JSONL record plus "lines": every section line, by label."""
    reports = [r for r in this_run(records) if r["type"] == "report" and r["kind"] == "scheduled"]
    return [{**r, "lines": {label: value for s in r["sections"] for label, value in s["lines"]}} for r in reports]


def events(records: list[dict], kind: str) -> list[dict]:
    return [r for r in this_run(records) if r["type"] == "event" and r["event"] == kind]


def active_connections(report: dict) -> int:
    return round(report["metrics"]["connection_ratio"] * TOTAL_CONNECTIONS)


def expected_active(iteration: int) -> int:
    """Connections after ``iteration`` steps, by hand: each masked weight keeps
    round(ratio x entries) with the ratio of the last growth at or before step iteration - 1."""
    ratio = GROWTH.target_ratio(max(iteration - 1, 0))
    return L * (round(ratio * C * C) + 2 * round(ratio * 4 * C * C))


def hand_total(vocab: int) -> int:
    return vocab * C + BLOCK * C + L * (2 * C + 12 * C * C) + C  # bias False: see test_nanecho_connections


def masks_of(ckpt: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in ckpt["model"].items() if k.endswith(".mask")}


@pytest.fixture
def data_dir(nanecho_data_dir):
    return nanecho_data_dir


@pytest.fixture
def full_run(tiny_nanecho_run):
    """The shared 40-step run of tests/conftest.py: its records, out_dir and result."""
    out, result = tiny_nanecho_run
    return read_jsonl(out / "progress.jsonl"), out, result


def test_reports_every_interval_with_the_nanecho_fields(full_run):
    records, _, result = full_run
    reports = parse_reports(records)
    assert [r["percent"] for r in reports] == [float(p) for p in range(10, 101, 10)]
    assert [r["iteration"] for r in reports] == list(range(4, 41, 4))
    for r in reports:
        assert r["smoothed_loss"] > 0 and r["lr"] > 0 and r["elapsed_s"] > 0 and r["iters_per_s"] > 0
        assert r["eta_s"] is not None and r["memory"]
        for label in ("Connections", "Focus", "Phase progress", "Next phase", "LR multiplier", "Active params", "Total params"):
            assert label in r["lines"], (label, r["percent"])
        assert r["lines"]["Batch size"] == f"{BATCH} × 1 accumulation"
        assert r["lines"]["Tokens/batch"] == BATCH * BLOCK
    assert [r["type"] for r in records[-2:]] == ["report", "run_end"] and records[-1]["status"] == "completed"
    assert "TRAINING COMPLETE" in result.stdout


def test_connection_ratio_is_the_mask_density_and_grows_on_schedule(full_run):
    records, out, _ = full_run
    reports = parse_reports(records)
    for r in reports:
        assert active_connections(r) == expected_active(r["iteration"]), r["iteration"]
    assert active_connections(reports[0]) < active_connections(reports[-1])
    masks = masks_of(load_checkpoint(str(out / "ckpt.pt")))
    assert sum(m.numel() for m in masks.values()) == TOTAL_CONNECTIONS
    assert sum(int(m.sum()) for m in masks.values()) == active_connections(reports[-1])
    growth = events(records, "connection_growth")
    # Recorded with the first step run after the growth (connections grow before steps 11, 21, 31).
    assert [(e["iteration"], e["data"]["start_iteration"]) for e in growth] == [(11, 10), (21, 20), (31, 30)]
    assert [round(e["data"]["connection_ratio"] * TOTAL_CONNECTIONS) for e in growth] == [expected_active(i + 1) for i in (10, 20, 30)]


def test_active_params_are_exact_against_a_hand_count(full_run, data_dir):
    records, _, _ = full_run
    vocab = json.loads((data_dir / "meta.json").read_text())["vocab_size"]
    for r in parse_reports(records):
        assert r["lines"]["Total params"] == hand_total(vocab)
        assert r["lines"]["Active params"] == hand_total(vocab) - (TOTAL_CONNECTIONS - active_connections(r))


def test_phases_follow_the_curriculum_and_changes_are_logged(full_run):
    records, out, _ = full_run
    curriculum = Curriculum()
    for r in parse_reports(records):
        state = curriculum.state(100 * (r["iteration"] - 1) / ITERS)  # the phase of the last step run
        assert r["metrics"]["phase"] == state.phase.name and r["lines"]["Focus"] == state.phase.description
        assert r["lines"]["LR multiplier"] == f"×{state.lr_multiplier:.3f}"
    # Phases start at 15, 40, 60 and 80% of 40 iterations; each change is recorded with the
    # first step run in the new phase.
    assert [(e["data"]["start_iteration"], e["data"]["phase"]) for e in events(records, "phase_change")] == [
        (0, "basic_awareness"), (6, "persona_dimensions"), (16, "hypergraph_patterns"),
        (24, "recursive_reasoning"), (32, "adaptive_mastery")]
    assert all(e["iteration"] == e["data"]["start_iteration"] + 1 for e in events(records, "phase_change"))
    ckpt = load_checkpoint(str(out / "ckpt.pt"))
    assert ckpt["phase"] == "adaptive_mastery" and ckpt["percent"] == 100.0


def test_per_dimension_validation_losses_in_report_and_log(full_run):
    records, out, _ = full_run
    reports = parse_reports(records)
    ckpt = load_checkpoint(str(out / "ckpt.pt"))
    last = reports[-1]
    for dim in DIMENSIONS:
        loss = ckpt["val_losses"][dim]
        assert re.fullmatch(rf"{loss:.4f} [█░]{{20}} \d+%( \(focus\))?", last["lines"][dim])
    evals = events(records, "persona_eval")
    assert len(evals) == 2  # after steps 20 and 40
    assert evals[-1]["data"] == {f"val_loss/{d}": v for d, v in ckpt["val_losses"].items()}
    assert last["metrics"]["val_loss"] == ckpt["val_losses"]["all"]
    assert reports[0]["lines"]["Validation loss"] == "first evaluation at iteration 20"
    assert "At 100%" in last["lines"] and "At 25%" in reports[2]["lines"]


def test_evaluate_matches_a_direct_per_dimension_computation(full_run, data_dir):
    _, out, _ = full_run
    ckpt = load_checkpoint(str(out / "ckpt.pt"))
    cfg = train_nanecho.parse_args([*SMALL, "--max_iters", str(ITERS), "--data_dir", str(data_dir), "--eval_iters", "0"])
    model = NanEchoGPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    rt = setup_runtime("cpu", "float32")
    data = NanEchoData(str(data_dir), BLOCK, "cpu", seed=0)
    losses = train_nanecho.evaluate(model, data, rt, cfg)
    assert set(losses) == set(DIMENSIONS) | {"all"}
    model.eval()
    for dim in ("recursive", "dynamic"):
        tokens = torch.from_numpy(np.fromfile(data_dir / dim / "val.bin", dtype=np.uint16).astype(np.int64))
        n = (len(tokens) - 1) // BLOCK * BLOCK  # targets in whole windows; the tail's come from a last window
        x, y = tokens[:n].view(-1, BLOCK), tokens[1 : n + 1].view(-1, BLOCK)
        with torch.no_grad():
            logits, _ = model(x, y)
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none")
        tail = len(tokens) - 1 - n
        window = tokens[-BLOCK - 1:]
        with torch.no_grad():
            tail_logits, _ = model(window[:-1].view(1, -1), window[1:].view(1, -1))
        tail_nll = torch.nn.functional.cross_entropy(tail_logits[0], window[1:], reduction="none")[BLOCK - tail:]
        direct = (nll.sum() + tail_nll.sum()).item() / (len(tokens) - 1)
        assert losses[dim] == pytest.approx(direct, rel=1e-5)
    assert min(losses[d] for d in DIMENSIONS) <= losses["all"] <= max(losses[d] for d in DIMENSIONS)


def test_a_signal_during_evaluate_stops_it_at_the_next_batch_and_returns_none(full_run, data_dir):
    _, out, _ = full_run
    ckpt = load_checkpoint(str(out / "ckpt.pt"))
    cfg = train_nanecho.parse_args([*SMALL, "--max_iters", str(ITERS), "--data_dir", str(data_dir), "--eval_iters", "0"])
    model = NanEchoGPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    data = NanEchoData(str(data_dir), BLOCK, "cpu", seed=0)
    asked = []

    def signal_after_three_batches() -> bool:
        asked.append(1)
        return len(asked) > 3

    assert train_nanecho.evaluate(model, data, setup_runtime("cpu", "float32"), cfg, stop=signal_after_three_batches) is None
    assert len(asked) == 4  # it stopped at the first question answered True, not at the end of the split
    assert model.training  # left in training mode, as a finished evaluation leaves it


def test_resume_restores_masks_phase_and_percent(full_run, data_dir, tmp_path, capsys, as_a_script):
    """In process: 20 steps, then the same out_dir resumed to 40."""
    _, full_out, _ = full_run
    train_nanecho.main([*SMALL, "--max_iters", "20", "--data_dir", str(data_dir), "--out_dir", str(tmp_path)])
    half = load_checkpoint(str(tmp_path / "ckpt.pt"))
    assert half["iter_num"] == 20
    train_nanecho.main([*SMALL, "--max_iters", str(ITERS), "--data_dir", str(data_dir), "--out_dir", str(tmp_path),
                        "--init_from", "resume"])
    assert "TRAINING COMPLETE" in capsys.readouterr().out
    records = read_jsonl(tmp_path / "progress.jsonl")
    reports = parse_reports(records)
    assert [r["percent"] for r in reports] == [60.0, 70.0, 80.0, 90.0, 100.0]  # 50% was passed before the resume
    assert reports[0]["tokens_processed"] == 24 * BATCH * BLOCK  # the first 20 steps count too
    end = load_checkpoint(str(tmp_path / "ckpt.pt"))
    for name, mask in masks_of(end).items():
        assert bool((mask | ~masks_of(half)[name]).all())  # every restored connection kept
    # Growth depends only on (seed, iteration): resumed masks equal the uninterrupted run's.
    uninterrupted = masks_of(load_checkpoint(str(full_out / "ckpt.pt")))
    assert all(torch.equal(mask, uninterrupted[name]) for name, mask in masks_of(end).items())
    # At 50% of the longer run the phase is hypergraph_patterns, not the checkpoint's final phase.
    first_change = events(records, "phase_change")[0]
    assert (first_change["iteration"], first_change["data"]["phase"]) == (21, "hypergraph_patterns")
    assert first_change["data"]["previous"] == "adaptive_mastery"


def bad_flags_and_bad_data(data_dir, tmp_path) -> list[tuple[list[str], str]]:
    return [
        (["--max_iter", "10"], "unknown config key 'max_iter'.*Did you mean 'max_iters'"),
        (["--preset", "huge"], "preset"),
        (["--data_dir", str(tmp_path)], "holds no prepared NanEcho dataset.*Fix: python data/nanecho/prepare.py"),
        (["--block_size", "100000", "--data_dir", str(data_dir)], "fewer than the .* needed"),
        (["--init_from", "resume", "--data_dir", str(data_dir)], "no checkpoint at"),
    ]


def test_bad_flags_and_bad_data_are_config_errors_with_the_fix(data_dir, tmp_path, capsys, as_a_script):
    """In process: train_nanecho.py's entry point turns each ConfigError into one error line
    and a non-zero exit (the real process below proves that path)."""
    out = tmp_path / "never"
    for args, words in bad_flags_and_bad_data(data_dir, tmp_path):
        with pytest.raises(ConfigError, match=words):
            train_nanecho.main(["--preset", "tiny", "--out_dir", str(out), *args])
        assert not out.exists()
    assert "TRAINING PROGRESS" not in capsys.readouterr().out


def test_bad_data_exits_non_zero_with_one_error_line(tmp_path):
    out = tmp_path / "never"
    result = run("--preset", "tiny", "--out_dir", str(out), "--data_dir", str(tmp_path), check=False)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("train_nanecho.py: error: "), result.stderr
    assert re.search("holds no prepared NanEcho dataset.*Fix: python data/nanecho/prepare.py", last)
    assert "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (["--initial_connections", "1.5"], "initial_connections <= max_connections <= 1"),
    (["--connection_growth_interval", "0"], "connection_growth_interval must be a positive"),
    (["--n_embd", "30", "--n_head", "4"], "divisible by n_head"),
    (["--batch_size", "0"], "batch_size must be > 0"),
    (["--report_interval", "0"], "report_interval"),
    (["--learning_rate", "fast"], "learning_rate' expects float"),
    (["--focus_weight", "0.5"], "focus_weight must be >= 1"),
    (["--phases", json.dumps([{"name": n, "start_pct": a, "end_pct": b, "lr_multiplier": 1.0, "description": n}
                              for n, a, b in (("a", 0, 60), ("b", 20, 50), ("c", 50, 100))])],
     r"'b' \(20-50%\) lies inside 'a' \(0-60%\).*Fix: end 'a' before 50%"),
    (["--config"], "--config needs a file"),
    (["--config", "missing.json"], "config file 'missing.json' not found"),
])
def test_impossible_settings_are_config_errors(args, words):
    with pytest.raises(ConfigError, match=words):
        train_nanecho.parse_args(["--preset", "tiny", *args])


def test_presets_set_defaults_that_files_and_flags_override(tmp_path):
    tiny = train_nanecho.parse_args(["--preset", "tiny"])
    assert (tiny.n_layer, tiny.max_iters, tiny.connection_growth_interval) == (2, 300, 25)
    default = train_nanecho.parse_args(["--max_iters", "50000"])
    assert (default.preset, default.connection_growth_interval, default.initial_connections) == ("default", 500, 0.10)
    assert default.batch_size * default.gradient_accumulation_steps * default.block_size == 8192
    assert (default.warmup_iters, default.lr_decay_iters, default.eval_interval) == (1000, 50000, 5000)
    settings = tmp_path / "run.json"
    phases = [{"name": "only", "start_pct": 0, "end_pct": 100, "lr_multiplier": 1.0, "description": "All", "focus": ["dynamic"]}]
    settings.write_text(json.dumps({"preset": "tiny", "n_layer": 3, "phases": phases}))
    cfg = train_nanecho.parse_args(["--config", str(settings), "--max_iters", "7"])
    assert (cfg.preset, cfg.n_layer, cfg.max_iters, cfg.n_embd) == ("tiny", 3, 7, 64)
    assert cfg.curriculum().state(50).label == "only - All"
    assert math.isclose(cfg.min_lr, cfg.learning_rate / 10)


def test_the_forecast_is_given_the_rates_the_run_set_curriculum_multiplier_included(full_run):
    records, _, _ = full_run
    cfg = train_nanecho.parse_args(SMALL + ["--max_iters", str(ITERS)])
    rate = cfg.step_learning_rate()
    multipliers = {cfg.curriculum().state(100.0 * it / ITERS).lr_multiplier for it in range(ITERS)}
    assert len(multipliers) > 1  # the phases change the rate in this run
    for r in parse_reports(records):  # each report's lr is the rate its step used
        assert rate(r["iteration"] - 1) == pytest.approx(r["lr"], rel=1e-9)
