"""Refusing a run that cannot fit in memory before it allocates, and turning an allocation
failure into an error that names the settings to change.

``check_fits`` compares a lower bound of what training needs with the memory the device has
available: the model's state (fp32 weights, gradients and AdamW's two moments: 16 bytes a
parameter) and a micro-batch's activations (at least its logits and one fp32 tensor of the
residual width per layer). Lower bounds only: a refused run could never have trained, and a
run near the limit is left to try; ``allocation_errors`` then catches an allocation that
fails (CPU "can't allocate memory", CUDA out of memory) and names the keys that size it.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from trainkit.config import ConfigError

__all__ = ["InsufficientMemoryError", "allocation_errors", "check_fits", "model_state_bytes", "batch_bytes"]

BYTES_PER_PARAMETER = 16  # fp32 weight, gradient, AdamW exp_avg and exp_avg_sq
SHRINK_BATCH = ("Fix: lower --batch_size (raise --gradient_accumulation_steps to keep the tokens per step) "
                "or --block_size")
SHRINK_MODEL = "Fix: lower --n_embd or --n_layer"


class InsufficientMemoryError(ConfigError):
    """The run's settings need more memory than the device has; the message names them."""


def model_state_bytes(n_layer: int, n_embd: int, block_size: int, vocab_size: int) -> int:
    """Bytes of the GPT's weights, gradients and AdamW moments (embeddings tied)."""
    parameters = 12 * n_layer * n_embd ** 2 + (vocab_size + block_size) * n_embd
    return BYTES_PER_PARAMETER * parameters


def batch_bytes(batch_size: int, block_size: int, n_layer: int, n_embd: int, vocab_size: int) -> int:
    """A lower bound of one micro-batch's activations: bf16 logits and one fp32 tensor of
    the residual width per layer, kept for the backward pass."""
    tokens = batch_size * block_size
    return tokens * (2 * vocab_size + 4 * n_layer * n_embd)


def _fmt(n: float) -> str:
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n / 1e6:.2f} MB"


def available_bytes(device: torch.device) -> int | None:
    """Free memory of ``device`` (CUDA: the GPU's; CPU: the machine's available memory), or
    None where it cannot be asked (MPS)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        import psutil

        return psutil.virtual_memory().available
    return None


def check_fits(cfg, vocab_size: int, device: torch.device) -> None:
    """Raise InsufficientMemoryError, naming the keys and the memory they need, when the
    model's state or the model plus one micro-batch cannot fit in ``device``'s free memory."""
    free = available_bytes(device)
    if free is None:
        return
    state = model_state_bytes(cfg.n_layer, cfg.n_embd, cfg.block_size, vocab_size)
    if state > free:
        raise InsufficientMemoryError(
            f"the model (n_layer={cfg.n_layer}, n_embd={cfg.n_embd}: {state / BYTES_PER_PARAMETER / 1e9:,.2f} billion "
            f"parameters) needs about {_fmt(state)} for its weights, gradients and AdamW moments, and {device} has "
            f"{_fmt(free)} free. {SHRINK_MODEL}.")
    batch = batch_bytes(cfg.batch_size, cfg.block_size, cfg.n_layer, cfg.n_embd, vocab_size)
    if state + batch > free:
        raise InsufficientMemoryError(
            f"batch_size={cfg.batch_size} x block_size={cfg.block_size} needs at least {_fmt(batch)} of activations "
            f"per micro-batch, besides the model's {_fmt(state)}, and {device} has {_fmt(free)} free. {SHRINK_BATCH}.")


def _is_allocation_failure(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "out of memory" in str(exc))


@contextlib.contextmanager
def allocation_errors(what: str) -> Iterator[None]:
    """Turn an allocation failure inside the block (``what`` it was doing) into
    InsufficientMemoryError with torch's figure and the keys to change."""
    try:
        yield
    except (RuntimeError, torch.OutOfMemoryError) as exc:
        if not _is_allocation_failure(exc):
            raise
        detail = str(exc).strip().splitlines()[0]
        if "tried to allocate" in detail:  # torch's own figure: "you tried to allocate N bytes"
            detail = "tried to allocate" + detail.split("tried to allocate", 1)[1].split(".")[0]
        raise InsufficientMemoryError(f"out of memory while {what} ({detail[:200]}). {SHRINK_BATCH}, "
                                      f"or the model: --n_embd, --n_layer.") from None
