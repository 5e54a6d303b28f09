"""Prepare the NanEcho dataset: the built-in Echo Self corpus, or your own JSONL file.

    python data/nanecho/prepare.py                                  # built-in corpus, character level
    python data/nanecho/prepare.py --input my.jsonl --tokenizer byte --out_dir data/my_echo

Each JSONL line is {"text": "...", "dimension": "<one of the eight persona dimensions>"}.
Writes {train,val}_{dimension}.bin (uint16 token ids) and meta.json; see trainkit/nanecho/corpus.py.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from anywhere without installing

from trainkit.nanecho.corpus import DEFAULT_SEED, TOKENIZERS, CorpusError, prepare  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="JSONL file of {text, dimension} records (default: the built-in corpus)")
    parser.add_argument("--out_dir", default=str(Path(__file__).resolve().parent), help="where to write (default: this folder)")
    parser.add_argument("--tokenizer", choices=TOKENIZERS, default="char", help="character or UTF-8 byte ids")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the built-in corpus generator")
    parser.add_argument("--val_fraction", type=float, default=0.1, help="share of each dimension's tokens for validation")
    args = parser.parse_args(argv)
    try:
        meta = prepare(args.out_dir, input_path=args.input, tokenizer=args.tokenizer,
                       seed=args.seed, val_fraction=args.val_fraction)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    train = sum(d["train_tokens"] for d in meta["dimensions"].values())
    val = sum(d["val_tokens"] for d in meta["dimensions"].values())
    print(f"wrote {args.out_dir}: {meta['source']}, {meta['tokenizer']} tokens (vocab {meta['vocab_size']}), "
          f"{len(meta['dimensions'])} dimensions, {train:,} train / {val:,} val tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
