"""Token datasets as nanoGPT stores them: ``<data_dir>/<dataset>/train.bin`` and ``val.bin``
(flat uint16 token ids, memory-mapped, never read whole) and ``meta.pkl`` (``vocab_size``,
and ``stoi``, ``itos`` for character vocabularies). Training needs ``meta.pkl``: guessing a
vocabulary (nanoGPT falls back to GPT-2's 50,257) would silently train the wrong model.
``meta.pkl`` is read as plain data, never as code (PlainDataUnpickler).

``ensure_prepared`` runs the dataset's ``prepare.py`` when its files are missing;
``TokenData`` checks the files and serves random training batches and full-split
evaluation batches. Every problem raises DataError naming the file and the fix.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator

import numpy as np
import torch

from trainkit.config import ConfigError
from trainkit.plain_unpickler import PlainDataUnpickler

__all__ = ["DataError", "ensure_prepared", "load_meta", "open_tokens", "TokenData"]

SPLITS = ("train", "val")


class DataError(ConfigError):
    """Missing, corrupt or too-small data; the message names the file and the fix."""


def _missing(dataset_dir: str) -> list[str]:
    return [os.path.join(dataset_dir, f"{s}.bin") for s in SPLITS if not os.path.isfile(os.path.join(dataset_dir, f"{s}.bin"))]


def ensure_prepared(dataset_dir: str) -> None:
    """Make sure ``train.bin`` and ``val.bin`` exist in ``dataset_dir``, running its
    ``prepare.py`` (locally, nothing is downloaded) if they do not. Call it on one process
    only; others should wait (a barrier) before reading."""
    missing = _missing(dataset_dir)
    if not missing:
        return
    script = os.path.join(dataset_dir, "prepare.py")
    if not os.path.isfile(script):
        root = os.path.dirname(os.path.abspath(dataset_dir))
        known = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))) if os.path.isdir(root) else []
        hint = f" Datasets in {root}: {', '.join(known)}." if known else ""
        raise DataError(
            f"{missing[0]} not found and there is no {script} to make it.{hint} "
            f"Fix: check --dataset, or write the token files (uint16 ids) there."
        )
    print(f"preparing data: {sys.executable} {script}", flush=True)
    result = subprocess.run([sys.executable, script], capture_output=True, text=True)
    if result.returncode != 0:
        raise DataError(f"{script} failed (exit {result.returncode}):\n{result.stderr.strip()}")
    if _missing(dataset_dir):
        raise DataError(f"{script} ran but did not write {', '.join(_missing(dataset_dir))}.")


def load_meta(dataset_dir: str) -> dict | None:
    """The dataset's ``meta.pkl`` as a dict, or None when there is none (then the vocabulary
    is GPT-2's). Read as plain data only (PlainDataUnpickler): a crafted file in a dataset
    folder cannot run code."""
    path = os.path.join(dataset_dir, "meta.pkl")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            meta = PlainDataUnpickler(f).load()
    except Exception as e:  # any unpickling failure means the same thing to the user
        raise DataError(f"{path} is unreadable ({type(e).__name__}: {e}). Fix: delete it and re-run the dataset's prepare.py, "
                        f"which writes plain data.") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("vocab_size"), int) or meta["vocab_size"] <= 0:
        raise DataError(f"{path} has no positive integer 'vocab_size'. Fix: delete it and re-run the dataset's prepare.py.")
    return meta


def open_tokens(path: str, vocab_size: int, min_tokens: int) -> np.memmap:
    """Memory-map a uint16 token file, checking that its size is whole uint16s, that it holds
    at least ``min_tokens`` tokens, and that every id is below ``vocab_size``."""
    fix = "Fix: delete the data files and re-run the dataset's prepare.py."
    if not os.path.isfile(path):
        raise DataError(f"{path} not found. {fix}")
    size = os.path.getsize(path)
    if size % 2:
        raise DataError(f"{path} is corrupt: {size} bytes is not a whole number of uint16 tokens. {fix}")
    n = size // 2
    if n < min_tokens:
        raise DataError(
            f"{path} holds {n:,} tokens, fewer than the {min_tokens:,} needed (block_size + 1). "
            f"Fix: lower --block_size, or use a larger dataset."
        )
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    top = int(tokens.max())  # one pass over the file; cheap next to training on it
    if top >= vocab_size:
        raise DataError(f"{path} is corrupt: token id {top} is outside the vocabulary of {vocab_size}. {fix}")
    return tokens


class TokenData:
    """The train and val splits of one dataset, serving batches on ``device``.

    ``get_batch(split, batch_size)`` draws random windows of ``block_size + 1`` tokens with
    its own seeded generator, whose state is part of ``state_dict()`` so a resumed run sees
    the batches an uninterrupted run would have. ``iter_split`` walks a whole split once.
    """

    def __init__(self, dataset_dir: str, block_size: int, device: torch.device | str, seed: int) -> None:
        self.dataset_dir = dataset_dir
        meta = load_meta(dataset_dir)
        if meta is None:
            script = os.path.join(dataset_dir, "prepare.py")
            raise DataError(
                f"{os.path.join(dataset_dir, 'meta.pkl')} not found, so the vocabulary size is unknown. Fix: re-run "
                f"{script if os.path.isfile(script) else 'the prepare.py that made the token files'} (it writes "
                f"train.bin, val.bin and meta.pkl together); for GPT-2 BPE tokens, write a meta.pkl holding "
                f"{{'vocab_size': 50257}}."
            )
        self.meta = meta
        self.vocab_size = meta["vocab_size"]
        self.block_size = block_size
        # One memmap per split for the whole run: the corpora here are small, so the pages
        # it keeps resident cost little (nanoGPT re-opens per batch to bound that for huge ones).
        self.splits = {
            s: open_tokens(os.path.join(dataset_dir, f"{s}.bin"), self.vocab_size, block_size + 1) for s in SPLITS
        }
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)
        self._window = np.arange(block_size + 1)

    def num_tokens(self, split: str) -> int:
        return len(self.splits[split])

    def _to_device(self, buf: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(buf.astype(np.int64))
        x, y = t[:, :-1], t[:, 1:]
        if self.device.type == "cuda":
            # Pinned memory lets the copy run asynchronously with the GPU's work.
            return x.pin_memory().to(self.device, non_blocking=True), y.pin_memory().to(self.device, non_blocking=True)
        return x.contiguous().to(self.device), y.contiguous().to(self.device)

    def get_batch(
        self, split: str, batch_size: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and next-token targets, each int64 (batch_size, block_size), from random
        windows drawn with ``generator`` (default: this object's own)."""
        tokens = self.splits[split]
        ix = torch.randint(len(tokens) - self.block_size, (batch_size,), generator=generator or self.generator).numpy()
        return self._to_device(tokens[ix[:, None] + self._window])  # one gather for the whole batch

    def iter_split(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """Every token of ``split`` (but the first) as a target exactly once: consecutive
        windows of ``block_size`` targets, the last one shifted back to end at the split's
        end, yielding (x, y, number of new targets in this batch). Weight each batch's mean
        loss by the count to get the split's mean loss per token."""
        n = len(self.splits[split]) - 1  # targets
        starts = list(range(0, n - self.block_size + 1, self.block_size))
        last_new = n - (starts[-1] + self.block_size)  # targets after the last whole window
        tokens = self.splits[split]
        for i in range(0, len(starts), batch_size):
            chunk = np.array(starts[i : i + batch_size])
            x, y = self._to_device(tokens[chunk[:, None] + self._window])
            yield x, y, y.numel()
        if last_new:
            x, y = self._to_device(tokens[np.array([n - self.block_size])[:, None] + self._window])
            y = y.clone()  # a one-row y may share memory with x
            y[:, : self.block_size - last_new] = -1  # already counted: cross-entropy ignores -1
            yield x, y, last_new

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        # A checkpoint loaded onto the GPU carries the state there; a CPU generator needs it on the CPU.
        self.generator.set_state(state["generator"].cpu())
