"""One run per out_dir: a live holder refuses a second run (in-process and a real train.py),
a dead holder's lock is taken over with one line, a clean exit leaves no holder."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from helpers import REPO, TINY_TRAIN, run_script
from trainkit.outdir_lock import LOCK_NAME, OutDirBusyError, OutDirLock

HOLD = ("import sys, time; from trainkit.outdir_lock import OutDirLock; OutDirLock.acquire(sys.argv[1]); "
        "print('held', flush=True); time.sleep(120)")


@pytest.fixture
def holder(tmp_path):
    """A second process that holds tmp_path's lock until the test ends."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.stdout.readline().strip() == "held"
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_live_holder_refuses_a_second_lock_naming_pid_host_start_and_fix(tmp_path, holder):
    with pytest.raises(OutDirBusyError, match=rf"is in use by another run: pid {holder.pid} on host "
                                              rf"{socket.gethostname()}, started 20\d\d-") as caught:
        OutDirLock.acquire(str(tmp_path))
    assert f"kill -TERM {holder.pid}" in str(caught.value) and "--out_dir" in str(caught.value)


def test_a_killed_holders_lock_is_taken_over_with_one_line(tmp_path, holder, capsys):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = OutDirLock.acquire(str(tmp_path))
    try:
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"taking over the lock left by pid {holder.pid}" in err
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_a_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "earlier"}))
    lock = OutDirLock.acquire(str(tmp_path))
    try:
        assert f"taking over the lock left by pid {pid}" in capsys.readouterr().err
    finally:
        lock.release()
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released: no holder named


def test_the_lock_is_reentrant_in_one_process_and_a_clean_exit_leaves_no_holder(tmp_path, capsys):
    first = OutDirLock.acquire(str(tmp_path))
    assert OutDirLock.acquire(str(tmp_path)) is first
    first.release()
    # A process that takes the lock and exits normally empties the file: the next run says nothing.
    subprocess.run([sys.executable, "-c", f"from trainkit.outdir_lock import OutDirLock; OutDirLock.acquire({str(tmp_path)!r})"],
                   check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (tmp_path / LOCK_NAME).read_text() == ""
    OutDirLock.acquire(str(tmp_path)).release()
    assert "taking over" not in capsys.readouterr().err


@pytest.mark.process
def test_train_py_in_an_out_dir_that_a_live_run_holds_exits_1_with_the_holder(tmp_path, holder):
    began = time.monotonic()
    result = run_script("train.py", *TINY_TRAIN, "--max_iters=4", f"--out_dir={tmp_path}", check=False)
    assert result.returncode == 1
    assert f"is in use by another run: pid {holder.pid} on host {socket.gethostname()}" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "ckpt.pt").exists()
    assert time.monotonic() - began < 60
