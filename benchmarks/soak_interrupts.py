"""Soak test of both trainers against interruptions: each chain trains a tiny model, stops it
at random moments with SIGINT, SIGTERM or SIGKILL, resumes it (--init_from=resume) until it
completes, and checks what the reliability table in the README promises:

- after SIGINT or SIGTERM: exit 130 or 143, the summary ("TRAINING STOPPED") printed, a
  ``run_end`` record with status "stopped" in progress.jsonl, and a checkpoint of exactly the
  stop iteration;
- after every interruption: the checkpoint loads (CRCs verified) and never goes back to an
  earlier iteration than the last one saved (no lost checkpoint);
- at the end: no temporary checkpoint file left, and read_log's reconstructed timeline of
  the run holds every scheduled report exactly once (and, for NanEcho, each phase change
  once).

    python benchmarks/soak_interrupts.py                          # both trainers, 4 chains each
    python benchmarks/soak_interrupts.py --trainer train --chains 10 --interruptions 5 --seed 7

Moments: "random" waits a random time into the segment (evaluations take about half of a
tiny run's time, so many signals land in one); "save" watches out_dir and sends the signal
the moment a temporary checkpoint file appears (inside a save). A SIGKILL that leaves a
temporary file behind was inside a save: those are counted. Exits 1 at the first broken
promise, printing the chain, its seed and the outputs; prints one line of figures per
trainer and a JSON summary at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainkit.checkpoint import load_checkpoint  # noqa: E402
from trainprogress import read_log  # noqa: E402
from trainprogress.report_schedule import ReportSchedule  # noqa: E402

SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}
REPORT_INTERVAL = 5.0  # percent



def trainer_spec(trainer: str, max_iters: int | None) -> dict:
    """The command line of a chain's processes (without out_dir and init_from), its length
    and its evaluation interval. Evaluations take about half of a tiny run's time, so random
    moments often land in one."""
    if trainer == "train":  # an evaluation of 2 x 40 batches every 25 steps
        n = max_iters or 600
        return dict(script="train.py", max_iters=n, eval_interval=25, args=[
            "--anomaly_detection=False", "--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4",
            "--gradient_accumulation_steps=1", "--learning_rate=3e-3", "--min_lr=3e-4", f"--lr_decay_iters={n}",
            "--warmup_iters=10", "--eval_interval=25", "--eval_iters=40", f"--report_interval={REPORT_INTERVAL}",
            "--log_interval=0", "--device=cpu", "--compile=False", "--dropout=0.0", f"--max_iters={n}", "--jsonl_log=True",
            "--final_full_eval=False"])
    n = max_iters or 400  # NanEcho through its five phases, growing connections every 10 steps
    return dict(script="train_nanecho.py", max_iters=n, eval_interval=20, args=[
        "--preset", "tiny", "--anomaly_detection", "False", "--n_layer", "1", "--n_embd", "32", "--n_head", "2",
        "--block_size", "32", "--batch_size", "8", "--eval_interval", "20", "--eval_iters", "8",
        "--connection_growth_interval", "10", "--report_interval", str(REPORT_INTERVAL), "--sample_tokens", "16",
        "--max_iters", str(n), "--jsonl_log", "True", "--device", "cpu", "--compile", "False"])


class Broken(AssertionError):
    """A promise the run did not keep."""


def temp_files(out_dir: Path) -> list[str]:
    """The temporary checkpoint files in out_dir (a kill in the end-of-run plot may leave the
    plot's own .progress.png.*.tmp: not a checkpoint, counted apart)."""
    if not out_dir.exists():
        return []
    return sorted(name for name in os.listdir(out_dir) if name.startswith("ckpt.pt.") and name.endswith(".tmp"))


def count_run_starts(log: Path) -> int:
    if not log.exists():
        return 0
    return log.read_bytes().count(b'"type": "run_start"')


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8", "PYTHONPATH": str(REPO)}


def start_rival(cmd: list[str], process: subprocess.Popen, out_dir: Path, timeout_s: float) -> str:
    """Start a second run in the out_dir that ``process`` trains into, while that one is
    paused (SIGSTOP: it holds its lock, and cannot finish first). Returns what went wrong,
    or "" when the rival was refused as promised: exit 1 naming the holder's pid, before
    writing anything to the log."""
    starts = count_run_starts(out_dir / "progress.jsonl")
    process.send_signal(signal.SIGSTOP)
    try:
        rival = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=ENV, timeout=timeout_s)
    finally:
        process.send_signal(signal.SIGCONT)
    if rival.returncode != 1 or f"is in use by another run: pid {process.pid}" not in rival.stderr:
        return f"the second run in one out_dir exited {rival.returncode}:\n{rival.stderr[-2000:]}"
    if "Traceback" in rival.stderr or count_run_starts(out_dir / "progress.jsonl") != starts:
        return f"the refused second run left a traceback or wrote to the log:\n{rival.stderr[-2000:]}"
    return ""


def run_segment(cmd: list[str], out_dir: Path, signame: str | None, moment: str, rng: random.Random,
                max_delay_s: float, timeout_s: float, rival: bool = False) -> tuple[int, str, str, bool, str]:
    """Run one process of a chain; send ``signame`` at ``moment`` (None: let it finish), and
    with ``rival`` first start a second run in the same out_dir (see start_rival). Returns its
    exit code, stdout, stderr, whether the signal was sent inside a save, and what the rival
    broke ("" when nothing)."""
    log = out_dir / "progress.jsonl"
    starts_before = count_run_starts(log)
    rival_broke = ""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err, env=ENV, text=True)
        inside_save = False
        try:
            if signame is not None:
                deadline = time.monotonic() + timeout_s
                while count_run_starts(log) == starts_before and process.poll() is None:  # training begins
                    if time.monotonic() > deadline:
                        raise Broken("the trainer did not start training in time")
                    time.sleep(0.01)
                if rival and process.poll() is None:
                    rival_broke = start_rival(cmd, process, out_dir, timeout_s)
                fire_at = time.monotonic() + rng.uniform(0.05, max_delay_s)
                while process.poll() is None:
                    if moment == "save" and temp_files(out_dir):
                        inside_save = True
                        break
                    if moment == "random" and time.monotonic() >= fire_at:
                        break
                    if moment == "save" and time.monotonic() >= fire_at + 3 * max_delay_s:  # no save seen: send anyway
                        break
                    time.sleep(0.0005 if moment == "save" else 0.005)
                if process.poll() is None:
                    process.send_signal(SIGNALS[signame])
            code = process.wait(timeout=timeout_s)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read(), inside_save, rival_broke


def final_evaluation_segment(cmd: list[str], out_dir: Path, max_iters: int, timeout_s: float,
                             grace_s: float = 3.0) -> tuple[int, str, str, float]:
    """Run the chain's last process; once the checkpoint of its last step exists (train.py
    writes it before the final pass over the whole val split), send SIGTERM, and SIGKILL
    ``grace_s`` seconds later if it still runs: a scheduler's grace period. Returns the exit code, stdout, stderr
    and the seconds from SIGTERM to the end."""
    path = out_dir / "ckpt.pt"
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err, env=ENV, text=True)
        deadline, seen = time.monotonic() + timeout_s, None
        try:
            while process.poll() is None and time.monotonic() < deadline:
                stamp = path.stat().st_mtime_ns if path.exists() else None
                if stamp != seen:
                    seen = stamp
                    if stamp is not None and checkpoint_iteration(out_dir) == max_iters:
                        break
                time.sleep(0.005)
            sent = time.monotonic()
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    process.send_signal(signal.SIGKILL)
            code = process.wait(timeout=timeout_s)
            waited = time.monotonic() - sent
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        out.seek(0)
        err.seek(0)
        return code, out.read(), err.read(), waited


def checkpoint_iteration(out_dir: Path) -> int | None:
    path = out_dir / "ckpt.pt"
    if not path.exists():
        return None
    return int(load_checkpoint(str(path))["iter_num"])  # raises CheckpointError when unloadable


def run_chain(spec: dict, trainer: str, out_dir: Path, data_dir: Path | None, interruptions: int, rng: random.Random,
              max_delay_s: float, timeout_s: float, stats: Counter, verbose: bool = False, grace_s: float = 3.0) -> None:
    """One chain: ``interruptions`` interrupted processes, then one that completes the run."""
    base = [sys.executable, str(REPO / spec["script"]), *spec["args"], *(["--data_dir", str(data_dir)] if data_dir else [])]
    flag = (lambda key, value: [f"--{key}={value}"]) if trainer == "train" else (lambda key, value: [f"--{key}", str(value)])
    saved = None  # the iteration of the latest checkpoint known to exist
    for index in range(interruptions + 1):
        signame = rng.choice(list(SIGNALS)) if index < interruptions else None
        moment = rng.choice(["random", "random", "save"])
        resume = saved is not None
        cmd = base + flag("out_dir", out_dir) + flag("init_from", "resume" if resume else "scratch")
        if signame is None and trainer == "train":  # the last process: SIGTERM in its final evaluation
            final_evaluation(cmd + flag("final_full_eval", True), trainer, out_dir, spec["max_iters"], timeout_s, stats, verbose,
                             grace_s)
            return
        code, out, err, inside_save, rival_broke = run_segment(cmd, out_dir, signame, moment, rng, max_delay_s, timeout_s,
                                                               rival=index == 0)
        where = f"{trainer} segment {index} ({signame or 'none'} at {moment}, exit {code})"
        if verbose:
            print(f"  {where}{', inside a save' if inside_save else ''}{', a second run refused' if index == 0 else ''}",
                  flush=True)

        def check(condition: bool, what: str) -> None:
            if not condition:
                raise Broken(f"{where}: {what}\n--- stdout\n{out[-2000:]}\n--- stderr\n{err[-3000:]}")

        check(not rival_broke, rival_broke)
        stats["second run in one out_dir refused"] += index == 0 and signame is not None

        now = checkpoint_iteration(out_dir)
        check(saved is None or (now is not None and now >= saved), f"checkpoint went from iteration {saved} to {now}")
        leftovers = temp_files(out_dir)
        if signame is None or code == 0:
            check(code == 0, "the run did not complete")
            stats["completed before the signal"] += signame is not None
            check(now == spec["max_iters"] or trainer == "train", "no final checkpoint")
            saved = now
            stats["completed"] += 1
            break
        stats[signame] += 1
        if signame == "SIGKILL":
            check(code == -signal.SIGKILL, "not killed by SIGKILL")
            stats["SIGKILL inside a save"] += bool(leftovers)
        else:
            check(code == 128 + SIGNALS[signame], f"exit code {code}, expected {128 + SIGNALS[signame]}")
            check("TRAINING STOPPED" in out, "no summary")
            check(not leftovers, f"temporary files left: {leftovers}")
            end = read_log(out_dir / "progress.jsonl").runs[-1].end
            check(end is not None and end.get("status") == "stopped", f"run_end is {end}")
            check(now == end["iteration"], f"checkpoint at {now}, stopped at {end['iteration']}")
            stats[f"{signame} inside a save"] += inside_save
            stats[f"{signame} at an eval step"] += end["iteration"] % spec["eval_interval"] == 0
        saved = now
    check_timeline(trainer, out_dir, spec["max_iters"])


def final_evaluation(cmd: list[str], trainer: str, out_dir: Path, max_iters: int, timeout_s: float, stats: Counter,
                     verbose: bool, grace_s: float) -> None:
    """The chain's last process, stopped by SIGTERM (then SIGKILL ``grace_s`` later) during its
    final evaluation: the last step's checkpoint must be there, and, unless killed, the run
    recorded as complete."""
    code, out, err, waited = final_evaluation_segment(cmd, out_dir, max_iters, timeout_s, grace_s)
    where = f"{trainer} last segment (SIGTERM in the final evaluation, exit {code}, {waited:.1f} s after it)"
    if verbose:
        print(f"  {where}", flush=True)
    now = checkpoint_iteration(out_dir)
    if now != max_iters or code not in (0, 143, -signal.SIGKILL):
        raise Broken(f"{where}: checkpoint at {now} of {max_iters}\n--- stdout\n{out[-2000:]}\n--- stderr\n{err[-3000:]}")
    cut = "during the final evaluation" in out  # the pass was stopped, the run then closed its log
    outcome = {0: "done before SIGTERM", 143: "stopped by SIGTERM, exit 143",
               -signal.SIGKILL: "cut, then SIGKILL while closing" if cut else "SIGKILL before the cut"}[code]
    stats[f"final evaluation: {outcome}"] += 1
    stats["final evaluation: slowest SIGTERM to exit, s"] = max(stats["final evaluation: slowest SIGTERM to exit, s"],
                                                                 round(waited, 2))
    if code == 143 and not cut:
        raise Broken(f"{where}: the stop did not say it cut the final evaluation\n{out[-2000:]}")
    stats["completed"] += 1
    # The JSONL sink writes run_end before the plot sink draws: a kill while closing keeps it.
    check_timeline(trainer, out_dir, max_iters, completed=code != -signal.SIGKILL or cut)


def fill(folder: Path) -> Path:
    """Write zeros into ``folder`` until its filesystem is full; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    return filler


def full_disk_run(spec: dict, trainer: str, tmp: Path, data_dir: Path | None, timeout_s: float, stats: Counter,
                  verbose: bool) -> None:
    """One run whose out_dir lies on a 16 MB tmpfs that is filled for half a second mid-run,
    then resumed until it completes: the checkpoint survives (a save that failed keeps the
    previous one), and the log ends with a completed run whose reports are all there or
    whose missing ones are recorded as a gap. Needs ``mount -t tmpfs`` (root); skipped, saying
    why, where mounting is not permitted."""
    disk = tmp / f"{trainer}-small-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        print(f"{trainer}: full-disk part skipped: mount -t tmpfs is not permitted here ({mounted.stderr.strip()})", flush=True)
        stats["full disk: skipped (no mount)"] += 1
        return
    try:
        out_dir = disk / "out"
        base = [sys.executable, str(REPO / spec["script"]), *spec["args"], *(["--data_dir", str(data_dir)] if data_dir else [])]
        flag = (lambda key, value: [f"--{key}={value}"]) if trainer == "train" else (lambda key, value: [f"--{key}", str(value)])
        exits = []
        for attempt in range(4):
            cmd = base + flag("out_dir", out_dir) + flag("init_from", "resume" if (out_dir / "ckpt.pt").exists() else "scratch")
            process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, text=True)
            if attempt == 0:
                deadline = time.monotonic() + timeout_s
                while count_run_starts(out_dir / "progress.jsonl") == 0 and process.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.5)
                filler = fill(disk)
                time.sleep(0.5)
                filler.unlink()
            _, err = process.communicate(timeout=timeout_s)
            exits.append(process.returncode)
            if process.returncode == 0:
                break
            if process.returncode != 1 or "Traceback" in err or "could not save" not in err:  # only a clear save error
                raise Broken(f"{trainer} on a full disk: exit {process.returncode}\n{err[-3000:]}")
            stats["full disk: a save refused with the clear error, old checkpoint kept"] += 1
        if verbose:
            print(f"  {trainer} on a disk full for 0.5 s: exits {exits}", flush=True)
        if exits[-1] != 0:
            raise Broken(f"{trainer} on a full disk: did not complete in {len(exits)} processes ({exits})")
        stats["full disk: processes to complete"] += len(exits)
        run = read_log(out_dir / "progress.jsonl").runs[-1]
        scheduled = [r["iteration"] for r in run.reports if r.get("kind") == "scheduled"]
        missing = sorted(set(ReportSchedule(spec["max_iters"], REPORT_INTERVAL).due_iterations()) - set(scheduled))
        stats["full disk: report points missing"] += len(missing)
        recorded_gap = b"gap" in (out_dir / "progress.jsonl").read_bytes()
        if run.status != "completed" or (missing and not recorded_gap):
            raise Broken(f"{trainer} on a full disk: the log's run is {run.status}, report points {missing} missing "
                         f"{'with' if recorded_gap else 'and no'} gap recorded")
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def check_timeline(trainer: str, out_dir: Path, max_iters: int, completed: bool = True) -> None:
    """The finished chain: no temporary file, every scheduled report once in the reconstructed
    view, each NanEcho phase change once."""
    leftovers = temp_files(out_dir)
    if leftovers:
        raise Broken(f"{trainer}: temporary files left after the chain: {leftovers}")
    plots = [name for name in os.listdir(out_dir) if name.startswith(".progress.png.") and name.endswith(".tmp")]
    if plots:
        print(f"{trainer}: note: a kill while the plot was drawn left {plots}", flush=True)
    run = read_log(out_dir / "progress.jsonl").runs[-1]
    if completed and run.status != "completed":  # a SIGKILL leaves no run_end: only the reports are checked
        raise Broken(f"{trainer}: the chain's run is {run.status}")
    scheduled = [r["iteration"] for r in run.reports if r.get("kind") == "scheduled"]
    expected = ReportSchedule(max_iters, REPORT_INTERVAL).due_iterations()
    if scheduled != expected:
        raise Broken(f"{trainer}: reconstructed reports {scheduled}, expected {expected}")
    if trainer == "nanecho":
        phases = [e["data"]["phase"] for e in run.events if e.get("event") == "phase_change"]
        if len(phases) != len(set(phases)) or len(phases) != 5:
            raise Broken(f"{trainer}: phase changes in the reconstructed view: {phases}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainer", choices=["train", "nanecho", "both"], default="both")
    parser.add_argument("--chains", type=int, default=4, help="chains per trainer")
    parser.add_argument("--interruptions", type=int, default=4, help="interrupted processes per chain")
    parser.add_argument("--max_delay_s", type=float, default=3.0, help="latest random moment, seconds into a segment")
    parser.add_argument("--timeout_s", type=float, default=300.0, help="seconds a process may take")
    parser.add_argument("--grace_s", type=float, default=3.0,
                        help="seconds between SIGTERM and SIGKILL in the final evaluation (a scheduler's grace period)")
    parser.add_argument("--full_disk", action=argparse.BooleanOptionalAction, default=True,
                        help="also run once on a 16 MB tmpfs filled for 0.5 s mid-run (needs mount -t tmpfs: root)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_iters", type=int, default=None, help="steps per run (default: 600 train.py, 400 NanEcho)")
    parser.add_argument("--verbose", action="store_true", help="a line per process")
    args = parser.parse_args(argv)
    trainers = ["train", "nanecho"] if args.trainer == "both" else [args.trainer]
    summary = {}
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        data_dir = None
        if "nanecho" in trainers:
            from trainkit.nanecho.corpus import prepare

            data_dir = Path(tmp) / "nanecho-data"
            prepare(data_dir)
        for trainer in trainers:
            stats: Counter = Counter()
            began = time.monotonic()
            for chain in range(args.chains):
                seed = args.seed * 1000 + chain
                try:
                    run_chain(trainer_spec(trainer, args.max_iters), trainer, Path(tmp) / f"{trainer}-{chain}", data_dir if trainer == "nanecho" else None,
                              args.interruptions, random.Random(seed), args.max_delay_s, args.timeout_s, stats, args.verbose,
                              args.grace_s)
                except Broken as broken:
                    print(f"FAILED: chain {chain} (seed {seed}): {broken}", flush=True)
                    return 1
                stats["chains"] += 1
            if args.full_disk:
                try:
                    full_disk_run(trainer_spec(trainer, args.max_iters), trainer, Path(tmp), data_dir if trainer == "nanecho" else None,
                                  args.timeout_s, stats, args.verbose)
                except Broken as broken:
                    print(f"FAILED: full disk: {broken}", flush=True)
                    return 1
            stats["seconds"] = round(time.monotonic() - began)
            summary[trainer] = dict(stats)
            print(f"{trainer}: " + ", ".join(f"{key} {value}" for key, value in stats.items()), flush=True)
    print("all promises held: " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
