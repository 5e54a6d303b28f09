"""Dense reports on real runs of the demo: a straggler for the whole run (two "nodes" of two
processes each on loopback, under torchrun) is reported densely a few times, then at the
regular cadence, named in every report; a healthy run gets exactly its regular reports."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import CPU_PROCESSES, REPO, run_script

HEADER = re.compile(r"TRAINING PROGRESS: [\d.]+% \(([\d,]+)/200 iterations\)")
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1", **CPU_PROCESSES}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reports_in(path):
    records = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return [r for r in records if r["type"] == "report" and r["kind"] != "final"], records


@pytest.mark.process
def test_a_straggler_for_the_whole_run_is_named_in_every_report_without_a_flood(tmp_path):
    # Dense reports all run long (every 0.1% of 200 steps: every step) printed 197 blocks.
    port, procs = free_port(), []
    for node in (0, 1):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=2", "--rdzv-backend=c10d",
             f"--rdzv-endpoint=127.0.0.1:{port}", f"--node-rank={node}", "--rdzv-id=straggler",
             str(REPO / "test_verbose_logging.py"),
             "--max_iters", "200", "--straggler_rank", "3", "--straggler_ms", "40", "--jsonl", str(tmp_path / f"node{node}.jsonl")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV,
        ))
    outputs = [p.communicate(timeout=400) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
    console = outputs[0][0]
    blocks = [int(i.replace(",", "")) for i in HEADER.findall(console)]
    reports, records = reports_in(tmp_path / "node0.jsonl")
    assert [r["iteration"] for r in reports] == blocks
    assert 100 <= len(reports) <= 130
    assert set(range(2, 201, 2)) <= set(blocks)  # every regular report is there
    named = [r for r in reports if r["anomalies"]]
    since = named[0]["anomalies"][0]["since_iter"]
    assert since <= 10 and named == [r for r in reports if r["iteration"] >= since]  # named in each from then on
    for report in named:
        [anomaly] = report["anomalies"]
        assert anomaly["kind"] == "straggler" and anomaly["subject"] == "rank 3" and anomaly["since_iter"] == since
        assert 35 < anomaly["severity"] < 60  # ms per step the others wait for rank 3's 40 ms sleep
    steady = [r["iteration"] for r in named if r["anomalies"][0]["steady"]]
    assert steady and all(i % 2 == 0 for i in steady) and steady[-1] == 200
    assert re.search(r"• still: straggler rank 3 on .+: data \d+\.\d ms vs median \d+\.\d ms .*\(since iteration "
                     + str(since) + r"\)", console)
    raised = [r for r in records if r["type"] == "event" and r["event"] == "anomaly"]
    assert [e["data"]["anomaly"] for e in raised] == ["straggler"]


@pytest.mark.process
def test_the_healthy_demo_at_1000_iterations_prints_exactly_its_100_reports(tmp_path):
    log = tmp_path / "demo.jsonl"
    result = run_script("test_verbose_logging.py", "--max_iters", "1000", "--jsonl", str(log), timeout=400)
    reports, records = reports_in(log)
    assert [r["iteration"] for r in reports] == list(range(10, 1001, 10))
    assert result.stdout.count("TRAINING PROGRESS") == 100 and result.stdout.count("TRAINING COMPLETE") == 1
    assert not any(r["anomalies"] for r in reports)
    assert not [r for r in records if r["type"] == "event" and r["event"].startswith("anomaly")]
