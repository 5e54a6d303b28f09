"""Several processes under torchrun (gloo on the CPU): only global rank 0 reports, the report
carries every rank's figures and the mean loss, a straggler is named, and a stopped rank
makes the watchdog report a stall. Two "nodes" run on loopback."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from helpers import CPU_PROCESSES

# Every test here starts torchrun: the process tier. The fast tier proves the cross-rank logic
# in process (test_ranks.py, test_stragglers.py).
pytestmark = pytest.mark.process

REPO = Path(__file__).resolve().parents[1]
HEADER = re.compile(r"TRAINING PROGRESS: ([\d.]+)% \(([\d,]+)/([\d,]+) iterations\)")
TINY = ["--n_layer", "1", "--n_embd", "32", "--block_size", "16", "--batch_size", "4"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **CPU_PROCESSES}


def torchrun(*args, nproc=2):
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", *args]


def records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_straggler_is_named_within_three_reports_and_only_rank_0_reports(tmp_path):
    log = tmp_path / "demo.jsonl"
    result = subprocess.run(
        torchrun("--standalone", str(REPO / "test_verbose_logging.py"), "--max_iters", "40", "--log_every", "10",
                 *TINY, "--straggler_rank", "1", "--straggler_ms", "25", "--jsonl", str(log), "--no_anomaly"),
        capture_output=True, text=True, timeout=300, cwd=REPO, env=ENV,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # One process prints: each boundary's block once, one summary.
    assert [int(i) for _, i, _ in HEADER.findall(result.stdout)] == list(range(4, 41, 4))
    assert result.stdout.count("TRAINING COMPLETE") == 1
    assert "🛰️ Ranks:" in result.stdout and "Ranks: 2 (1 node)" in result.stdout
    lines = records(log)
    reports = [r for r in lines if r["type"] == "report" and r["kind"] == "scheduled"]
    straggler = [r for r in lines if r["type"] == "event" and r["event"] == "anomaly" and r["data"]["anomaly"] == "straggler"]
    assert len(straggler) == 1 and straggler[0]["iteration"] <= reports[2]["iteration"]
    assert re.match(r"straggler rank 1 on .+: data \d+\.\d ms vs median \d+\.\d ms", straggler[0]["data"]["message"])
    for report in reports:
        scalars = report["scalars"]
        assert scalars["ranks/world_size"] == 2 and scalars["ranks/data_ms_max_rank"] == 1
        assert scalars["ranks/data_ms_max"] > 20  # the 25 ms sleep, measured on rank 1
        # With two ranks the global smoothed loss is the midpoint of the two ranks' ones.
        middle = (scalars["ranks/loss_smoothed_min"] + scalars["ranks/loss_smoothed_max"]) / 2
        assert abs(report["smoothed_loss"] - middle) < 1e-9
        assert scalars["ranks/loss_smoothed_min"] < scalars["ranks/loss_smoothed_max"]  # own batches per rank
    assert "straggler rank 1" in result.stdout


def test_two_nodes_on_loopback_report_once_with_the_mean_loss_of_four_ranks(tmp_path):
    port = free_port()
    procs = []
    for node in (0, 1):
        log = tmp_path / f"node{node}.jsonl"
        procs.append(subprocess.Popen(
            torchrun("--nnodes=2", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", f"--node-rank={node}",
                     "--rdzv-id=loopback", str(REPO / "tests" / "rank_worker.py"), str(log), "40"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV,
        ))
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
    node0, node1 = (out for out, _ in outputs)
    assert [int(i) for _, i, _ in HEADER.findall(node0)] == [10, 20, 30, 40]
    assert node0.count("TRAINING COMPLETE") == 1
    assert HEADER.findall(node1) == [] and "TRAINING" not in node1  # local rank 0 of node 1 is silent
    assert not (tmp_path / "node1.jsonl").exists()
    reports = [r for r in records(tmp_path / "node0.jsonl") if r["type"] == "report"]
    assert [r["kind"] for r in reports] == ["scheduled"] * 4 + ["final"]
    for report in reports:
        # Ranks pass the losses 1, 2, 3, 4: the report's loss is their mean, not rank 0's 1.0.
        assert report["loss"] == 2.5 and report["smoothed_loss"] == 2.5
        assert report["scalars"]["ranks/world_size"] == 4 and report["scalars"]["ranks/nodes"] == 2
        assert report["scalars"]["ranks/loss_smoothed_min"] == 1 and report["scalars"]["ranks/loss_smoothed_max"] == 4
        assert report["scalars"]["ranks/data_ms_median"] >= 2  # each rank sleeps 2 ms in data_wait()


def test_a_rank_that_leaves_costs_one_timeout_and_the_run_goes_on(tmp_path):
    log = tmp_path / "progress.jsonl"
    start = time.monotonic()
    result = subprocess.run(torchrun("--standalone", str(REPO / "tests" / "rank_worker.py"), str(log), "40", "15"),
                            capture_output=True, text=True, timeout=300, cwd=REPO, env=ENV)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert time.monotonic() - start < 120
    assert "the cross-rank exchange at iteration 20 failed" in result.stderr
    reports = [r for r in records(log) if r["type"] == "report"]
    assert [r["iteration"] for r in reports] == [10, 20, 30, 40, 40]  # every report, the summary last
    assert "ranks/world_size" in reports[0]["scalars"]
    assert all("ranks/world_size" not in r["scalars"] for r in reports[1:])
    assert reports[0]["loss"] == 1.5 and reports[-1]["loss"] == 1.0  # the mean while both ranks answer, then rank 0's


def worker_pid(launcher, rank):
    for child in psutil.Process(launcher.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "test_verbose_logging.py" in " ".join(child.cmdline()):
                return child.pid
        except psutil.NoSuchProcess:
            continue
    return None


def wait_for(path, text, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return True
        time.sleep(0.2)
    return False


def test_a_stopped_rank_makes_rank_0_report_a_stall(tmp_path):
    out, log = tmp_path / "stdout.txt", tmp_path / "demo.jsonl"
    with open(out, "w") as stdout:
        launcher = subprocess.Popen(
            torchrun("--standalone", str(REPO / "test_verbose_logging.py"), "--max_iters", "20000", "--log_every", "1",
                     *TINY, "--stall_s", "2", "--dist_timeout", "120", "--jsonl", str(log), "--no_anomaly"),
            stdout=stdout, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=ENV, start_new_session=True,
        )
    stopped = None
    try:
        assert wait_for(out, "TRAINING PROGRESS", 120), out.read_text()[-3000:]
        stopped = worker_pid(launcher, 1)
        os.kill(stopped, signal.SIGSTOP)
        assert wait_for(out, "TRAINING STALLED", 60), out.read_text()[-3000:]
        os.kill(stopped, signal.SIGCONT)
        assert wait_for(out, "Training goes on", 60), out.read_text()[-3000:]
    finally:
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait(30)
    text = out.read_text()
    assert text.count("TRAINING STALLED") == 1 and "Last phase: compute" in text  # rank 0 waits in DDP's all-reduce
    events = [r for r in records(log) if r["type"] == "event" and r["event"] in ("stalled", "stall_ended")]
    assert [e["event"] for e in events] == ["stalled", "stall_ended"]
    assert events[0]["data"]["stalled_s"] >= 2 and events[0]["data"]["phase"] == "compute"
    assert events[1]["iteration"] == events[0]["iteration"]


def test_two_ranks_metering_one_device_count_it_once(tmp_path):
    """Both ranks read one (fake) RAPL package; rank 0 advances it by 1 J per step. Rank 0's
    report sums the ranks' energy over distinct devices: 40 J after 40 steps, not 80."""
    package = tmp_path / "powercap" / "intel-rapl:0"
    package.mkdir(parents=True)
    (package / "energy_uj").write_text("0\n")
    (package / "max_energy_range_uj").write_text("262143328850\n")
    log = tmp_path / "run.jsonl"
    result = subprocess.run(torchrun("--standalone", str(REPO / "tests" / "rank_worker.py"), str(log), "40"),
                            capture_output=True, text=True, timeout=300, cwd=REPO,
                            env={**ENV, "FAKE_RAPL_ROOT": str(tmp_path / "powercap")})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    reports = [r for r in records(log) if r["type"] == "report"]
    assert [r["iteration"] for r in reports] == [10, 20, 30, 40, 40]
    for report in reports:
        assert report["devices"] == 2 and report["energy_source"] == "rapl"
        assert report["energy_j"] == pytest.approx(report["iteration"], abs=1.0)
    assert reports[-1]["energy_j"] == pytest.approx(40.0)
