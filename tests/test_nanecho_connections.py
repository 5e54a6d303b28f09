"""Connection masks: frozen masked weights, growth, exact parameter counts, checkpoints."""

import pytest
import torch

from trainkit.config import ConfigError
from trainkit.model import GPTConfig
from trainkit.nanecho.connections import (
    ConnectionSchedule,
    MaskedLinear,
    connection_counts,
    connection_ratio,
    grow_connections,
    init_connections,
    masked_layers,
    param_counts,
)
from trainkit.nanecho.model import NanEchoGPT

V, T, L, C = 40, 16, 2, 32  # vocabulary, context, layers, width


def make_model(bias: bool = False, seed: int = 0) -> NanEchoGPT:
    torch.manual_seed(seed)
    return NanEchoGPT(GPTConfig(block_size=T, vocab_size=V, n_layer=L, n_head=4, n_embd=C, bias=bias))


def hand_total(bias: bool) -> int:
    """GPT parameters by hand: tied token embedding/head, positions, per block two LayerNorms,
    qkv (3C x C), attention projection (C x C), MLP (4C x C and C x 4C), and the final LayerNorm."""
    per_block = 2 * C + 3 * C * C + C * C + 4 * C * C + 4 * C * C
    if bias:
        per_block += 2 * C + 3 * C + C + 4 * C + C
    return V * C + T * C + L * per_block + C + (C if bias else 0)


def train_steps(model, steps: int, lr: float = 1e-2) -> None:
    opt = model.configure_optimizers(weight_decay=0.5, learning_rate=lr, betas=(0.9, 0.95), device_type="cpu")
    x = torch.randint(0, V, (4, T), generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        _, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def test_masked_layers_are_the_attention_projection_and_both_mlp_weights():
    names = [name for name, _ in masked_layers(make_model())]
    assert names == [f"transformer.h.{i}.{part}" for i in range(L) for part in ("attn.c_proj", "mlp.c_fc", "mlp.c_proj")]


@pytest.mark.parametrize("bias", [False, True])
def test_param_counts_are_exact_against_a_hand_count(bias):
    model = make_model(bias)
    assert param_counts(model) == (hand_total(bias), hand_total(bias))
    init_connections(model, 0.1, seed=3)
    active_conn, total_conn = connection_counts(model)
    assert total_conn == L * 9 * C * C
    # round(0.1 * numel) kept per masked weight: 102 of 1024 (C x C), 410 of 4096 (both 4C x C).
    assert active_conn == L * (102 + 410 + 410)
    active, total = param_counts(model)
    assert total == hand_total(bias)
    assert active == hand_total(bias) - (total_conn - active_conn)


def test_init_keeps_the_initial_values_of_kept_entries_and_zeroes_the_rest():
    model = make_model()
    before = {name: layer.weight.detach().clone() for name, layer in masked_layers(model)}
    init_connections(model, 0.25, seed=3)
    for name, layer in masked_layers(model):
        assert torch.equal(layer.weight[layer.mask], before[name][layer.mask])
        assert torch.count_nonzero(layer.weight[~layer.mask]) == 0
        assert int(layer.mask.sum()) == round(0.25 * layer.mask.numel())


def test_masked_entries_get_zero_gradient_and_adamw_with_decay_never_moves_them():
    model = make_model()
    init_connections(model, 0.2, seed=5)
    x = torch.randint(0, V, (4, T))
    _, loss = model(x, x)
    loss.backward()
    for _, layer in masked_layers(model):
        assert torch.count_nonzero(layer.weight.grad[~layer.mask]) == 0
        assert torch.count_nonzero(layer.weight.grad[layer.mask]) > 0
    model.zero_grad(set_to_none=True)
    train_steps(model, 10)
    for _, layer in masked_layers(model):
        assert torch.count_nonzero(layer.weight[~layer.mask]) == 0


def test_growth_keeps_existing_connections_and_new_ones_start_at_zero_then_learn():
    model = make_model()
    init_connections(model, 0.1, seed=5)
    train_steps(model, 3)
    old_masks = {n: layer.mask.clone() for n, layer in masked_layers(model)}
    old_weights = {n: layer.weight.detach().clone() for n, layer in masked_layers(model)}
    x = torch.randint(0, V, (4, T))
    with torch.no_grad():
        logits_before, _ = model(x, x)

    added = grow_connections(model, 0.3, seed=5, iteration=500)

    assert added == L * ((307 - 102) + 2 * (1229 - 410))
    with torch.no_grad():
        logits_after, _ = model(x, x)
    assert torch.equal(logits_before, logits_after)  # zero-initialised growth changes nothing yet
    for name, layer in masked_layers(model):
        assert bool((layer.mask | ~old_masks[name]).all())  # every old connection is kept
        assert torch.equal(layer.weight[old_masks[name]], old_weights[name][old_masks[name]])
        new = layer.mask & ~old_masks[name]
        assert torch.count_nonzero(layer.weight[new]) == 0
    train_steps(model, 2)
    for name, layer in masked_layers(model):
        new = layer.mask & ~old_masks[name]
        assert torch.count_nonzero(layer.weight[new]) > 0.9 * int(new.sum())  # grown entries now train
        assert torch.count_nonzero(layer.weight[~layer.mask]) == 0


def test_growth_depends_only_on_seed_and_iteration_and_is_idempotent():
    a, b = make_model(seed=0), make_model(seed=1)
    for m in (a, b):
        init_connections(m, 0.1, seed=9)
        grow_connections(m, 0.4, seed=9, iteration=1000)
    for (_, la), (_, lb) in zip(masked_layers(a), masked_layers(b)):
        assert torch.equal(la.mask, lb.mask)
    assert grow_connections(a, 0.4, seed=9, iteration=1500) == 0  # already at 40%: nothing to add
    other = make_model()
    init_connections(other, 0.1, seed=9)
    grow_connections(other, 0.4, seed=9, iteration=1001)
    assert any(not torch.equal(la.mask, lo.mask) for (_, la), (_, lo) in zip(masked_layers(a), masked_layers(other)))


def test_measured_ratio_is_the_mask_density():
    model = make_model()
    init_connections(model, 0.55, seed=2)
    masks = [layer.mask for _, layer in masked_layers(model)]
    assert connection_ratio(model) == sum(int(m.sum()) for m in masks) / sum(m.numel() for m in masks)
    assert abs(connection_ratio(model) - 0.55) < 1e-3


def test_masks_are_buffers_restored_from_a_state_dict():
    model = make_model()
    init_connections(model, 0.3, seed=4)
    state = model.state_dict()
    assert "transformer.h.0.mlp.c_fc.mask" in state
    fresh = make_model(seed=7)
    assert connection_ratio(fresh) == 1.0
    fresh.load_state_dict(state)
    for (_, la), (_, lb) in zip(masked_layers(model), masked_layers(fresh)):
        assert torch.equal(la.mask, lb.mask)


def test_masked_linear_computes_with_the_masked_weight():
    layer = MaskedLinear(3, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]))
        layer.mask.copy_(torch.tensor([[True, False, True], [False, True, False]]))
    out = layer(torch.ones(1, 3))
    assert out.tolist() == [[4.0, 5.0]]


def test_schedule_grows_by_rate_every_interval_up_to_the_maximum():
    s = ConnectionSchedule()  # 10% + 5 points every 500 iterations, up to 100%
    assert s.target_ratio(0) == 0.10
    assert s.target_ratio(499) == 0.10
    assert s.target_ratio(500) == pytest.approx(0.15)
    assert s.target_ratio(9000) == pytest.approx(1.0)
    assert s.target_ratio(50000) == 1.0
    capped = ConnectionSchedule(0.2, 0.1, 10, 0.45)
    assert [round(capped.target_ratio(i), 6) for i in (0, 10, 20, 30, 40)] == [0.2, 0.3, 0.4, 0.45, 0.45]


@pytest.mark.parametrize("kwargs, words", [
    (dict(initial_connections=0.0), "initial_connections"),
    (dict(initial_connections=0.5, max_connections=0.4), "max_connections"),
    (dict(max_connections=1.5), "max_connections"),
    (dict(connection_growth_rate=-0.1), "connection_growth_rate"),
    (dict(connection_growth_interval=0), "connection_growth_interval"),
])
def test_schedule_rejects_impossible_settings(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        ConnectionSchedule(**kwargs)
