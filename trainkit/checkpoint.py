"""Checkpoints that survive crashes: written to a temporary file in the same folder, flushed
to disk, then renamed over the old one (``os.replace`` is atomic on POSIX and Windows), so
at every moment the path holds either the previous complete checkpoint or the new one.
Loaded with ``weights_only=True``: a checkpoint can hold tensors and plain data, never code.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch

from trainkit.config import ConfigError
from trainkit.model import SHAPE_KEYS

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "strip_compile_prefix"]


class CheckpointError(ConfigError):
    """A checkpoint that is missing or unreadable; the message names the file and the fix."""


def save_checkpoint(path: str, payload: dict[str, Any]) -> None:
    """Write ``payload`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically.
    The folder must exist. If anything fails, the previous file at ``path`` is untouched and
    the temporary file is removed."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())  # the data must be on disk before the rename makes it visible
        os.chmod(tmp, 0o644)  # mkstemp makes files private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):
        # Persist the rename itself (the directory entry); without it a power cut could lose it.
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by save_checkpoint (or nanoGPT) with ``weights_only=True``."""
    if not os.path.isfile(path):
        raise CheckpointError(
            f"no checkpoint at {path}. Fix: train from scratch first (--init_from=scratch), "
            f"or point --out_dir at the folder that holds ckpt.pt."
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, wrong format, disallowed global: all unusable
        raise CheckpointError(f"{path} is unreadable ({type(e).__name__}: {e}). Fix: restore it or train from scratch.") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a training checkpoint (no 'model' entry).")
    return ckpt


def load_for_resume(
    path: str, map_location: str | torch.device, model_args: dict[str, Any], max_iters: int, *, allow_finished: bool = False
) -> dict[str, Any]:
    """Load the checkpoint a run resumes from, refusing (ConfigError, with the fix) one whose
    model shape differs from ``model_args`` or that is already at ``max_iters`` (unless
    ``allow_finished``, e.g. to evaluate it)."""
    ckpt = load_checkpoint(path, map_location)
    saved = ckpt["model_args"]
    differ = [f"{k}={saved.get(k)!r} (config: {model_args[k]!r})" for k in SHAPE_KEYS if saved.get(k) != model_args[k]]
    if differ:
        raise ConfigError(
            f"{path} holds a model with {', '.join(differ)}. "
            f"Fix: resume with the config (and data) the checkpoint was trained with."
        )
    if ckpt["iter_num"] >= max_iters and not allow_finished:
        raise ConfigError(
            f"{path} is already at iteration {ckpt['iter_num']:,} of max_iters={max_iters:,}. "
            f"Fix: raise --max_iters to continue training (and lr_decay_iters with it)."
        )
    return ckpt


def strip_compile_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the ``_orig_mod.`` prefix that a torch.compile'd model adds to every key, so
    state dicts saved from compiled models (as nanoGPT's are) load into plain ones."""
    prefix = "_orig_mod."
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}
