"""trainkit.schedule: warm-up then cosine decay, and its checks."""

from __future__ import annotations

import math

import pytest

from trainkit.config import ConfigError
from trainkit.schedule import CosineSchedule


def test_warmup_cosine_floor():
    s = CosineSchedule(learning_rate=1e-3, warmup_iters=100, lr_decay_iters=2000, min_lr=1e-4)
    assert s(0) == pytest.approx(1e-3 / 101)
    assert s(99) == pytest.approx(1e-3 * 100 / 101)
    assert s(100) == pytest.approx(1e-3)
    assert s(1050) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))  # half way down the cosine
    assert s(2000) == pytest.approx(1e-4)
    assert s(5000) == 1e-4
    rates = [s(i) for i in range(100, 2001)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_constant_without_decay():
    s = CosineSchedule(learning_rate=6e-4, warmup_iters=10, lr_decay_iters=5, min_lr=1.0, decay_lr=False)
    assert s(0) == s(10_000) == 6e-4


def test_no_decay_span():
    s = CosineSchedule(learning_rate=1e-3, warmup_iters=10, lr_decay_iters=10, min_lr=1e-4)
    assert math.isfinite(s(10)) and s(10) == 1e-4


@pytest.mark.parametrize("kwargs, message", [
    (dict(learning_rate=0.0), "learning_rate must be > 0"),
    (dict(min_lr=2e-3), r"min_lr \(0.002\) must lie in \[0, learning_rate=0.001\]"),
    (dict(lr_decay_iters=50), r"lr_decay_iters \(50\) must be >= warmup_iters \(100\)"),
    (dict(warmup_iters=-1, lr_decay_iters=2000), "warmup_iters must be >= 0"),
])
def test_impossible_settings(kwargs, message):
    args = dict(learning_rate=1e-3, warmup_iters=100, lr_decay_iters=2000, min_lr=1e-4) | kwargs
    with pytest.raises(ConfigError, match=message):
        CosineSchedule(**args)


def test_hold_then_decay():
    s = CosineSchedule(learning_rate=1e-3, warmup_iters=100, lr_decay_iters=2000, min_lr=1e-4, hold_iters=900)
    assert s(99) == pytest.approx(1e-3 * 100 / 101)
    assert s(100) == s(999) == 1e-3  # held at the peak after the warm-up
    assert s(1500) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))  # half way down a cosine from 1000 to 2000
    assert s(2000) == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match=r"lr_decay_iters \(900\) must be >= warmup_iters \(100\) \+ lr_hold_iters \(900\)"):
        CosineSchedule(learning_rate=1e-3, warmup_iters=100, lr_decay_iters=900, min_lr=1e-4, hold_iters=900)
    with pytest.raises(ConfigError, match="lr_hold_iters must be >= 0"):
        CosineSchedule(learning_rate=1e-3, warmup_iters=100, lr_decay_iters=900, min_lr=1e-4, hold_iters=-1)
