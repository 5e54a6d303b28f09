"""test_verbose_logging.py, the demonstration, as a real process."""

import json
import re

from helpers import run_script

HEADER = re.compile(r"TRAINING PROGRESS: ([\d.]+)% \(([\d,]+)/([\d,]+) iterations\)")


def demo(*args):
    return run_script("test_verbose_logging.py", *args, check=False)


def test_fractional_interval_prints_every_block_and_the_summary(tmp_path):
    log = tmp_path / "demo.jsonl"
    result = demo("--max_iters", "200", "--log_every", "0.5", "--n_layer", "1", "--n_embd", "32",
                  "--block_size", "16", "--jsonl", str(log))
    assert result.returncode == 0, result.stderr
    scheduled = [(float(p), int(i)) for p, i, _ in HEADER.findall(result.stdout)]
    assert scheduled == [(0.5 * k, k) for k in range(1, 201)]
    assert result.stdout.count("✅ TRAINING COMPLETE!") == 1
    assert "🧠 Model State:" in result.stdout and "MFU:" in result.stdout
    reports = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(r["type"] == "report" and r["kind"] == "scheduled" for r in reports) == 200


def test_ascii_mode_and_bad_interval():
    result = demo("--max_iters", "10", "--log_every", "50", "--ascii", "--n_layer", "1", "--n_embd", "32", "--block_size", "16")
    assert result.returncode == 0, result.stderr
    result.stdout.encode("ascii")
    assert HEADER.findall(result.stdout) == [("50", "5", "10"), ("100", "10", "10")]
    bad = demo("--log_every", "0")
    assert bad.returncode == 2 and "--log_every must be a percent in (0, 100]" in bad.stderr
