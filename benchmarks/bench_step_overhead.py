"""Cost of one tracker.step(loss=..., lr=...) when no report is due, next to tqdm.update().

    python benchmarks/bench_step_overhead.py [--calls 200000] [--repeats 7]

Both run in this process, interleaved, on the same machine state: the figure that counts is
the ratio (target: <= 1.0, the tracker no slower than tqdm). Each is timed as the best of
several repeats of a loop of calls (the best is the least disturbed by other processes),
each written as the statement a user writes; the empty loop's own cost is subtracted. tqdm writes to /dev/null, as it would to a
terminal, with its default refresh throttling. The tracker has no sinks, so every report
boundary is skipped: the interval is 100% of a run longer than the benchmark.
"""

from __future__ import annotations

import argparse
import os
import timeit

from tqdm import tqdm

from trainprogress import ProgressTracker


def best_ns_per_call(statement: str, namespace: dict, calls: int, repeats: int) -> float:
    """Nanoseconds per execution of ``statement``: the best of ``repeats`` timed loops."""
    timer = timeit.Timer(statement, globals=namespace)
    return min(timer.repeat(repeats, calls)) / calls * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    total = args.calls * (args.repeats + 1) * 4

    with open(os.devnull, "w") as devnull:
        namespace = {
            "bar": tqdm(total=total, file=devnull),
            "tracker": ProgressTracker(total, interval_percent=100, sinks=[]),
            "loss": 2.345,
            "lr": 6e-4,
        }
        statements = {"empty": "pass", "tqdm.update": "bar.update()", "tracker.step": "tracker.step(loss=loss, lr=lr)"}
        best = dict.fromkeys(statements, float("inf"))
        # Interleaved rounds, so that both see the same machine state.
        for _ in range(2):
            for name, statement in statements.items():
                best[name] = min(best[name], best_ns_per_call(statement, namespace, args.calls, args.repeats))
        namespace["bar"].close()

    per_call = {name: ns - best["empty"] for name, ns in best.items() if name != "empty"}
    for name, ns in per_call.items():
        print(f"{name:>14}: {ns:7.1f} ns/call")
    ratio = per_call["tracker.step"] / per_call["tqdm.update"]
    print(f"ratio tracker.step / tqdm.update: {ratio:.2f} (target <= 1.0)")


if __name__ == "__main__":
    main()
