"""Resuming under torchrun keeps the ranks apart: two CPU processes (gloo) per run, for both
trainers. Each rank's data-sampler state goes into the checkpoint and comes back to that
rank, so the ranks draw different batches before and after a resume, and a resumed run
draws exactly the batches (and ends with exactly the weights) of the uninterrupted run."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

import train_nanecho
from helpers import REPO, TINY_TRAIN, run_script
from trainkit.data import TokenData
from trainkit.nanecho.curriculum import DIMENSIONS
from trainkit.nanecho.data import NanEchoData

COMMON_TRAIN = [*TINY_TRAIN, "--gradient_accumulation_steps=2", "--eval_interval=4", "--final_full_eval=False",
                "--report_interval=50"]
COMMON_NANECHO = ["--preset=tiny", "--n_layer=1", "--n_embd=32", "--n_head=2", "--block_size=32", "--batch_size=8",
                  "--gradient_accumulation_steps=2", "--eval_interval=4", "--eval_iters=1", "--report_interval=50",
                  "--sample_at_milestones=False", "--anomaly_detection=False", "--warmup_iters=1", "--lr_decay_iters=8"]


def batch_hash(x: torch.Tensor) -> str:
    return hashlib.sha256(x.numpy().tobytes()).hexdigest()


def next_train_batches(ckpt: dict) -> list[str]:
    """The hash of the batch each rank would draw next, from its saved sampler state."""
    hashes = []
    for state in ckpt["data"]:
        data = TokenData(str(REPO / "data" / "shakespeare_char"), 32, "cpu", seed=0)
        data.load_state_dict(state)
        hashes.append(batch_hash(data.get_batch("train", 4)[0]))
    return hashes


def next_nanecho_batches(ckpt: dict, data_dir) -> list[str]:
    hashes = []
    for state in ckpt["data"]:
        data = NanEchoData(str(data_dir), 32, "cpu", seed=0)
        data.load_state_dict(state)
        hashes.append(batch_hash(data.get_batch("train", 8, dict.fromkeys(DIMENSIONS, 1.0))[0]))
    return hashes


def straight_and_resumed(script: str, common: list[str], tmp_path) -> tuple[dict, dict, dict]:
    """Checkpoints of 8 steps straight, of 4 steps, and of those 4 resumed to 8."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_script(script, *common, "--max_iters=8", f"--out_dir={straight}", processes=2)
    run_script(script, *common, "--max_iters=4", f"--out_dir={resumed}", processes=2)
    half = torch.load(resumed / "ckpt.pt", weights_only=True)
    run_script(script, *common, "--max_iters=8", "--init_from=resume", f"--out_dir={resumed}", processes=2)
    load = lambda folder: torch.load(folder / "ckpt.pt", weights_only=True)  # noqa: E731
    return load(straight), half, load(resumed)


def check(straight: dict, half: dict, resumed: dict, next_batches) -> None:
    assert half["iter_num"] == 4 and resumed["iter_num"] == straight["iter_num"] == 8
    before, after, uninterrupted = next_batches(half), next_batches(resumed), next_batches(straight)
    assert len(before) == len(after) == 2
    assert before[0] != before[1] and after[0] != after[1]  # the ranks draw different batches
    assert after == uninterrupted  # each rank continued its own stream
    for name, tensor in straight["model"].items():  # so the model trained on the same batches
        assert torch.allclose(resumed["model"][name], tensor, rtol=1e-5, atol=1e-6), name


@pytest.mark.process
def test_train_py_resume_keeps_each_rank_on_its_own_stream(tmp_path):
    check(*straight_and_resumed("train.py", COMMON_TRAIN, tmp_path), next_train_batches)


@pytest.fixture
def nanecho_data(nanecho_data_dir):
    return nanecho_data_dir  # prepared once per session (tests/conftest.py)


@pytest.mark.process
def test_nanecho_resume_keeps_each_rank_on_its_own_stream(tmp_path, nanecho_data):
    # One phase for the whole run: the curriculum (sampling mix, lr multiplier) follows the
    # percent of max_iters, so only then are 4 steps of a 4-step run those of an 8-step run.
    settings = tmp_path / "one_phase.json"
    settings.write_text(json.dumps({"phases": [{"name": "only", "start_pct": 0, "end_pct": 100, "lr_multiplier": 1.0,
                                                "description": "All", "focus": ["dynamic"]}]}))
    runs = straight_and_resumed("train_nanecho.py", [*COMMON_NANECHO, f"--data_dir={nanecho_data}", "--config",
                                                     str(settings)], tmp_path)
    check(*runs, lambda ckpt: next_nanecho_batches(ckpt, nanecho_data))


def test_nanecho_ranks_draw_from_seeds_that_never_overlap():
    """NanEchoData seeds one generator per dimension past its own; the ranks' sets are apart."""
    cfg = train_nanecho.parse_args(["--preset=tiny"])
    seeds = [set(range(train_nanecho.data_seed(cfg, rank), train_nanecho.data_seed(cfg, rank) + 1 + len(DIMENSIONS)))
             for rank in range(4)]
    assert all(not (seeds[a] & seeds[b]) for a in range(4) for b in range(a + 1, 4))
    assert train_nanecho.data_seed(cfg, 0) == cfg.seed
