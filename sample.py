"""
Print text sampled from a model trained by train.py.

    python sample.py --out_dir=out-shakespeare-char
    python sample.py --out_dir=out-shakespeare-char --start="ROMEO:" --num_samples=2 --max_new_tokens=300
    python sample.py --out_dir=out-shakespeare-char --start=FILE:prompt.txt
    python sample.py --help

The model comes from out_dir/ckpt.pt; the vocabulary from the meta.pkl of the dataset the
checkpoint was trained on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from trainkit.checkpoint import load_checkpoint, strip_compile_prefix
from trainkit.config import ConfigError, format_help, load_config, opt, require
from trainkit.data import load_meta
from trainkit.model import GPT, GPTConfig
from trainkit.run_end import exit_on_config_error
from trainkit.runtime import setup_runtime

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class SampleConfig:
    out_dir: str = opt("out", "folder holding the ckpt.pt to sample from")
    start: str = opt("\n", "the prompt; FILE:path reads it from a file")
    num_samples: int = opt(3, "number of samples to print")
    max_new_tokens: int = opt(500, "tokens generated per sample")
    temperature: float = opt(0.8, "1.0 samples the model's distribution; lower is more conservative")
    top_k: int | None = opt(200, "sample only among the top_k likeliest tokens; None: all")
    seed: int = opt(1337, "random seed")
    device: str = opt("auto", "auto (cuda, else mps, else cpu), cpu, cuda, cuda:N, mps")
    dtype: str = opt("auto", "auto (as train.py), float32, bfloat16, float16")

    def __post_init__(self) -> None:
        for key in ("num_samples", "max_new_tokens"):
            require(getattr(self, key) > 0, f"{key} must be > 0, got {getattr(self, key)}.")
        require(self.temperature > 0, f"temperature must be > 0, got {self.temperature}. Fix: e.g. --temperature=0.8.")
        require(self.top_k is None or self.top_k > 0, f"top_k must be > 0 or None, got {self.top_k}.")


def main(argv: list[str]) -> None:
    if "-h" in argv or "--help" in argv:
        print(format_help(SampleConfig, "sample.py", __doc__.strip()))
        return
    cfg = load_config(SampleConfig, argv, prog="sample.py")
    rt = setup_runtime(cfg.device, cfg.dtype)
    torch.manual_seed(cfg.seed)

    ckpt = load_checkpoint(os.path.join(cfg.out_dir, "ckpt.pt"), rt.device)
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict(strip_compile_prefix(ckpt["model"]))
    model.eval().to(rt.device)

    train_cfg = ckpt.get("config", {})
    data_dir = train_cfg.get("data_dir", "data")
    dataset_dir = os.path.join(data_dir if os.path.isabs(data_dir) else os.path.join(HERE, data_dir), train_cfg.get("dataset", ""))
    meta = load_meta(dataset_dir)
    if meta is None or "stoi" not in meta:
        raise ConfigError(
            f"no character vocabulary (meta.pkl with stoi/itos) in {dataset_dir}, the checkpoint's dataset. "
            f"Fix: prepare that dataset (python {os.path.join(dataset_dir, 'prepare.py')})."
        )
    stoi, itos = meta["stoi"], meta["itos"]

    start = cfg.start
    if start.startswith("FILE:"):
        with open(start[5:], encoding="utf-8") as f:
            start = f.read()
    if not start:
        raise ConfigError("the prompt is empty. Fix: e.g. --start='\\n' (a newline) or --start='ROMEO:'.")
    unknown = sorted({c for c in start if c not in stoi})
    if unknown:
        raise ConfigError(f"the prompt holds characters outside the vocabulary: {unknown!r}. Fix: leave them out.")
    idx = torch.tensor([stoi[c] for c in start], dtype=torch.long, device=rt.device)[None, :]

    with torch.no_grad(), rt.autocast():
        for _ in range(cfg.num_samples):
            out = model.generate(idx, cfg.max_new_tokens, temperature=cfg.temperature, top_k=cfg.top_k)
            print("".join(itos[i] for i in out[0].tolist()))
            print("---------------")


if __name__ == "__main__":
    exit_on_config_error("sample.py", main)
