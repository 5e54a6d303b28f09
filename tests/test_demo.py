"""test_verbose_logging.py, the demonstration, through its main() in this process (its
reports go to stdout as in a terminal; a process of its own would only add torch's import)."""

import json
import re

import pytest

import test_verbose_logging

HEADER = re.compile(r"TRAINING PROGRESS: ([\d.]+)% \(([\d,]+)/([\d,]+) iterations\)")


def test_fractional_interval_prints_every_block_and_the_summary(tmp_path, capsys, as_a_script):
    log = tmp_path / "demo.jsonl"
    test_verbose_logging.main(["--max_iters", "200", "--log_every", "0.5", "--n_layer", "1", "--n_embd", "32",
                               "--block_size", "16", "--jsonl", str(log)])
    stdout = capsys.readouterr().out
    scheduled = [(float(p), int(i)) for p, i, _ in HEADER.findall(stdout)]
    assert scheduled == [(0.5 * k, k) for k in range(1, 201)]
    assert stdout.count("✅ TRAINING COMPLETE!") == 1
    assert "🧠 Model State:" in stdout and "MFU:" in stdout
    reports = [json.loads(line) for line in log.read_text().splitlines()]
    # Every boundary has its report in the log; on a loaded machine a real slowdown may make one
    # of them an anomaly report, which stands in for the scheduled one at its boundary.
    logged = [r["iteration"] for r in reports if r["type"] == "report" and r["kind"] in ("scheduled", "anomaly")]
    assert sorted(set(logged)) == list(range(1, 201))


def test_ascii_mode_and_bad_interval(capsys, as_a_script):
    test_verbose_logging.main(["--max_iters", "10", "--log_every", "50", "--ascii", "--n_layer", "1", "--n_embd", "32",
                               "--block_size", "16"])
    stdout = capsys.readouterr().out
    stdout.encode("ascii")
    assert HEADER.findall(stdout) == [("50", "5", "10"), ("100", "10", "10")]
    with pytest.raises(SystemExit) as bad:
        test_verbose_logging.main(["--log_every", "0"])
    assert bad.value.code == 2 and "--log_every must be a percent in (0, 100]" in capsys.readouterr().err
