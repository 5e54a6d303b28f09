"""The NanEcho model: trainkit's GPT with connection masks on the attention output
projections and on both MLP weights (see trainkit.nanecho.connections)."""

from __future__ import annotations

from trainkit.model import GPT, GPTConfig
from trainkit.nanecho.connections import MaskedLinear

__all__ = ["NanEchoGPT", "MASKED_LINEARS"]

# The Linear layers of each transformer block that get a connection mask, as
# (submodule, attribute) pairs: attention's output projection and the MLP's two weights.
MASKED_LINEARS = (("attn", "c_proj"), ("mlp", "c_fc"), ("mlp", "c_proj"))


class NanEchoGPT(GPT):
    """A GPT whose MASKED_LINEARS are MaskedLinear layers. They start with every connection
    on and GPT's usual initialisation; call ``connections.init_connections`` to thin them."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
        # Swap after GPT's initialisation so the masked layers keep its weights, including the
        # scaled residual-projection init, and share the very same Parameter objects.
        for block in self.transformer.h:
            for part, attr in MASKED_LINEARS:
                owner = getattr(block, part)
                setattr(owner, attr, MaskedLinear.from_linear(getattr(owner, attr)))
