"""The shipped corpus, its preparation, and trainkit.data's checks and batches on real files."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trainkit.data import DataError, TokenData, ensure_prepared, load_meta, open_tokens

REPO = Path(__file__).resolve().parents[1]
CORPUS_DIR = REPO / "data" / "shakespeare_char"


def test_shipped_corpus_is_the_pinned_one():
    raw = (CORPUS_DIR / "input.txt").read_bytes()
    text = raw.decode("utf-8")
    assert len(text) == 1_036_496
    assert len(set(text)) == 76
    assert hashlib.sha256(raw).hexdigest().startswith("35ebb88649c85d21")
    assert text.startswith("HAMLET, PRINCE OF DENMARK") and text.endswith("\n") and not text.endswith("\n\n")
    assert "Gutenberg" not in text  # no licence block in the texts


def prepare_copy(tmp_path: Path) -> Path:
    """The dataset folder's shipped files copied to tmp_path, prepared there by its own script."""
    folder = tmp_path / "shakespeare_char"
    folder.mkdir()
    for name in ("input.txt", "prepare.py"):
        shutil.copy(CORPUS_DIR / name, folder / name)
    result = subprocess.run([sys.executable, str(folder / "prepare.py")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "1,036,496 characters, vocabulary of 76: train 932,846 tokens, val 103,650 tokens" in result.stdout
    return folder


def test_prepare_writes_the_splits_and_vocabulary(tmp_path):
    folder = prepare_copy(tmp_path)
    text = (folder / "input.txt").read_text(encoding="utf-8")
    meta = load_meta(str(folder))
    assert meta["vocab_size"] == 76
    assert "".join(meta["itos"][i] for i in range(76)) == "".join(sorted(set(text)))
    train = np.fromfile(folder / "train.bin", dtype=np.uint16)
    val = np.fromfile(folder / "val.bin", dtype=np.uint16)
    assert (len(train), len(val)) == (932_846, 103_650)  # first 90%, last 10%
    decoded = "".join(meta["itos"][int(i)] for i in np.concatenate([train, val]))
    assert decoded == text
    assert not list(folder.glob("*.tmp"))


def test_prepare_refuses_a_changed_corpus(tmp_path):
    folder = tmp_path / "shakespeare_char"
    folder.mkdir()
    shutil.copy(CORPUS_DIR / "prepare.py", folder / "prepare.py")
    (folder / "input.txt").write_text((CORPUS_DIR / "input.txt").read_text(encoding="utf-8").replace("Hamlet", "Omelet"))
    result = subprocess.run([sys.executable, str(folder / "prepare.py")], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "is not the pinned corpus" in result.stderr and "Fix:" in result.stderr
    assert not (folder / "train.bin").exists()


def test_prepare_accepts_crlf_line_endings(tmp_path):
    folder = tmp_path / "shakespeare_char"
    folder.mkdir()
    shutil.copy(CORPUS_DIR / "prepare.py", folder / "prepare.py")
    (folder / "input.txt").write_bytes((CORPUS_DIR / "input.txt").read_bytes().replace(b"\n", b"\r\n"))
    result = subprocess.run([sys.executable, str(folder / "prepare.py")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert os.path.getsize(folder / "val.bin") == 2 * 103_650


def test_ensure_prepared_runs_the_datasets_script(tmp_path):
    folder = tmp_path / "shakespeare_char"
    folder.mkdir()
    for name in ("input.txt", "prepare.py"):
        shutil.copy(CORPUS_DIR / name, folder / name)
    ensure_prepared(str(folder))
    assert (folder / "train.bin").is_file() and (folder / "val.bin").is_file() and (folder / "meta.pkl").is_file()


def test_ensure_prepared_without_a_script_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"train\.bin not found and there is no .*prepare\.py.*Fix: check --dataset"):
        ensure_prepared(str(tmp_path))


# ----------------------------------------------------------------------------- checks on token files

def write_tokens(path: Path, ids) -> str:
    np.asarray(ids, dtype=np.uint16).tofile(path)
    return str(path)


def test_odd_sized_file_is_corrupt(tmp_path):
    path = tmp_path / "train.bin"
    path.write_bytes(b"\x01\x00\x02")
    with pytest.raises(DataError, match=r"train\.bin is corrupt: 3 bytes is not a whole number of uint16 tokens\. Fix"):
        open_tokens(str(path), vocab_size=76, min_tokens=1)


def test_token_outside_vocabulary_is_corrupt(tmp_path):
    path = write_tokens(tmp_path / "val.bin", [1, 2, 80, 3])
    with pytest.raises(DataError, match=r"val\.bin is corrupt: token id 80 is outside the vocabulary of 76"):
        open_tokens(path, vocab_size=76, min_tokens=1)


def test_too_small_file_names_block_size(tmp_path):
    path = write_tokens(tmp_path / "val.bin", range(10))
    with pytest.raises(DataError, match=r"val\.bin holds 10 tokens, fewer than the 65 needed \(block_size \+ 1\)\. Fix: lower --block_size"):
        open_tokens(path, vocab_size=76, min_tokens=65)


def test_unreadable_meta_names_the_file(tmp_path):
    (tmp_path / "meta.pkl").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"meta\.pkl is unreadable .*Fix: delete it and re-run"):
        load_meta(str(tmp_path))
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps({"vocab_size": "76"}))
    with pytest.raises(DataError, match="no positive integer 'vocab_size'"):
        load_meta(str(tmp_path))


# ----------------------------------------------------------------------------- batches

@pytest.fixture
def small_dataset(tmp_path) -> Path:
    write_tokens(tmp_path / "train.bin", np.arange(1000) % 50)
    write_tokens(tmp_path / "val.bin", np.arange(103) % 50)
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps({"vocab_size": 50, "itos": {}, "stoi": {}}))
    return tmp_path


def test_missing_meta_is_an_error_not_the_gpt2_vocabulary(small_dataset):
    """Character data without its meta.pkl used to train silently with 50,257 tokens."""
    (small_dataset / "prepare.py").write_text("")
    (small_dataset / "meta.pkl").unlink()
    with pytest.raises(DataError) as err:
        TokenData(str(small_dataset), block_size=8, device="cpu", seed=0)
    message = str(err.value)
    assert f"{small_dataset / 'meta.pkl'} not found" in message
    assert f"Fix: re-run {small_dataset / 'prepare.py'}" in message and "{'vocab_size': 50257}" in message


def test_batches_are_shifted_windows(small_dataset):
    data = TokenData(str(small_dataset), block_size=8, device="cpu", seed=0)
    x, y = data.get_batch("train", 5)
    assert x.shape == y.shape == (5, 8) and x.dtype == torch.int64
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal((x[:, 1:] - x[:, :-1]) % 50, torch.ones(5, 7, dtype=torch.int64))  # consecutive tokens


def test_generator_state_makes_batches_reproducible(small_dataset):
    data = TokenData(str(small_dataset), block_size=8, device="cpu", seed=0)
    data.get_batch("train", 4)
    state = data.state_dict()
    expected = [data.get_batch("train", 4)[0] for _ in range(3)]
    other = TokenData(str(small_dataset), block_size=8, device="cpu", seed=123)
    other.load_state_dict(state)
    assert all(torch.equal(a, other.get_batch("train", 4)[0]) for a in expected)


def test_iter_split_counts_every_target_once(small_dataset):
    data = TokenData(str(small_dataset), block_size=8, device="cpu", seed=0)
    targets = []
    total = 0
    for x, y, n in data.iter_split("val", batch_size=3):
        kept = y[y != -1]
        assert kept.numel() == n
        targets.extend(kept.tolist())
        total += n
        assert (x != -1).all()
    val = (np.arange(103) % 50).tolist()
    assert total == 102 and targets == val[1:]


class _WritesAFile:
    """Pickles as a call of ``func(*args)``: what a crafted meta.pkl runs code with."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("payload", ["system", "exec", "open"])
def test_a_crafted_meta_pkl_is_refused_and_its_payload_never_runs(tmp_path, payload):
    victim = tmp_path / "pwned"
    call = {"system": (os.system, f"touch {victim}"), "exec": (exec, f"open({str(victim)!r}, 'w').close()"),
            "open": (open, str(victim), "w")}[payload]
    meta = {"vocab_size": 65, "stoi": {"a": 0}, "itos": _WritesAFile(*call)}
    (tmp_path / "meta.pkl").write_bytes(pickle.dumps(meta))
    with pytest.raises(DataError, match=r"meta\.pkl is unreadable \(UnpicklingError: it refers to \w+\.\w+, and only "
                                        r"plain data .* nothing in it was run\)\. Fix: delete it and re-run"):
        load_meta(str(tmp_path))
    assert not victim.exists()


def test_plain_vocabularies_read_in_every_pickle_protocol(tmp_path):
    meta = {"vocab_size": 3, "stoi": {"a": 0, "b": 1, "\n": 2}, "itos": {0: "a", 1: "b", 2: "\n"}, "chars": {"a", "b"},
            "extra": [1.5, None, True, (1, 2), -7, frozenset({"c"})]}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        (tmp_path / "meta.pkl").write_bytes(pickle.dumps(meta, protocol=protocol))
        assert load_meta(str(tmp_path)) == meta, protocol
    # prepare.py's own format: test_prepare_writes_the_splits_and_vocabulary reads it with load_meta.
