"""The step loss the integrations report is the mean over processes, as the frameworks log
it, with one collective per report rather than per step: two real gloo processes."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent

WORKER = textwrap.dedent("""
    import json, sys
    import torch
    import torch.distributed as dist
    from trainprogress import ProgressTracker
    from trainprogress.integrations._common import RankMeanLoss
    from trainprogress.sinks import build_sinks

    rank, port, jsonl, counts = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    reduces = 0
    all_reduce = dist.all_reduce
    def counted(*args, **kwargs):
        global reduces
        reduces += 1
        return all_reduce(*args, **kwargs)
    dist.all_reduce = counted
    tracker = ProgressTracker(300, sinks=build_sinks(console=False, jsonl=jsonl), is_master=rank == 0)
    mean = RankMeanLoss(300, 0, 1.0)
    for it in range(1, 301):
        # rank 0 sees loss it, rank 1 sees it + 2: their mean is it + 1
        tracker.step(loss=mean(it, torch.tensor(float(it + 2 * rank))))
    tracker.close()
    json.dump({"reduces": reduces}, open(f"{counts}.{rank}", "w"))
    dist.destroy_process_group()
""")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_report_the_mean_loss_with_one_reduce_per_report(tmp_path):
    jsonl, counts, port = tmp_path / "p.jsonl", tmp_path / "counts", str(free_port())
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(rank), port, str(jsonl), str(counts)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in (0, 1)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    reports = [r for r in map(json.loads, jsonl.read_text().splitlines()) if r["type"] == "report" and r["kind"] == "scheduled"]
    assert len(reports) == 100
    for r in reports:
        assert r["loss"] == pytest.approx(r["iteration"] + 1)
        # the smoothed loss: the mean of the rank means over the last 3 steps (a report's worth of 300 at 1%)
        first = max(1, r["iteration"] - 2)
        assert r["smoothed_loss"] == pytest.approx(sum(i + 1 for i in range(first, r["iteration"] + 1)) / (r["iteration"] - first + 1))
    for rank in (0, 1):
        assert json.loads(Path(f"{counts}.{rank}").read_text())["reduces"] == 100
