"""trainkit.signals.GracefulStop with real processes receiving real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from trainkit.signals import REPEAT_WINDOW_S, GracefulStop

REPO = Path(__file__).resolve().parents[1]

# A training loop as the trainers run it: steps until asked to stop, then "saves" (slowly
# when told to, so that a second signal can arrive during the save) and exits.
LOOP = textwrap.dedent(f"""
    import signal, sys, time
    sys.path.insert(0, {str(REPO)!r})
    from trainkit.signals import REPEAT_WINDOW_S, GracefulStop
    slow_save = "slow" in sys.argv
    with GracefulStop() as stop:
        print("ready", flush=True)
        step = 0
        while step < 100_000:
            time.sleep(0.01)  # the optimizer step
            step += 1
            if stop.requested:
                print(f"saving at step {{step}} after {{stop.signal_name}}", flush=True)
                if slow_save:
                    time.sleep(30)
                print("saved", flush=True)
                break
    print("SIGINT ignored after:", signal.getsignal(signal.SIGINT) == signal.SIG_IGN, flush=True)
    sys.exit(stop.exit_code)
""")


def start(*args: str, ignore_sigint: bool = False) -> subprocess.Popen:
    def ignore() -> None:  # as a non-interactive shell starts a background job (`cmd &`)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    process = subprocess.Popen([sys.executable, "-c", LOOP, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=ignore if ignore_sigint else None)
    assert process.stdout.readline() == "ready\n"
    time.sleep(0.1)  # a few steps in
    return process


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_first_signal_stops_after_the_step_and_saves(signum, code):
    process = start()
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    name = signal.Signals(signum).name
    assert process.returncode == code
    assert f"after {name}\nsaved\n" in out
    assert f"{name} received: stopping after this step and saving a checkpoint" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("signum, returncode", [(signal.SIGINT, -signal.SIGINT), (signal.SIGTERM, -signal.SIGTERM)])
def test_second_signal_stops_at_once(signum, returncode):
    process = start("slow")
    process.send_signal(signum)
    assert process.stdout.readline().startswith("saving at step")
    time.sleep(REPEAT_WINDOW_S)  # a quicker repeat counts as the same request (the next test)
    sent = time.monotonic()
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    assert time.monotonic() - sent < 10  # not the 30 s save
    assert process.returncode == returncode  # dies by the signal, as a shell's Ctrl-C would end it
    assert "saved" not in out
    assert f"{signal.Signals(signum).name} again: stopping now, without saving. The last complete checkpoint is kept." in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err  # one clear line, no traceback


def test_a_repeat_within_the_window_is_the_same_request():
    # Ctrl-C in a terminal reaches torchrun and its workers, and torchrun forwards it again.
    process = start("slow")
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    assert process.stdout.readline().startswith("saving at step")
    time.sleep(0.5)
    assert process.poll() is None  # still saving: the repeat did not stop it
    process.terminate()  # a different signal is a second request: stops at once
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGTERM


def test_sigint_ignored_by_a_background_start_is_handled_then_restored():
    process = start(ignore_sigint=True)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "saved\n" in out
    assert "SIGINT ignored after: True" in out  # the inherited setting is back


def test_previous_handlers_are_restored_in_process():
    calls = []

    def mine(signum, frame):
        calls.append(signum)

    sigint_before = signal.getsignal(signal.SIGINT)  # ignored when pytest runs as a background job
    before = signal.signal(signal.SIGTERM, mine)
    try:
        with GracefulStop() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # let the interpreter run the handler
            assert stop.requested and stop.signal_name == "SIGTERM" and stop.exit_code == 143
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is sigint_before
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert calls == [signal.SIGTERM]
        assert GracefulStop().exit_code == 0
    finally:
        signal.signal(signal.SIGTERM, before)


def test_the_library_never_installs_handlers():
    from trainprogress import ProgressTracker

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with ProgressTracker(10, sinks=[]) as tracker:
        for _ in range(10):
            tracker.step(loss=1.0)
    assert {s: signal.getsignal(s) for s in handlers} == handlers
