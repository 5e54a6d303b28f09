"""Bad settings and damaged files that used to end the trainers with a raw traceback: each is
refused at the entry point with one clear error naming the problem and the fix."""

from __future__ import annotations

import pytest
import torch

import train
from helpers import TINY_TRAIN
from trainkit.checkpoint import CheckpointError, load_checkpoint
from trainkit.config import ConfigError, parse_config_file
from trainkit.memory_check import InsufficientMemoryError, allocation_errors, check_fits


def test_a_batch_no_memory_can_hold_is_refused_naming_batch_size_and_its_memory(tmp_path, as_a_script):
    with pytest.raises(InsufficientMemoryError, match=r"batch_size=100000000000 x block_size=32 needs at least "
                                                      r"[\d.,]+ PB of activations .* Fix: lower --batch_size"):
        train.main([*TINY_TRAIN, "--batch_size=10**11", "--max_iters=4", f"--out_dir={tmp_path}"])
    assert not (tmp_path / "ckpt.pt").exists()


def test_a_model_no_memory_can_hold_is_refused_naming_n_embd_and_its_memory(tmp_path, as_a_script):
    with pytest.raises(InsufficientMemoryError, match=r"the model \(n_layer=2, n_embd=1000000: 24,000\.\d\d billion "
                                                      r"parameters\) needs about 384\.0 TB .* Fix: lower --n_embd"):
        train.main([*TINY_TRAIN, "--n_embd=10**6", "--n_head=1", "--max_iters=4", f"--out_dir={tmp_path}"])


def test_an_allocation_that_fails_anyway_names_the_keys_and_torchs_figure():
    with pytest.raises(InsufficientMemoryError, match=r"out of memory while building the model \(tried to allocate "
                                                      r"\d+ bytes\)\. Fix: lower --batch_size"):
        with allocation_errors("building the model"):
            torch.empty(10**15, dtype=torch.uint8)
    with pytest.raises(ValueError, match="not memory"):  # any other error passes through untouched
        with allocation_errors("building the model"):
            raise ValueError("not memory")


def test_check_fits_lets_a_run_that_fits_through():
    cfg = train.TrainConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4)
    check_fits(cfg, 65, torch.device("cpu"))  # no error: 0.45 MB of model state


def test_a_config_file_of_random_bytes_is_a_config_error(tmp_path):
    path = tmp_path / "noise.py"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match=r"noise\.py is not a text file \(byte 128 is not UTF-8\)\. Fix: pass a config file"):
        parse_config_file(path)
    path.write_bytes(b"max_iters = 5\n\0\0\0")
    with pytest.raises(ConfigError, match=r"is not a text file \(it holds NUL bytes\)"):
        parse_config_file(path)


@pytest.mark.parametrize("name, text", [
    ("deep.json", '{"phases": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    ("deep.py", "phases = " + "[" * 100_000 + "]" * 100_000 + "\n"),
    ("deeper.py", "phases = " + "[" * 950 + "]" * 950 + "\n"),  # parses, then too deep to evaluate
])
def test_a_config_nested_100000_deep_is_a_config_error(tmp_path, as_a_script, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=r"(nested too deeply to read|too many nested parentheses)"):
        train.main([str(tmp_path / name), f"--out_dir={tmp_path}"])


def test_a_checkpoint_whose_optimizer_moments_have_the_wrong_shape_is_refused(tmp_path, as_a_script):
    common = [*TINY_TRAIN, "--log_interval=0", f"--out_dir={tmp_path}"]
    train.main([*common, "--max_iters=4", "--final_full_eval=False"])
    path = tmp_path / "ckpt.pt"
    ckpt = load_checkpoint(str(path))
    moments = ckpt["optimizer"]["state"][0]
    moments["exp_avg"] = moments["exp_avg"].reshape(-1)[:-1].clone()
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"ckpt\.pt is damaged: the optimizer's exp_avg of transformer\.\w+\.weight "
                                              r"has shape \(\d+,\), its parameter \(\d+, \d+\)\. Fix: resume from"):
        train.main([*common, "--max_iters=8", "--init_from=resume"])
    ckpt["optimizer"]["param_groups"] = ckpt["optimizer"]["param_groups"][:1]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"ckpt\.pt does not fit this model and optimizer \(.*\)\. Fix: resume"):
        train.main([*common, "--max_iters=8", "--init_from=resume"])
