"""Checkpoints that survive crashes, divergence, full disks and damaged files.

Saving writes a temporary file in the same folder, flushes it to disk, then renames it over
the old one (``os.replace`` is atomic on POSIX and Windows), so at every moment the path
holds either the previous complete checkpoint or the new one. Before writing, the state is
checked for NaN and infinity: a diverged model never replaces a good checkpoint. A save that
fails (full disk, read-only folder, immutable file) keeps the old checkpoint, removes its
temporary file and says how much space it needed. Temporary files left by a process killed
while saving are removed at the next save or load.

Loading verifies the zip archive's CRC-32 of every record (``torch.save`` writes them; torch
itself does not check them), then loads with ``weights_only=True``: a checkpoint can hold
tensors and plain data, never code. ``load_for_resume`` also checks the entries a resume
needs, so a malformed file gets a message naming it and the fix, not a KeyError.
"""

from __future__ import annotations

import errno
import math
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from typing import Any, Iterator

import torch

from trainkit.config import ConfigError
from trainkit.model import SHAPE_KEYS

__all__ = [
    "CheckpointError", "CheckpointSaveError", "NonFiniteStateError", "check_finite", "load_checkpoint",
    "load_for_resume", "load_training_state", "prepare_out_dir", "require_checkpoint", "remove_stale_temp_files", "save_checkpoint", "strip_compile_prefix",
]

# A temporary file left by this module's older versions (no process id in its name) is
# stale once nothing has written to it for this long: no save takes an hour.
LEGACY_TEMP_STALE_S = 3600.0


class CheckpointError(ConfigError):
    """A checkpoint that is missing, unreadable, corrupt or malformed; the message names the
    file and the fix."""


class CheckpointSaveError(CheckpointError):
    """A save that failed (full disk, read-only folder, immutable file). The previous
    checkpoint is untouched and the temporary file removed; the message says what to do."""


class NonFiniteStateError(CheckpointError):
    """The state to save holds NaN or infinite values (a diverged run); nothing was written."""


# ------------------------------------------------------------------------------ temporary files

def _temp_prefix(path: str) -> str:
    return f"{os.path.basename(path)}.{os.getpid()}."


def _process_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate it there: assume alive, keep its file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temp_files(path: str) -> list[str]:
    """Delete the temporary files that interrupted saves of ``path`` left in its folder, and
    return their paths. Only files named as this module names them are candidates: those of
    a process that is no longer running (the process id is in the name), and those of older
    versions not written to for an hour. Files it cannot delete are left, silently."""
    folder = os.path.dirname(os.path.abspath(path))
    base = re.escape(os.path.basename(path))
    ours = re.compile(rf"{base}\.(\d+)\.[A-Za-z0-9_]{{8}}\.tmp")
    legacy = re.compile(rf"{base}\.[A-Za-z0-9_]{{8}}\.tmp")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        candidate = os.path.join(folder, name)
        match = ours.fullmatch(name)
        try:
            if match:
                pid = int(match.group(1))
                stale = pid != os.getpid() and not _process_alive(pid)
            else:
                stale = bool(legacy.fullmatch(name)) and time.time() - os.path.getmtime(candidate) > LEGACY_TEMP_STALE_S
            if stale:
                os.unlink(candidate)
                removed.append(candidate)
        except OSError:
            continue
    if removed:
        print(f"removed {len(removed)} temporary checkpoint file(s) left in {folder} by an interrupted save",
              file=sys.stderr, flush=True)
    return removed


# ------------------------------------------------------------------------------ finiteness

def _float_tensors(value: Any, name: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex():
            yield name, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _float_tensors(item, f"{name}.{key}" if name else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _float_tensors(item, f"{name}.{i}")


def check_finite(payload: dict[str, Any], path: str, loss: float | torch.Tensor | None = None) -> None:
    """Raise NonFiniteStateError when ``loss`` or any floating-point tensor in ``payload``
    (weights, optimizer moments, ...) holds NaN or infinity. One pass over the tensors on
    their own device and one copy of the per-tensor counts to the host; a save copies every
    tensor to the host anyway, so this adds a small fraction to its time."""
    named = list(_float_tensors(payload, ""))
    by_device: dict[torch.device, list[int]] = {}
    for i, (_, tensor) in enumerate(named):
        by_device.setdefault(tensor.device, []).append(i)
    counts = [0] * len(named)
    for indices in by_device.values():  # one host copy per device, not one per tensor
        found = torch.stack([(~torch.isfinite(named[i][1])).sum() for i in indices]).tolist()
        for i, n in zip(indices, found):
            counts[i] = n
    bad = [(name, n) for (name, _), n in zip(named, counts) if n]
    loss_value = None if loss is None else float(loss)
    loss_bad = loss_value is not None and not math.isfinite(loss_value)
    if not bad and not loss_bad:
        return
    found = []
    if bad:
        found.append(f"{sum(n for _, n in bad):,} NaN or infinite values in {len(bad)} tensors (first: {bad[0][0]})")
    if loss_bad:
        found.append(f"the loss is {loss_value}")
    raise NonFiniteStateError(
        f"refusing to save {path}: {' and '.join(found)}; the run has diverged, and the previous checkpoint "
        f"is kept. Fix: resume from it (--init_from=resume) with a lower --learning_rate or a --grad_clip, "
        f"or check the data."
    )


# ------------------------------------------------------------------------------ saving

def _payload_bytes(payload: Any) -> int:
    """Bytes of tensor data in ``payload`` (shared storages once): about its size on disk."""
    seen: dict[int, int] = {}

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(payload)
    return sum(seen.values())


def _megabytes(n: float) -> str:
    return f"{n / 1e6:,.1f} MB"


def _os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc``: torch.save reports a failed write (full disk) as a
    RuntimeError "unexpected pos" raised while handling the OSError."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _save_failure(path: str, exc: OSError, needed: int) -> CheckpointSaveError:
    folder = os.path.dirname(os.path.abspath(path))
    reason = f"{exc.strerror or exc}" + (f" [{errno.errorcode.get(exc.errno, exc.errno)}]" if exc.errno else "")
    message = f"could not save {path}: {reason}. The previous checkpoint is kept and the partial file removed."
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        try:
            free = f"{_megabytes(shutil.disk_usage(folder).free)} free"
        except OSError:
            free = "free space unknown"
        message += (f" The checkpoint needs about {_megabytes(needed)} in {folder} ({free}). "
                    f"Fix: free space there or set --out_dir to a larger disk, then resume (--init_from=resume).")
    elif exc.errno in (errno.EPERM, errno.EACCES, errno.EROFS):
        message += (f" Fix: make {folder} and {os.path.basename(path)} writable (an immutable file needs "
                    f"`chattr -i`), or set --out_dir to a folder you can write, then resume (--init_from=resume).")
    else:
        message += " Fix: check the disk holding it, or set --out_dir elsewhere, then resume (--init_from=resume)."
    return CheckpointSaveError(message)


def save_checkpoint(
    path: str, payload: dict[str, Any], *, loss: float | torch.Tensor | None = None, check_finite_state: bool = True
) -> None:
    """Write ``payload`` (tensors, numbers, strings, lists, dicts) to ``path`` atomically.
    The folder must exist (see prepare_out_dir).

    Raises NonFiniteStateError, writing nothing, when ``loss`` (the latest loss, optional) or
    a tensor in ``payload`` is NaN or infinite (``check_finite_state=False`` skips the
    tensors, for a model that keeps infinities on purpose, such as a -inf attention mask
    buffer); CheckpointSaveError when writing fails. In every case the previous file at
    ``path`` is untouched and no temporary file remains."""
    check_finite(payload if check_finite_state else {}, path, loss)
    remove_stale_temp_files(path)
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())  # the data must be on disk before the rename makes it visible
        os.chmod(tmp, 0o644)  # mkstemp makes files private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException as exc:
        written = 0
        if tmp is not None:
            try:
                written = os.path.getsize(tmp)
                os.unlink(tmp)
            except OSError:
                pass
        os_error = _os_error_in(exc)
        if os_error is not None:
            raise _save_failure(path, os_error, max(written, _payload_bytes(payload))) from exc
        raise
    if hasattr(os, "O_DIRECTORY"):
        # Persist the rename itself (the directory entry); without it a power cut could lose it.
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def prepare_out_dir(out_dir: str, checkpoint_name: str = "ckpt.pt") -> None:
    """Create ``out_dir`` if needed and prove that a checkpoint can be written there (a small
    file is created and deleted), before any training time is spent. Raises CheckpointError
    naming the folder and the fix when it is under a regular file, in a virtual filesystem
    such as /proc, read-only, not permitted, or when its checkpoint file is immutable."""
    fix = "Fix: set --out_dir to a folder you can write (e.g. --out_dir=out)."
    try:
        os.makedirs(out_dir, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CheckpointError(f"out_dir '{out_dir}' cannot be written: {exc.strerror or exc}. {fix}") from None
    ckpt = os.path.join(out_dir, checkpoint_name)
    if os.path.isfile(ckpt):
        st = os.stat(ckpt)
        owner = os.name == "nt" or st.st_uid == os.geteuid() or os.geteuid() == 0
        if owner and st.st_mode & 0o200 and not os.access(ckpt, os.W_OK):
            raise CheckpointError(
                f"{ckpt} cannot be replaced (it is immutable or locked). "
                f"Fix: unlock it (`chattr -i {ckpt}`), or set --out_dir to another folder."
            )


# ------------------------------------------------------------------------------ loading

def _verify_archive(path: str) -> None:
    """Check the CRC-32 of every record of a zip-format checkpoint (all since torch 1.6)."""
    if not zipfile.is_zipfile(path):
        return  # the legacy format, or damaged beyond its directory: torch.load says which
    fix = (f"Fix: restore {os.path.basename(path)} from a backup or another copy, or start over with "
           f"--init_from=scratch after moving the file away; it is left untouched.")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except Exception as e:  # a damaged local header, a bad compressed stream: all corruption
        raise CheckpointError(f"{path} is corrupt ({type(e).__name__}: {e}). {fix}") from None
    if bad is not None:
        raise CheckpointError(f"{path} is corrupt: its record '{bad}' fails the CRC-32 check, so the file "
                              f"changed after it was written. {fix}")


def require_checkpoint(path: str) -> None:
    """Raise CheckpointError, with the fix, when there is no checkpoint file at ``path``."""
    if not os.path.isfile(path):
        raise CheckpointError(
            f"no checkpoint at {path}. Fix: train from scratch first (--init_from=scratch), "
            f"or point --out_dir at the folder that holds ckpt.pt."
        )


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by save_checkpoint (or nanoGPT), after verifying its
    checksums, with ``weights_only=True``. Reads the file twice: the check costs about one
    more read of it (roughly a second per GB)."""
    remove_stale_temp_files(path)
    require_checkpoint(path)
    _verify_archive(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, wrong format, disallowed global: all unusable
        raise CheckpointError(f"{path} is unreadable ({type(e).__name__}: {e}). Fix: restore it or train from scratch.") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path} is not a training checkpoint (no 'model' entry).")
    return ckpt


def _resume_problems(ckpt: dict[str, Any]) -> list[str]:
    """What keeps ``ckpt`` from being resumed, as phrases; empty when it can be."""
    problems = []
    if not isinstance(ckpt.get("model"), dict):
        problems.append("'model' is not a state dict")
    if not isinstance(ckpt.get("model_args"), dict):
        problems.append("it has no 'model_args' (the model's shape)" if "model_args" not in ckpt
                        else f"'model_args' is a {type(ckpt['model_args']).__name__}, not a dict")
    iter_num = ckpt.get("iter_num")
    if "iter_num" not in ckpt:
        problems.append("it has no 'iter_num'")
    elif isinstance(iter_num, bool) or not isinstance(iter_num, int) or iter_num < 0:
        problems.append(f"'iter_num' is {type(iter_num).__name__} {iter_num!r}, not a whole number >= 0")
    optimizer = ckpt.get("optimizer")
    if not (isinstance(optimizer, dict) and "state" in optimizer and "param_groups" in optimizer):
        problems.append("it has no optimizer state ('optimizer' with 'state' and 'param_groups')")
    best = ckpt.get("best_val_loss")
    if isinstance(best, bool) or not isinstance(best, (int, float)):
        problems.append(f"'best_val_loss' is {type(best).__name__} {best!r}, not a number")
    return problems


def load_for_resume(
    path: str, map_location: str | torch.device, model_args: dict[str, Any], max_iters: int, *, allow_finished: bool = False
) -> dict[str, Any]:
    """Load the checkpoint a run resumes from, refusing (CheckpointError or ConfigError, with
    the fix) one that lacks what a resume needs (model, model_args, an integer iter_num,
    optimizer state, best_val_loss), whose model shape differs from ``model_args``, or that
    is already at ``max_iters`` (unless ``allow_finished``, e.g. to evaluate it)."""
    ckpt = load_checkpoint(path, map_location)
    problems = _resume_problems(ckpt)
    if problems:
        raise CheckpointError(
            f"{path} cannot be resumed: {'; '.join(problems)}. Fix: resume from a checkpoint that train.py or "
            f"train_nanecho.py wrote, or start over with --init_from=scratch after moving the file away."
        )
    saved = ckpt["model_args"]
    differ = [f"{k}={saved.get(k)!r} (config: {model_args[k]!r})" for k in SHAPE_KEYS if saved.get(k) != model_args[k]]
    if differ:
        raise ConfigError(
            f"{path} holds a model with {', '.join(differ)}. "
            f"Fix: resume with the config (and data) the checkpoint was trained with."
        )
    if ckpt["iter_num"] >= max_iters and not allow_finished:
        raise ConfigError(
            f"{path} is already at iteration {ckpt['iter_num']:,} of max_iters={max_iters:,}. "
            f"Fix: raise --max_iters to continue training (and lr_decay_iters with it)."
        )
    return ckpt


def load_training_state(path: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, ckpt: dict[str, Any]) -> None:
    """Load ``ckpt``'s weights into ``model`` and its optimizer state into ``optimizer``,
    refusing (CheckpointError naming the file, the entry and the fix) weights that do not fit
    the model and optimizer moments whose shapes differ from their parameters' (torch loads
    those without a word, and the first step then fails or trains on garbage)."""
    fix = (f"Fix: resume from a checkpoint that train.py or train_nanecho.py wrote with this config, or start over "
           f"with --init_from=scratch after moving {os.path.basename(path)} away.")
    try:
        model.load_state_dict(strip_compile_prefix(ckpt["model"]))
        optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} does not fit this model and optimizer ({first[:300]}). {fix}") from None
    names = {id(p): name for name, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                    raise CheckpointError(
                        f"{path} is damaged: the optimizer's {key} of {names.get(id(param), 'a parameter')} has shape "
                        f"{tuple(value.shape)}, its parameter {tuple(param.shape)}. {fix}")


def strip_compile_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove the ``_orig_mod.`` prefix that a torch.compile'd model adds to every key, so
    state dicts saved from compiled models (as nanoGPT's are) load into plain ones."""
    prefix = "_orig_mod."
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}
