"""docs/nanogpt.patch applies with `git apply` to nanoGPT's train.py (master, vendored with
its licence in tests/data/nanogpt) and leaves a script that compiles, with the tracker
driven where the README says."""

from __future__ import annotations

import re
import shutil
import subprocess

from helpers import REPO

PATCH = REPO / "docs" / "nanogpt.patch"
NANOGPT_TRAIN = REPO / "tests" / "data" / "nanogpt" / "train.py"


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_patch_was_made_against_the_vendored_train_py():
    before = re.search(r"^index ([0-9a-f]+)\.\.", PATCH.read_text(), flags=re.M).group(1)
    blob = git("hash-object", str(NANOGPT_TRAIN), cwd=REPO).stdout.strip()
    assert blob.startswith(before)


def test_git_apply_takes_the_patch_and_the_script_drives_the_tracker(tmp_path):
    shutil.copy(NANOGPT_TRAIN, tmp_path / "train.py")
    check = git("apply", "--check", str(PATCH), cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    applied = git("apply", str(PATCH), cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr

    source = (tmp_path / "train.py").read_text()
    compile(source, "train.py", "exec")
    lines = [line.rstrip() for line in source.splitlines()]
    position = {text: lines.index(text) for text in (
        "from trainprogress import ProgressTracker, build_sinks",
        "while True:",
        '        tracker.begin_pause("eval")',
        "        losses = estimate_loss()",
        "        tracker.end_pause()",
        "    if iter_num == 0 and eval_only:",
        "    optimizer.zero_grad(set_to_none=True)",
        "    tracker.step(loss=loss.detach() * gradient_accumulation_steps, lr=lr)",
        "tracker.close()",
        "    destroy_process_group()",
    )}
    assert list(position.values()) == sorted(position.values())  # in this order, each where it belongs
    assert lines[position["while True:"] - 1].startswith("                          sinks=build_sinks(jsonl=")
    assert git("apply", "--check", str(PATCH), cwd=tmp_path).returncode != 0  # applied once, not twice
