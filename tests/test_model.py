"""trainkit.model: the GPT's size, tying, optimizer groups, FLOPs and generation."""

from __future__ import annotations

import pytest
import torch

from trainkit.model import GPT, GPTConfig

PRESET = GPTConfig(block_size=64, vocab_size=76, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False)


def test_cpu_preset_has_080m_parameters():
    model = GPT(PRESET)
    assert round(model.get_num_params() / 1e6, 2) == 0.80
    assert model.get_num_params(non_embedding=False) - model.get_num_params() == 64 * 128  # position embeddings


def test_output_head_is_tied_to_the_token_embedding():
    model = GPT(PRESET)
    assert model.lm_head.weight is model.transformer.wte.weight


def test_forward_shapes_and_initial_loss():
    torch.manual_seed(0)
    model = GPT(PRESET)
    idx, targets = torch.randint(76, (2, 64)), torch.randint(76, (2, 64))
    logits, loss = model(idx, targets)
    assert logits.shape == (2, 64, 76)
    assert abs(loss.item() - torch.log(torch.tensor(76.0)).item()) < 0.1  # uniform guess at init
    logits, loss = model(idx)
    assert logits.shape == (2, 1, 76) and loss is None


def test_too_long_input_is_refused():
    with pytest.raises(ValueError, match="block_size is only 64"):
        GPT(PRESET)(torch.zeros(1, 65, dtype=torch.long))


def test_bad_head_count_names_the_fix():
    with pytest.raises(ValueError, match=r"n_embd \(100\) must be divisible by n_head \(3\)"):
        GPTConfig(n_embd=100, n_head=3)


def test_optimizer_decays_matrices_only():
    model = GPT(PRESET)
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), "cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    n_grouped = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_grouped == model.get_num_params(non_embedding=False)  # the tied weight once
    assert opt.defaults.get("fused") or opt.defaults.get("foreach")


def test_flops_per_token_is_palm_formula():
    model = GPT(PRESET)
    n = model.get_num_params()
    assert model.flops_per_token() == 6 * n + 12 * 4 * 4 * 32 * 64


def test_generate_extends_and_crops_the_context():
    torch.manual_seed(0)
    model = GPT(PRESET).eval()
    start = torch.zeros(1, 60, dtype=torch.long)
    out = model.generate(start, max_new_tokens=10, temperature=0.8, top_k=5)
    assert out.shape == (1, 70) and torch.equal(out[:, :60], start)
    assert int(out.max()) < 76
