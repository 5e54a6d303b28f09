"""Learning-rate schedule: linear warm-up, an optional hold at the peak (warmup-stable-decay),
then cosine decay to a floor (as nanoGPT)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainkit.config import ConfigError

__all__ = ["CosineSchedule"]


@dataclass(frozen=True)
class CosineSchedule:
    """The learning rate for iteration ``it`` (0-based optimizer step).

    Steps ``0 .. warmup_iters-1`` rise linearly to ``learning_rate``; it holds there for
    ``hold_iters`` more steps; from ``warmup_iters + hold_iters`` to ``lr_decay_iters`` the
    rate follows a half cosine down to ``min_lr``, and stays there afterwards. With
    ``decay_lr`` False the rate is constant ``learning_rate``.
    """

    learning_rate: float
    warmup_iters: int
    lr_decay_iters: int
    min_lr: float
    decay_lr: bool = True
    hold_iters: int = 0

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}. Fix: e.g. --learning_rate=1e-3.")
        if self.warmup_iters < 0:
            raise ConfigError(f"warmup_iters must be >= 0, got {self.warmup_iters}.")
        if self.hold_iters < 0:
            raise ConfigError(f"lr_hold_iters must be >= 0, got {self.hold_iters}. Fix: 0 decays right after the warm-up.")
        if self.decay_lr:
            if not 0 <= self.min_lr <= self.learning_rate:
                raise ConfigError(
                    f"min_lr ({self.min_lr}) must lie in [0, learning_rate={self.learning_rate}]. "
                    f"Fix: usually min_lr = learning_rate / 10."
                )
            if self.lr_decay_iters < self.warmup_iters + self.hold_iters:
                raise ConfigError(
                    f"lr_decay_iters ({self.lr_decay_iters}) must be >= warmup_iters ({self.warmup_iters})"
                    + (f" + lr_hold_iters ({self.hold_iters})" if self.hold_iters else "")
                    + ". Fix: usually lr_decay_iters = max_iters."
                )

    def __call__(self, it: int) -> float:
        if not self.decay_lr:
            return self.learning_rate
        if it < self.warmup_iters:
            return self.learning_rate * (it + 1) / (self.warmup_iters + 1)
        decay_start = self.warmup_iters + self.hold_iters
        if it < decay_start:
            return self.learning_rate
        if it > self.lr_decay_iters or self.lr_decay_iters == decay_start:
            return self.min_lr
        ratio = (it - decay_start) / (self.lr_decay_iters - decay_start)
        coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0 over the decay
        return self.min_lr + coeff * (self.learning_rate - self.min_lr)
