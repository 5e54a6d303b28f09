"""train_nanecho.py end to end: real tiny runs on the CPU, their reports, checkpoints, resume
and errors."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import train_nanecho
from trainkit.checkpoint import load_checkpoint
from trainkit.config import ConfigError
from trainkit.nanecho.connections import ConnectionSchedule
from trainkit.nanecho.corpus import prepare
from trainkit.nanecho.curriculum import DIMENSIONS, Curriculum

ROOT = Path(__file__).resolve().parents[1]
L, C, BLOCK, BATCH, ITERS = 1, 32, 32, 8, 40
GROWTH = ConnectionSchedule(0.10, 0.05, 10, 1.0)
SMALL = ["--preset", "tiny", "--n_layer", str(L), "--n_embd", str(C), "--n_head", "2", "--block_size", str(BLOCK),
         "--batch_size", str(BATCH), "--eval_interval", "20", "--eval_iters", "2", "--connection_growth_interval", "10",
         "--report_interval", "10", "--sample_tokens", "24"]


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "train_nanecho.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300)


def parse_reports(stdout: str) -> list[dict]:
    """Each progress block as {"percent", "iteration", "lines": {label: value}}."""
    out = []
    for block in re.split(r"^🔄 TRAINING PROGRESS: ", stdout, flags=re.M)[1:]:
        head = re.match(r"(\d+)% \(([\d,]+)/([\d,]+) iterations\)", block)
        lines = dict(re.findall(r"^   • ([^:\n]+): (.*)$", block.split("\n" + "=" * 80 + "\n\n")[0], flags=re.M))
        out.append({"percent": int(head[1]), "iteration": int(head[2].replace(",", "")), "lines": lines})
    return out


def connections(value: str) -> tuple[int, int]:
    active, total = re.fullmatch(r"([\d,]+)/([\d,]+) active", value).groups()
    return int(active.replace(",", "")), int(total.replace(",", ""))


def expected_active(iteration: int) -> int:
    """Connections after ``iteration`` steps, by hand: each masked weight keeps
    round(ratio x entries) with the ratio of the last growth at or before step iteration - 1."""
    ratio = GROWTH.target_ratio(max(iteration - 1, 0))
    return L * (round(ratio * C * C) + 2 * round(ratio * 4 * C * C))


def hand_total(vocab: int) -> int:
    return vocab * C + BLOCK * C + L * (2 * C + 12 * C * C) + C  # bias False: see test_nanecho_connections


def masks_of(ckpt: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in ckpt["model"].items() if k.endswith(".mask")}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nanecho_data")
    prepare(folder)
    return folder


@pytest.fixture(scope="module")
def full_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    result = run(*SMALL, "--max_iters", str(ITERS), "--data_dir", str(data_dir), "--out_dir", str(out))
    assert result.returncode == 0, result.stderr
    return result, out


def test_reports_every_interval_with_the_nanecho_fields(full_run):
    result, _ = full_run
    reports = parse_reports(result.stdout)
    assert [r["percent"] for r in reports] == list(range(10, 101, 10))
    assert [r["iteration"] for r in reports] == list(range(4, 41, 4))
    for r in reports:
        lines = r["lines"]
        for label in ("Loss (smoothed)", "Learning Rate", "Elapsed", "ETA", "Speed", "Process Memory (RSS)",
                      "Phase", "Focus", "Phase progress", "Next phase", "Connection Ratio", "Connections", "Active params",
                      "Total params"):
            assert label in lines, (label, r["percent"])
        assert lines["Batch size"] == f"{BATCH} × 1 accumulation"
        assert lines["Tokens/batch"] == f"{BATCH * BLOCK}"
        assert re.fullmatch(r"[\d,]+/[\d,]+ active", lines["Connections"])
        assert 0 < float(lines["Connection Ratio"]) <= 1
    assert "✅ TRAINING COMPLETE!" in result.stdout


def test_connection_ratio_is_the_mask_density_and_grows_on_schedule(full_run):
    result, out = full_run
    reports = parse_reports(result.stdout)
    for r in reports:
        active, total = connections(r["lines"]["Connections"])
        assert total == L * 9 * C * C
        assert active == expected_active(r["iteration"]), r["iteration"]
        assert float(r["lines"]["Connection Ratio"]) == pytest.approx(active / total, rel=1e-5)
    assert connections(reports[0]["lines"]["Connections"])[0] < connections(reports[-1]["lines"]["Connections"])[0]
    masks = masks_of(load_checkpoint(str(out / "ckpt.pt")))
    measured = sum(int(m.sum()) for m in masks.values())
    assert (measured, sum(m.numel() for m in masks.values())) == connections(reports[-1]["lines"]["Connections"])
    for it in (10, 20, 30):
        assert f"connection growth at iteration {it}:" in result.stderr


def test_active_params_are_exact_against_a_hand_count(full_run, data_dir):
    result, _ = full_run
    vocab = json.loads((data_dir / "meta.json").read_text())["vocab_size"]
    for r in parse_reports(result.stdout):
        active, total = connections(r["lines"]["Connections"])
        assert r["lines"]["Total params"] == f"{hand_total(vocab):,}"
        assert r["lines"]["Active params"] == f"{hand_total(vocab) - (total - active):,}"


def test_phases_follow_the_curriculum_and_changes_are_logged(full_run):
    result, out = full_run
    curriculum = Curriculum()
    for r in parse_reports(result.stdout):
        state = curriculum.state(100 * (r["iteration"] - 1) / ITERS)  # the phase of the last step run
        assert r["lines"]["Phase"] == state.phase.name and r["lines"]["Focus"] == state.phase.description
        assert r["lines"]["LR multiplier"] == f"×{state.lr_multiplier:.3f}"
    changes = re.findall(r"phase change at iteration (\d+) \([\d.]+%\): (\w+)", result.stderr)
    # Phases start at 15, 40, 60 and 80% of 40 iterations.
    assert changes == [("6", "persona_dimensions"), ("16", "hypergraph_patterns"),
                       ("24", "recursive_reasoning"), ("32", "adaptive_mastery")]
    ckpt = load_checkpoint(str(out / "ckpt.pt"))
    assert ckpt["phase"] == "adaptive_mastery" and ckpt["percent"] == 100.0


def test_per_dimension_validation_losses_in_report_and_log(full_run):
    result, out = full_run
    last = parse_reports(result.stdout)[-1]["lines"]
    ckpt = load_checkpoint(str(out / "ckpt.pt"))
    for dim in DIMENSIONS:
        loss = ckpt["val_losses"][dim]
        assert re.fullmatch(rf"{loss:.4f} [█░]{{20}} \d+%( \(focus\))?", last[dim])
        assert f"{dim} {loss:.4f}" in result.stderr
    assert last["Validation Loss"] == f"{ckpt['val_losses']['all']:.6f}"
    assert re.search(r"first evaluation at iteration 20", result.stdout)  # before the first eval
    assert "At 100%" in last and "At 25%" in parse_reports(result.stdout)[2]["lines"]


def test_evaluate_matches_a_direct_per_dimension_computation(full_run, data_dir):
    _, out = full_run
    ckpt = load_checkpoint(str(out / "ckpt.pt"))
    cfg = train_nanecho.parse_args([*SMALL, "--max_iters", str(ITERS), "--data_dir", str(data_dir), "--eval_iters", "0"])
    model = train_nanecho.NanEchoGPT(train_nanecho.GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(ckpt["model"])
    rt = train_nanecho.setup_runtime("cpu", "float32")
    data = train_nanecho.NanEchoData(str(data_dir), BLOCK, "cpu", seed=0)
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


def test_resume_restores_masks_phase_and_percent(full_run, data_dir, tmp_path):
    _, full_out = full_run
    first = run(*SMALL, "--max_iters", "20", "--data_dir", str(data_dir), "--out_dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    half = load_checkpoint(str(tmp_path / "ckpt.pt"))
    assert half["iter_num"] == 20
    resumed = run(*SMALL, "--max_iters", str(ITERS), "--data_dir", str(data_dir), "--out_dir", str(tmp_path),
                  "--init_from", "resume")
    assert resumed.returncode == 0, resumed.stderr
    reports = parse_reports(resumed.stdout)
    assert [r["percent"] for r in reports] == [60, 70, 80, 90, 100]  # 50% was passed before the resume
    assert reports[0]["lines"]["Tokens processed"] == f"{24 * BATCH * BLOCK:,}"  # the first 20 steps count too
    end = load_checkpoint(str(tmp_path / "ckpt.pt"))
    for name, mask in masks_of(end).items():
        assert bool((mask | ~masks_of(half)[name]).all())  # every restored connection kept
    # Growth depends only on (seed, iteration): resumed masks equal the uninterrupted run's.
    uninterrupted = masks_of(load_checkpoint(str(full_out / "ckpt.pt")))
    assert all(torch.equal(mask, uninterrupted[name]) for name, mask in masks_of(end).items())
    # At 50% of the longer run the phase is hypergraph_patterns, not the checkpoint's final phase.
    assert re.search(r"phase change at iteration 20 \(50.0%\): hypergraph_patterns", resumed.stderr)


def test_bad_flags_and_bad_data_exit_non_zero_with_the_fix(data_dir, tmp_path):
    out = tmp_path / "never"
    cases = [
        (["--max_iter", "10"], "unknown config key 'max_iter'.*Did you mean 'max_iters'"),
        (["--preset", "huge"], "preset"),
        (["--data_dir", str(tmp_path)], "holds no prepared NanEcho dataset.*Fix: python data/nanecho/prepare.py"),
        (["--block_size", "100000", "--data_dir", str(data_dir)], "fewer than the .* needed"),
        (["--init_from", "resume", "--data_dir", str(data_dir)], "no checkpoint at"),
    ]
    for args, words in cases:
        result = run("--preset", "tiny", "--out_dir", str(out), *args)
        assert result.returncode != 0, args
        assert re.search(words, result.stderr), (args, result.stderr)
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
