"""One optimizer step over accumulated micro-batches, the same in every trainer."""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from trainkit.runtime import Runtime

__all__ = ["optimizer_step"]


def optimizer_step(
    rt: Runtime,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    micro_loss: Callable[[], torch.Tensor],
    micro_steps: int,
    grad_clip: float,
    parameters: Iterable[torch.nn.Parameter],
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Accumulate the gradients of ``micro_steps`` calls of ``micro_loss()`` (the next
    micro-batch's mean loss from ``model``, the DDP wrapper under DDP), clip ``parameters``
    to ``grad_clip`` (0: no clipping), step and zero the gradients. Returns the step's loss,
    a device tensor (read it rarely: reading syncs), and the norm before clipping or None."""
    loss_sum = torch.zeros((), device=rt.device)
    for micro_step in range(micro_steps):
        if rt.ddp:
            # All-reduce the gradients only on the last micro-step; the others just accumulate.
            model.require_backward_grad_sync = micro_step == micro_steps - 1
        loss = micro_loss() / micro_steps  # the step's gradient is the mean over micro-batches
        scaler.scale(loss).backward()
        loss_sum += loss.detach()
    grad_norm = None
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm
