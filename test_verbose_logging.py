"""A quick demonstration of trainprogress's reports: a small GPT trained on random tokens.

    python test_verbose_logging.py --max_iters 100
    python test_verbose_logging.py --max_iters 1000 --log_every 1     # a report every 1%
    python test_verbose_logging.py --max_iters 400 --log_every 0.5 --bar --jsonl out/demo.jsonl

Random tokens have nothing to learn beyond their frequencies, so the loss settles near
ln(vocab_size); what is shown is the reporting: progress, ETA, speed, loss, learning rate,
MFU, memory and tokens, every --log_every percent. (Not a test module: pytest skips it.)
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from trainkit.model import GPT, GPTConfig
from trainprogress import ProgressTracker
from trainprogress.sinks import build_sinks


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_iters", type=int, default=100, help="optimizer steps (default 100)")
    parser.add_argument("--log_every", type=float, default=1.0, help="percent of the run between reports, e.g. 1 or 0.5")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--block_size", type=int, default=64)
    parser.add_argument("--vocab_size", type=int, default=256)
    parser.add_argument("--n_layer", type=int, default=2)
    parser.add_argument("--n_embd", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ascii", action="store_true", help="plain ASCII blocks, no emoji")
    parser.add_argument("--bar", action="store_true", help="a live progress bar between the blocks")
    parser.add_argument("--jsonl", default=None, help="also write every report to this JSON Lines file")
    parser.add_argument("--no_anomaly", action="store_true", help="turn anomaly detection off")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args(argv)
    if args.max_iters <= 0:
        parser.error(f"--max_iters must be a positive number of steps, got {args.max_iters}")
    if not 0 < args.log_every <= 100:
        parser.error(f"--log_every must be a percent in (0, 100], got {args.log_every}; e.g. --log_every 1")
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    config = GPTConfig(block_size=args.block_size, vocab_size=args.vocab_size, n_layer=args.n_layer,
                       n_head=4, n_embd=args.n_embd, dropout=0.0, bias=False)
    model = GPT(config).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate)
    tokens_per_iter = args.batch_size * args.block_size

    tracker = ProgressTracker(
        args.max_iters,
        interval_percent=args.log_every,
        tokens_per_iter=tokens_per_iter,
        flops_per_iter=model.flops_per_token() * tokens_per_iter,
        precision="fp32",
        sinks=build_sinks(ascii=True if args.ascii else None, bar=args.bar, jsonl=args.jsonl),
        anomaly=None if args.no_anomaly else True,
        run_config=vars(args),
    )
    tracker.set_section("🧠 Model State", lambda: {
        "Parameters": model.get_num_params(),
        "Layers x width": f"{args.n_layer} x {args.n_embd}",
        "Batch": f"{args.batch_size} x {args.block_size} tokens",
        "Loss floor (ln vocab)": round(math.log(args.vocab_size), 4),
    })
    with tracker:
        for it in range(args.max_iters):
            # Cosine decay to a tenth of the peak rate.
            lr = args.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * it / args.max_iters)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = torch.randint(args.vocab_size, (args.batch_size, args.block_size), device=args.device)
            y = torch.roll(x, shifts=-1, dims=1)
            _, loss = model(x, y)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            # Tensors go in as they are: the tracker reads them once per report, not per step.
            tracker.step(loss=loss.detach(), lr=lr, grad_norm=grad_norm)


if __name__ == "__main__":
    main(sys.argv[1:])
