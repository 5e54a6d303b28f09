"""trainkit.checkpoint: atomic saves that never destroy the previous checkpoint, and safe loads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from trainkit.checkpoint import CheckpointError, CheckpointSaveError, load_checkpoint, save_checkpoint, strip_compile_prefix

REPO = Path(__file__).resolve().parents[1]


def payload(value: float) -> dict:
    return {"model": {"w": torch.full((4, 4), value)}, "iter_num": int(value), "best_val_loss": value, "config": {"a": [1, "x"]}}


def test_round_trip(tmp_path):
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, payload(3.0))
    ckpt = load_checkpoint(path)
    assert ckpt["iter_num"] == 3 and ckpt["config"] == {"a": [1, "x"]}
    assert torch.equal(ckpt["model"]["w"], torch.full((4, 4), 3.0))
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.pt")
    save_checkpoint(path, payload(1.0))

    def torch_save_that_dies(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torch_save_that_dies)
    with pytest.raises(CheckpointSaveError, match="disk full"):
        save_checkpoint(path, payload(2.0))
    assert load_checkpoint(path)["iter_num"] == 1
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # the temporary file is gone too


def test_process_killed_while_saving_keeps_the_previous_checkpoint(tmp_path):
    """A real crash: the saving process is killed (SIGKILL) in the middle of writing."""
    path = tmp_path / "ckpt.pt"
    save_checkpoint(str(path), payload(1.0))
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        sys.path.insert(0, {str(REPO)!r})
        from trainkit.checkpoint import save_checkpoint
        real_save = torch.save
        def save_then_die(obj, f):
            f.write(b"partial")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = save_then_die
        save_checkpoint({str(path)!r}, {{"model": {{}}}})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL
    assert load_checkpoint(str(path))["iter_num"] == 1


def test_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*ckpt\.pt\. Fix: train from scratch first"):
        load_checkpoint(str(tmp_path / "ckpt.pt"))


def test_truncated_checkpoint_is_reported(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(str(path), payload(1.0))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"ckpt\.pt is unreadable"):
        load_checkpoint(str(path))


class Gadget:
    """Unpickling this runs code; weights_only loading must refuse it."""

    def __reduce__(self):
        return (os.system, ("true",))


def test_load_refuses_code(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {}, "evil": Gadget()}, path)
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(str(path))


def test_not_a_training_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        load_checkpoint(str(path))


def test_strip_compile_prefix():
    w = torch.zeros(1)
    assert strip_compile_prefix({"_orig_mod.lm_head.weight": w, "wpe.weight": w}) == {"lm_head.weight": w, "wpe.weight": w}
