"""Growing connections: 0/1 masks on weight matrices that gain entries as training goes on.

How a masked weight stays frozen. A :class:`MaskedLinear` computes ``x @ (weight * mask).T``,
so the gradient of every masked entry is exactly zero. Masked entries are also *stored* as
zero (set when the mask is made), which closes the two ways an optimizer could still move
them: AdamW's decoupled weight decay shrinks ``w`` by ``lr * wd * w`` (zero for ``w = 0``),
and its moments start at zero and only ever see zero gradients there, so the update
``m / (sqrt(v) + eps)`` is zero too. The same holds for SGD with momentum.

Where a grown connection starts. At zero, as in RigL (Evci et al., 2020, "Rigging the
Lottery"): the network computes exactly the same function just after a growth event, so
growth never causes a loss spike, and the new entry receives its gradient from the next
step on (the gradient of ``w_ij`` is ``dL/dy_i * x_j``, whatever ``w_ij`` is). New
connections are drawn uniformly at random from the inactive ones (as in SET, Mocanu et al.,
2018); existing ones are always kept.

Masks are registered buffers, so they travel in ``state_dict`` and checkpoints. Draws use a
generator seeded from ``(seed, iteration)``, so a resumed run grows the same connections
as an uninterrupted one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainkit.config import ConfigError

log = logging.getLogger(__name__)


class MaskedLinear(nn.Linear):
    """An ``nn.Linear`` whose weight is gated by the boolean buffer ``mask`` (same shape)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.register_buffer("mask", torch.ones_like(self.weight, dtype=torch.bool))

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "MaskedLinear":
        """A MaskedLinear sharing ``linear``'s parameters (same tensors), all connections on."""
        masked = cls.__new__(cls)
        nn.Module.__init__(masked)
        masked.in_features, masked.out_features = linear.in_features, linear.out_features
        masked.weight = linear.weight
        masked.bias = linear.bias
        masked.register_buffer("mask", torch.ones_like(linear.weight, dtype=torch.bool))
        return masked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The product (not a gradient hook) makes masked gradients zero whatever the stored
        # values are, and survives torch.compile and any optimizer.
        return F.linear(x, self.weight * self.mask, self.bias)


@dataclass(frozen=True)
class ConnectionSchedule:
    """How the fraction of active connections grows with the iteration count.

    Ratios are fractions of all maskable weight entries (0.10 = 10%); ``connection_growth_rate``
    is added every ``connection_growth_interval`` optimizer steps, up to ``max_connections``.
    """

    initial_connections: float = 0.10
    connection_growth_rate: float = 0.05
    connection_growth_interval: int = 500
    max_connections: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.initial_connections <= self.max_connections <= 1.0:
            raise ConfigError(
                "need 0 < initial_connections <= max_connections <= 1, got "
                f"initial_connections={self.initial_connections}, max_connections={self.max_connections}"
            )
        if self.connection_growth_rate < 0.0:
            raise ConfigError(f"connection_growth_rate must be >= 0, got {self.connection_growth_rate}")
        if not (isinstance(self.connection_growth_interval, int) and self.connection_growth_interval > 0):
            raise ConfigError(
                f"connection_growth_interval must be a positive number of iterations, got {self.connection_growth_interval!r}"
            )

    def target_ratio(self, iteration: int) -> float:
        """The fraction of connections that should be active from ``iteration`` on."""
        grown = self.connection_growth_rate * (iteration // self.connection_growth_interval)
        return min(self.max_connections, self.initial_connections + grown)


def masked_layers(model: nn.Module) -> list[tuple[str, MaskedLinear]]:
    """Every MaskedLinear in ``model`` with its qualified name, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, MaskedLinear)]


def connection_counts(model: nn.Module) -> tuple[int, int]:
    """(active, total) maskable weight entries. Reads the masks: a device sync on GPU."""
    layers = masked_layers(model)
    active = sum(int(m.mask.sum()) for _, m in layers)
    total = sum(m.mask.numel() for _, m in layers)
    return active, total


def connection_ratio(model: nn.Module) -> float:
    """The measured density of all masks together, a fraction in [0, 1]."""
    active, total = connection_counts(model)
    return active / total if total else 1.0


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(active, total) parameters. Active counts the unmasked entries of masked weights plus
    every entry of all other tensors; tied parameters are counted once."""
    masks = {id(m.weight): m.mask for _, m in masked_layers(model)}
    active = total = 0
    for p in model.parameters():  # parameters() yields each tensor once, so ties count once
        total += p.numel()
        active += int(masks[id(p)].sum()) if id(p) in masks else p.numel()
    return active, total


def _generator(seed: int, iteration: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + iteration)


@torch.no_grad()
def grow_connections(model: nn.Module, ratio: float, *, seed: int, iteration: int) -> int:
    """Activate random inactive entries until each mask holds ``round(ratio * numel)`` active
    ones, never removing any; new entries start at zero. Returns how many were added."""
    gen = _generator(seed, iteration)
    added = 0
    for _, layer in masked_layers(model):
        flat = layer.mask.view(-1)
        want = round(ratio * flat.numel())
        have = int(flat.sum())
        # Draw scores for every entry (not only the missing ones), so the sequence of draws,
        # and thus the result, depends only on (seed, iteration) and the layer order.
        scores = torch.rand(flat.numel(), generator=gen)
        if want <= have:
            continue
        scores[flat.cpu()] = -1.0  # active entries are never picked again
        new = torch.topk(scores, want - have).indices.to(flat.device)
        flat[new] = True
        layer.weight.view(-1)[new] = 0.0
        added += want - have
    return added


@torch.no_grad()
def init_connections(model: nn.Module, ratio: float, *, seed: int) -> None:
    """Start from scratch: keep a random ``ratio`` of each masked weight's entries (with
    their initial values) and set every other entry to zero, masked off."""
    layers = masked_layers(model)
    if not layers:
        raise ValueError("model has no MaskedLinear layers; build it with trainkit.nanecho.model")
    initial = [layer.weight.clone() for _, layer in layers]
    for _, layer in layers:
        layer.mask.zero_()
    # Drawing the kept entries as growth at iteration 0 would draw them keeps one code path.
    grow_connections(model, ratio, seed=seed, iteration=0)
    for (_, layer), weight in zip(layers, initial):
        layer.weight.copy_(weight * layer.mask)
