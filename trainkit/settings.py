"""The keys both trainers share: batch, model shape, AdamW, system, and where the run lives.

A trainer's config inherits :class:`GPTTrainingConfig` and adds its own keys. The defaults
here are nanoGPT's GPT-2 small (124M); a trainer changes one by redeclaring the field,
either with ``opt(value, help)`` or as a plain ``key: type = value`` that keeps the help
given here. Its ``__post_init__`` calls ``super().__post_init__()`` first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from trainkit.config import opt, require
from trainkit.reporting import ReportingConfig

__all__ = ["GPTTrainingConfig", "require_positive"]


def require_positive(cfg: object, keys: tuple[str, ...]) -> None:
    """Raise ConfigError naming the first of ``keys`` whose value in ``cfg`` is not > 0."""
    for key in keys:
        value = getattr(cfg, key)
        require(value > 0, f"{key} must be > 0, got {value}. Fix: pass --{key}=N with N >= 1.")


@dataclass
class GPTTrainingConfig(ReportingConfig):
    """Keys of training a GPT with AdamW, whatever the data and the schedule."""

    # I/O
    out_dir: str = opt("out", "folder for ckpt.pt; created only once the configuration is valid")
    init_from: Literal["scratch", "resume"] = opt("scratch", "'scratch' or 'resume' (from out_dir/ckpt.pt)")
    always_save_checkpoint: bool = opt(True, "checkpoint at every evaluation, not only when val loss improves")
    # batch
    gradient_accumulation_steps: int = opt(5 * 8, "micro-batches per optimizer step, across all processes")
    batch_size: int = opt(12, "sequences per micro-batch")
    block_size: int = opt(1024, "context length in tokens")
    # model
    n_layer: int = opt(12, "transformer blocks")
    n_head: int = opt(12, "attention heads per block")
    n_embd: int = opt(768, "embedding width")
    dropout: float = opt(0.0, "dropout probability; 0 for pretraining, try 0.1+ for finetuning")
    bias: bool = opt(False, "biases in Linear and LayerNorm layers")
    # AdamW optimizer
    learning_rate: float = opt(6e-4, "peak learning rate")
    max_iters: int = opt(600000, "optimizer steps in the whole run")
    weight_decay: float = opt(1e-1, "AdamW weight decay of matrices")
    beta1: float = opt(0.9, "AdamW beta1")
    beta2: float = opt(0.95, "AdamW beta2")
    grad_clip: float = opt(1.0, "clip gradients to this global norm; 0 disables")
    # system
    backend: str = opt("auto", "DDP backend under torchrun: auto (nccl on CUDA, else gloo), nccl, gloo")
    dist_timeout: float = opt(600.0, "seconds a rank waits in a collective (for a dead or stuck rank) before the run fails")
    device: str = opt("auto", "auto (cuda, else mps, else cpu), cpu, cuda, cuda:N, mps")
    dtype: str = opt("auto", "auto (the fastest here: bf16 on GPUs with native bf16, else fp16+loss "
                             "scaling; on CPUs bf16 only with AMX, else fp32; fp32 on MPS), float32, bfloat16, float16")
    compile: bool | None = opt(None, "torch.compile the model; None: on CUDA only")
    seed: int = opt(1337, "random seed (each DDP rank adds its rank for the batches it draws)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, ("max_iters", "batch_size", "block_size", "gradient_accumulation_steps",
                                "n_layer", "n_head", "n_embd"))
        require(self.n_embd % self.n_head == 0,
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}). Fix: e.g. --n_embd={self.n_head * 64}.")
        require(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}.")
        require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}.")
        require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, f"beta1 and beta2 must be in [0, 1), got {self.beta1}, {self.beta2}.")
        require(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 disables clipping), got {self.grad_clip}.")
        require(bool(self.out_dir), "out_dir must not be empty. Fix: e.g. --out_dir=out.")
        require(self.dist_timeout > 0, f"dist_timeout must be > 0 seconds, got {self.dist_timeout}. Fix: e.g. --dist_timeout=600.")
