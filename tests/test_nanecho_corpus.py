"""The Echo Self corpus, JSONL input, tokenization, the on-disk layout and mixed batches."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trainkit.data import DataError
from trainkit.nanecho.corpus import CorpusError, Tokenizer, build_corpus, prepare, read_jsonl
from trainkit.nanecho.curriculum import DIMENSIONS
from trainkit.nanecho.data import NanEchoData, load_index

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nanecho")
    meta = prepare(folder)
    return folder, meta


def test_builtin_corpus_is_deterministic_tagged_and_several_hundred_kb():
    docs = build_corpus()
    assert docs == build_corpus()
    assert docs != build_corpus(seed=1)
    size = sum(len(d.text) for d in docs)
    assert 300_000 < size < 900_000
    assert {d.dimension for d in docs} == set(DIMENSIONS)
    texts = [d.text for d in docs]
    assert sum(t.startswith("Hypergraph pattern") for t in texts) >= 8 * 30
    assert sum(t.startswith("User: ") and "\nEcho: " in t for t in texts) >= 8 * 30


def test_prepare_writes_one_dataset_per_dimension_with_matching_counts(dataset):
    folder, meta = dataset
    assert meta["tokenizer"] == "char" and set(meta["dimensions"]) == set(DIMENSIONS)
    assert json.loads((folder / "meta.json").read_text()) == meta
    tok = Tokenizer.from_meta(meta)
    docs = build_corpus()
    for dim, counts in meta["dimensions"].items():
        train = np.fromfile(folder / dim / "train.bin", dtype=np.uint16)
        val = np.fromfile(folder / dim / "val.bin", dtype=np.uint16)
        assert (len(train), len(val)) == (counts["train_tokens"], counts["val_tokens"])
        assert 0.09 < len(val) / (len(train) + len(val)) < 0.11
        text = tok.decode(np.concatenate([train, val]))
        first = next(d.text for d in docs if d.dimension == dim)
        assert text.startswith(first + "\n\n")  # documents in order, separated by a blank line


def test_byte_tokenizer_round_trips_any_text(tmp_path):
    records = [{"text": "Écho — self ∞", "dimension": "cognitive"}, {"text": "plain", "dimension": "dynamic"}]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    meta = prepare(tmp_path / "out", input_path=path, tokenizer="byte")
    assert meta["vocab_size"] == 256 and set(meta["dimensions"]) == {"cognitive", "dynamic"}
    tok = Tokenizer.from_meta(meta)
    ids = np.concatenate([np.fromfile(tmp_path / "out" / "cognitive" / f"{s}.bin", dtype=np.uint16) for s in ("train", "val")])
    assert tok.decode(ids) == "Écho — self ∞\n\n"


@pytest.mark.parametrize("content, words", [
    ('{"text": "a", "dimension": "cognitive"}\n{"text": "b", "dimension": \n', r"mine.jsonl:2: not valid JSON"),
    ('["a list"]\n', r"mine.jsonl:1: expected a JSON object"),
    ('{"dimension": "cognitive"}\n', r'mine.jsonl:1: "text" must be a non-empty string'),
    ('{"text": "  ", "dimension": "cognitive"}\n', r'"text" must be a non-empty string'),
    ('\n{"text": "a", "dimension": "holografic"}\n',
     r"mine.jsonl:2: unknown \"dimension\" 'holografic' \(did you mean 'holographic'\?\)"),
    ("\n\n", "holds no records"),
])
def test_bad_jsonl_records_name_the_line_and_the_problem(tmp_path, content, words):
    path = tmp_path / "mine.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError, match=words):
        read_jsonl(path)


def test_prepare_script_reports_bad_input_and_exits_non_zero(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "data" / "nanecho" / "prepare.py"), "--input",
                             str(tmp_path / "missing.jsonl"), "--out_dir", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "missing.jsonl: no such file" in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_or_corrupt_data_is_a_clear_error(tmp_path, dataset):
    with pytest.raises(DataError, match="holds no prepared NanEcho dataset.*prepare.py --out_dir"):
        load_index(str(tmp_path))
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match="meta.json is unreadable"):
        load_index(str(tmp_path))
    folder, meta = dataset
    copy = tmp_path / "copy"
    prepare(copy)
    with open(copy / "adaptive" / "val.bin", "ab") as f:
        f.write(b"\x00")  # half a token
    with pytest.raises(DataError, match="adaptive/val.bin is corrupt"):
        NanEchoData(str(copy), 32, "cpu", seed=0)
    with pytest.raises(DataError, match="fewer than the .* needed"):
        NanEchoData(str(folder), 100_000, "cpu", seed=0)


@pytest.fixture(scope="module")
def lettered(tmp_path_factory):
    """A dataset whose dimension i is the letter chr(97 + i) repeated: a row's first token
    tells its dimension."""
    folder = tmp_path_factory.mktemp("lettered")
    path = folder / "letters.jsonl"
    path.write_text("".join(json.dumps({"text": chr(97 + i) * 3000, "dimension": d}) + "\n"
                            for i, d in enumerate(DIMENSIONS)), encoding="utf-8")
    prepare(folder / "data", input_path=path)
    return NanEchoData(str(folder / "data"), 16, "cpu", seed=0)


def dimension_counts(data: NanEchoData, x: torch.Tensor) -> dict[str, int]:
    letters = [data.tokenizer.decode([int(row[0])]) for row in x]
    return {d: letters.count(chr(97 + i)) for i, d in enumerate(DIMENSIONS)}


def test_batches_follow_the_sampling_weights(lettered):
    x, y = lettered.get_batch("train", 32, {"recursive": 1.0})  # every other dimension weighs 0
    assert x.shape == y.shape == (32, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert dimension_counts(lettered, x)["recursive"] == 32
    # Focus weights: 3 for two dimensions, 1 for the other six, over 1,280 rows.
    weights = {d: (3.0 if d in ("cognitive", "dynamic") else 1.0) for d in DIMENSIONS}
    counts = dimension_counts(lettered, torch.cat([lettered.get_batch("train", 64, weights)[0] for _ in range(20)]))
    assert sum(counts.values()) == 1280
    for dim, count in counts.items():
        expected = 1280 * weights[dim] / 12
        assert abs(count - expected) < 4 * (expected * (1 - weights[dim] / 12)) ** 0.5  # within 4 sigma


def test_batch_state_round_trips_for_resume(dataset):
    folder, _ = dataset
    a = NanEchoData(str(folder), 16, "cpu", seed=3)
    weights = {d: 1.0 for d in DIMENSIONS}
    a.get_batch("train", 8, weights)
    state = a.state_dict()
    expected = a.get_batch("train", 8, weights)[0]
    b = NanEchoData(str(folder), 16, "cpu", seed=99)
    b.load_state_dict(state)
    assert torch.equal(b.get_batch("train", 8, weights)[0], expected)


def test_iter_split_covers_a_dimensions_val_split_once(dataset):
    folder, meta = dataset
    data = NanEchoData(str(folder), 32, "cpu", seed=0)
    assert sum(n for _, _, n in data.iter_split("val", "holographic", 8)) == meta["dimensions"]["holographic"]["val_tokens"] - 1
