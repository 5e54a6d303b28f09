"""Learning-rate schedule: linear warm-up, then cosine decay to a floor (as nanoGPT)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainkit.config import ConfigError

__all__ = ["CosineSchedule"]


@dataclass(frozen=True)
class CosineSchedule:
    """The learning rate for iteration ``it`` (0-based optimizer step).

    Steps ``0 .. warmup_iters-1`` rise linearly to ``learning_rate``; from ``warmup_iters``
    to ``lr_decay_iters`` the rate follows a half cosine down to ``min_lr``, and stays there
    afterwards. With ``decay_lr`` False the rate is constant ``learning_rate``.
    """

    learning_rate: float
    warmup_iters: int
    lr_decay_iters: int
    min_lr: float
    decay_lr: bool = True

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}. Fix: e.g. --learning_rate=1e-3.")
        if self.warmup_iters < 0:
            raise ConfigError(f"warmup_iters must be >= 0, got {self.warmup_iters}.")
        if self.decay_lr:
            if not 0 <= self.min_lr <= self.learning_rate:
                raise ConfigError(
                    f"min_lr ({self.min_lr}) must lie in [0, learning_rate={self.learning_rate}]. "
                    f"Fix: usually min_lr = learning_rate / 10."
                )
            if self.lr_decay_iters < self.warmup_iters:
                raise ConfigError(
                    f"lr_decay_iters ({self.lr_decay_iters}) must be >= warmup_iters ({self.warmup_iters}). "
                    f"Fix: usually lr_decay_iters = max_iters."
                )

    def __call__(self, it: int) -> float:
        if not self.decay_lr:
            return self.learning_rate
        if it < self.warmup_iters:
            return self.learning_rate * (it + 1) / (self.warmup_iters + 1)
        if it > self.lr_decay_iters or self.lr_decay_iters == self.warmup_iters:
            return self.min_lr
        ratio = (it - self.warmup_iters) / (self.lr_decay_iters - self.warmup_iters)
        coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0 over the decay
        return self.min_lr + coeff * (self.learning_rate - self.min_lr)
