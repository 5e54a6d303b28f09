"""trainkit.checkpoint under failure: killed saves, diverged state, corrupted and malformed
files, full disks, read-only folders and immutable files. Real processes, real files; the
full-disk, read-only-mount and immutable-file cases use a private mount namespace or
`chattr`, which need root (CI's non-root runners cover the same paths with RLIMIT_FSIZE and
file modes)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from trainkit.checkpoint import (
    CheckpointError, CheckpointSaveError, NonFiniteStateError, load_checkpoint, load_for_resume, prepare_out_dir,
    remove_stale_temp_files, save_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT or not shutil.which("unshare"), reason="needs root for mounts / chattr")


def resumable(value: float = 1.0, n: int = 16) -> dict:
    model = torch.nn.Linear(n, n)
    torch.nn.init.constant_(model.weight, value)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, n)).sum().backward()
    optimizer.step()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iter_num": round(100 * value),
            "best_val_loss": 2.5, "model_args": {"n_layer": 1}}


def python(code: str, *, wrap: list[str] | None = None) -> subprocess.CompletedProcess:
    script = f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + textwrap.dedent(code)
    return subprocess.run([*(wrap or []), sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------ (3) temporary files

def kill_during_save(path: Path) -> None:
    result = python(f"""
        import os, signal, torch
        from trainkit.checkpoint import save_checkpoint
        def save_then_die(obj, f):
            f.write(b"partial" * 1000)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = save_then_die
        save_checkpoint({str(path)!r}, {{"model": {{}}}})
    """)
    assert result.returncode == -signal.SIGKILL, result.stderr


def test_temp_files_of_killed_saves_are_removed_at_the_next_save(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(str(path), resumable(1.0))
    kill_during_save(path)
    first = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    kill_during_save(path)  # the second killed save already removes the first one's file
    left = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len(first) == len(left) == 1 and first != left
    save_checkpoint(str(path), resumable(2.0))
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    assert load_checkpoint(str(path))["iter_num"] == 200


def test_temp_files_are_removed_at_load_and_only_stale_ones_of_ours(tmp_path, capfd):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(str(path), resumable())
    kill_during_save(path)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        keep = [
            f"ckpt.pt.{live.pid}.abcd1234.tmp",  # a save in progress in a live process
            "ckpt.pt.notes.tmp", "other.pt.12345678.tmp", "ckpt.pt.bak",  # not ours
            "ckpt.pt.recent_1.tmp",  # an older version's, written to a moment ago
        ]
        for name in keep + ["ckpt.pt.old_abcd.tmp"]:
            (tmp_path / name).write_bytes(b"x")
        two_hours_ago = time.time() - 7200
        os.utime(tmp_path / "ckpt.pt.old_abcd.tmp", (two_hours_ago, two_hours_ago))
        load_checkpoint(str(path))
        assert sorted(os.listdir(tmp_path)) == sorted(keep + ["ckpt.pt"])
        assert "removed 2 temporary checkpoint file(s)" in capfd.readouterr().err
        assert remove_stale_temp_files(str(path)) == []
    finally:
        live.kill()
        live.wait()


# ------------------------------------------------------------------------------ (4) non-finite state

@pytest.mark.parametrize("poison, loss, expected", [
    ("weight", None, r"16 NaN or infinite values in 1 tensors \(first: model\.weight\)"),
    ("moment", None, r"first: optimizer\.state\.0\.exp_avg\)"),
    (None, float("inf"), "the loss is inf"),
    (None, torch.tensor(float("nan")), "the loss is nan"),
])
def test_non_finite_state_never_replaces_a_good_checkpoint(tmp_path, poison, loss, expected):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(str(path), resumable(1.0))
    good = path.read_bytes()
    diverged = resumable(3.0)
    if poison == "weight":
        diverged["model"]["weight"][0] = float("nan")
    elif poison == "moment":
        diverged["optimizer"]["state"][0]["exp_avg"][0, 0] = float("-inf")
    with pytest.raises(NonFiniteStateError, match=expected) as err:
        save_checkpoint(str(path), diverged, loss=loss)
    assert "previous checkpoint is kept" in str(err.value) and "Fix: resume from it" in str(err.value)
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["ckpt.pt"]


# ------------------------------------------------------------------------------ (5) integrity

def test_flipped_bytes_are_detected_on_load(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(str(path), resumable(1.0, n=256))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(str(path))
    message = str(err.value)
    assert str(path) in message and "is corrupt" in message and "fails the CRC-32 check" in message
    assert "Fix: restore ckpt.pt from a backup" in message


# ------------------------------------------------------------------------------ (8) malformed checkpoints

@pytest.mark.parametrize("change, expected", [
    (lambda c: c.pop("model_args"), "it has no 'model_args'"),
    (lambda c: c.update(iter_num="100"), "'iter_num' is str '100', not a whole number"),
    (lambda c: c.pop("optimizer"), "it has no optimizer state"),
    (lambda c: c.update(best_val_loss=None), "'best_val_loss' is NoneType None, not a number"),
])
def test_malformed_checkpoints_name_the_file_and_the_fix(tmp_path, change, expected):
    path = tmp_path / "ckpt.pt"
    ckpt = resumable()
    change(ckpt)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as err:
        load_for_resume(str(path), "cpu", {"n_layer": 1}, max_iters=1000)
    message = str(err.value)
    assert f"{path} cannot be resumed" in message and expected in message and "--init_from=scratch" in message


# ------------------------------------------------------------------------------ (8) failed saves

def test_a_write_past_the_file_size_limit_keeps_the_old_checkpoint(tmp_path):
    """A real failing write (EFBIG under RLIMIT_FSIZE), in a child process."""
    path = tmp_path / "ckpt.pt"
    save_checkpoint(str(path), resumable(1.0))
    good = path.read_bytes()
    result = python(f"""
        import resource, signal, torch
        from trainkit.checkpoint import CheckpointSaveError, save_checkpoint
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            save_checkpoint({str(path)!r}, {{"model": {{"w": torch.zeros(1_000_000)}}}})
        except CheckpointSaveError as e:
            print(e)
    """)
    assert result.returncode == 0, result.stderr
    assert "could not save" in result.stdout and "File too large [EFBIG]" in result.stdout
    assert "The checkpoint needs about 4.0 MB" in result.stdout and "previous checkpoint is kept" in result.stdout
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["ckpt.pt"]


def test_a_failed_write_is_reported_with_the_space_it_needed(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(str(path), resumable(1.0))

    def torch_save_on_a_full_disk(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", torch_save_on_a_full_disk)
    with pytest.raises(CheckpointSaveError, match=r"No space left on device \[ENOSPC\].*needs about 0\.0 MB .* free\)"):
        save_checkpoint(str(path), {"model": {"w": torch.zeros(10)}})
    monkeypatch.undo()
    assert load_checkpoint(str(path))["iter_num"] == 100 and os.listdir(tmp_path) == ["ckpt.pt"]


@needs_root
def test_a_full_disk_keeps_the_old_checkpoint(tmp_path):
    """A real 2 MB tmpfs, filled by a checkpoint of 4 MB."""
    disk = tmp_path / "disk"
    disk.mkdir()
    code = f"""
        import os, torch
        from trainkit.checkpoint import CheckpointSaveError, save_checkpoint
        path = {str(disk / 'ckpt.pt')!r}
        save_checkpoint(path, {{"model": {{"w": torch.ones(1000)}}}})
        try:
            save_checkpoint(path, {{"model": {{"w": torch.zeros(1_000_000)}}}})
        except CheckpointSaveError as e:
            print(e)
        print(sorted(os.listdir({str(disk)!r})), float(torch.load(path)["model"]["w"].sum()))
    """
    script = f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + textwrap.dedent(code)
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=2m tmpfs {disk} && exec {sys.executable} -c \"$0\"", script],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "No space left on device [ENOSPC]" in result.stdout and "needs about 4.0 MB" in result.stdout
    assert "['ckpt.pt'] 1000.0" in result.stdout


@needs_root
def test_an_immutable_checkpoint_is_reported_before_training_and_at_save(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(str(path), resumable(1.0))
    good = path.read_bytes()
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        with pytest.raises(CheckpointError, match=r"ckpt\.pt cannot be replaced .*chattr -i"):
            prepare_out_dir(str(tmp_path))
        with pytest.raises(CheckpointSaveError, match=r"Operation not permitted \[EPERM\].*chattr -i"):
            save_checkpoint(str(path), resumable(2.0))
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["ckpt.pt"]


# ------------------------------------------------------------------------------ (8) out_dir

def test_out_dir_is_created_and_left_clean(tmp_path):
    prepare_out_dir(str(tmp_path / "a" / "b"))
    assert os.listdir(tmp_path / "a" / "b") == []


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_unwritable_out_dir_is_refused_before_training(tmp_path, where):
    out_dir = str(tmp_path / "file" / "out") if where == "under_a_file" else "/proc/trainkit-out"
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CheckpointError, match=rf"out_dir '{out_dir}' cannot be written: .*Fix: set --out_dir"):
        prepare_out_dir(out_dir)


def test_read_only_out_dir_is_refused_before_training(tmp_path):
    out_dir = tmp_path / "ro"
    out_dir.mkdir()
    code = f"""
        from trainkit.checkpoint import CheckpointError, prepare_out_dir
        try:
            prepare_out_dir({str(out_dir)!r})
        except CheckpointError as e:
            print(e)
    """
    if IS_ROOT and shutil.which("unshare"):  # root writes through file modes: a read-only mount instead
        script = f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + textwrap.dedent(code)
        result = subprocess.run(
            ["unshare", "-m", "sh", "-c", f"mount --bind -o ro {out_dir} {out_dir} && exec {sys.executable} -c \"$0\"",
             script], capture_output=True, text=True, timeout=120)
        expected = "Read-only file system"
    else:
        out_dir.chmod(0o555)
        result = python(code)
        out_dir.chmod(0o755)
        expected = "Permission denied"
    assert result.returncode == 0, result.stderr
    assert f"out_dir '{out_dir}' cannot be written: {expected}. Fix: set --out_dir" in result.stdout


def test_a_model_keeping_infinities_on_purpose_can_opt_out(tmp_path):
    path = tmp_path / "ckpt.pt"
    state = {"model": {"causal_mask": torch.full((4, 4), float("-inf")).triu(1)}, "iter_num": 1}
    with pytest.raises(NonFiniteStateError):
        save_checkpoint(str(path), state)
    save_checkpoint(str(path), state, check_finite_state=False)
    assert torch.equal(load_checkpoint(str(path))["model"]["causal_mask"], state["model"]["causal_mask"])
    with pytest.raises(NonFiniteStateError, match="the loss is nan"):  # the loss is still checked
        save_checkpoint(str(path), state, check_finite_state=False, loss=float("nan"))
