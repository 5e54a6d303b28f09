"""Batches from a NanEcho dataset: one ``trainkit.data.TokenData`` per persona dimension,
mixed by the curriculum's sampling weights.

A training batch draws, for each of its rows, a dimension with the given probabilities, then
a random window from that dimension's tokens. Evaluation walks each dimension's whole
validation split, so per-dimension validation losses are exact, not sampled.
"""

from __future__ import annotations

import json
import os
from typing import Iterator, Mapping

import torch

from trainkit.data import DataError, TokenData
from trainkit.nanecho.corpus import META_FORMAT, Tokenizer, prepare
from trainkit.nanecho.curriculum import DIMENSIONS

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "data", "nanecho")


def load_index(data_dir: str) -> dict:
    """The dataset's ``meta.json``, checked. The built-in corpus is prepared on the spot when
    ``data_dir`` is the default folder and holds none; anything else missing is an error."""
    path = os.path.join(data_dir, "meta.json")
    fix = f"Fix: python data/nanecho/prepare.py --out_dir {data_dir} (add --input your.jsonl for your own corpus)."
    if not os.path.isfile(path):
        if os.path.abspath(data_dir) != DEFAULT_DATA_DIR:
            raise DataError(f"{path} not found: {data_dir} holds no prepared NanEcho dataset. {fix}")
        print(f"preparing the built-in Echo Self corpus in {data_dir}", flush=True)
        prepare(data_dir)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is unreadable ({exc}). {fix}") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT or not meta.get("dimensions"):
        raise DataError(f"{path} is not a {META_FORMAT} dataset index. {fix}")
    unknown = [d for d in meta["dimensions"] if d not in DIMENSIONS]
    if unknown:
        raise DataError(f"{path} names unknown dimensions {unknown}. {fix}")
    return meta


class NanEchoData:
    """The train and val splits of every dimension in ``data_dir``, on ``device``.

    ``dimensions`` are those present, in DIMENSIONS order. Each split of each dimension must
    hold at least ``block_size + 1`` tokens (checked at load, with the fix in the message).
    """

    def __init__(self, data_dir: str, block_size: int, device: torch.device | str, seed: int) -> None:
        meta = load_index(data_dir)
        self.tokenizer = Tokenizer.from_meta(meta)
        self.vocab_size = self.tokenizer.vocab_size
        self.dimensions = tuple(d for d in DIMENSIONS if d in meta["dimensions"])
        # Each dimension gets its own window generator (seeded apart), all saved for resume.
        self.parts = {d: TokenData(os.path.join(data_dir, d), block_size, device, seed + 1 + i)
                      for i, d in enumerate(self.dimensions)}
        for d, part in self.parts.items():
            if part.vocab_size != self.vocab_size:
                raise DataError(f"{os.path.join(data_dir, d, 'meta.pkl')} has vocab_size {part.vocab_size}, "
                                f"meta.json says {self.vocab_size}. Fix: re-run data/nanecho/prepare.py.")
        self.generator = torch.Generator().manual_seed(seed)

    def num_tokens(self, split: str) -> int:
        """Tokens in ``split`` over all dimensions."""
        return sum(part.num_tokens(split) for part in self.parts.values())

    def get_batch(self, split: str, batch_size: int, weights: Mapping[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets, int64 (batch_size, block_size); each row's dimension drawn with
        probability proportional to ``weights`` (dimensions absent from the data are skipped,
        and equal weights are used if none of the present ones has any)."""
        probs = torch.tensor([float(weights.get(d, 0.0)) for d in self.dimensions])
        if not probs.sum() > 0:
            probs = torch.ones(len(self.dimensions))
        rows = torch.multinomial(probs, batch_size, replacement=True, generator=self.generator)
        counts = torch.bincount(rows, minlength=len(self.dimensions)).tolist()
        pairs = [self.parts[d].get_batch(split, n) for d, n in zip(self.dimensions, counts) if n]
        return torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])

    def iter_split(self, split: str, dimension: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """Every target of one dimension's split once: see ``TokenData.iter_split``."""
        return self.parts[dimension].iter_split(split, batch_size)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "parts": {d: p.state_dict() for d, p in self.parts.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"].cpu())  # see TokenData.load_state_dict
        for d, part_state in state["parts"].items():
            if d in self.parts:
                self.parts[d].load_state_dict(part_state)
