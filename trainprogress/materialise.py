"""Turning what a training loop passes in (floats, 0-dim tensors) into floats, cheaply."""

from __future__ import annotations

import sys
from typing import Any, Mapping, Sequence


def is_tensor(value: Any) -> bool:
    """Whether ``value`` is a torch tensor (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def materialise(values: Sequence[Any]) -> list[float]:
    """Floats for numbers and one-element tensors, in order. All tensors on one device are
    stacked and copied to the host together: one device sync per device, however many
    values there are."""
    out: list[float] = [0.0] * len(values)
    tensors_by_device: dict[Any, list[int]] = {}
    for i, value in enumerate(values):
        if is_tensor(value):
            tensors_by_device.setdefault(value.device, []).append(i)
        else:
            try:
                out[i] = float(value)
            except (TypeError, ValueError):
                shown = repr(value)
                raise TypeError(
                    f"trainprogress: a loss or metric must be a number or a one-element tensor, got "
                    f"{type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}; "
                    f"pass loss.detach() or float(loss)"
                ) from None
    if tensors_by_device:
        torch = sys.modules["torch"]
        for indices in tensors_by_device.values():
            parts = []
            for i in indices:
                tensor = values[i]
                if tensor.numel() != 1:
                    raise ValueError(
                        f"trainprogress: a loss or metric must be a number or a one-element tensor, "
                        f"got a tensor of shape {tuple(tensor.shape)}; pass e.g. loss.mean() or loss.detach()"
                    )
                parts.append(tensor.detach().reshape(()).float())
            for i, number in zip(indices, torch.stack(parts).tolist()):
                out[i] = number
    return out


def is_number(value: Any) -> bool:
    """Whether ``value`` is a number (bools included; numpy and JAX scalars too: anything
    with ``__float__``) or a tensor: what becomes a float at a report. Anything else (a
    phase name) is reported as it is."""
    return is_tensor(value) or hasattr(type(value), "__float__")


def materialise_named(losses: Sequence[Any], named: Mapping[str, Any]) -> tuple[list[float], dict[str, float]]:
    """``losses`` and the values of ``named`` as floats, all copied to the host together
    (one device sync per device, as ``materialise``)."""
    floats = materialise([*losses, *named.values()])
    return floats[:len(losses)], dict(zip(named, floats[len(losses):]))
