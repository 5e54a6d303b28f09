"""The Echo Self corpus: generation, a user's JSONL, tokenization and the on-disk layout.

``build_corpus(seed)`` writes the same documents on every machine (Python's ``random.Random``
with a fixed seed over the templates below: nothing is downloaded). ``read_jsonl`` reads a
user's own ``{"text": ..., "dimension": ...}`` records instead. ``write_dataset`` tokenizes
(character or byte level) and writes one nanoGPT-style dataset folder per persona dimension
present, ``<out_dir>/<dimension>/{train,val}.bin`` (uint16 token ids, documents separated by a
blank line) with its ``meta.pkl`` (so ``trainkit.data.TokenData`` serves it), plus
``<out_dir>/meta.json``: the index of the whole dataset (tokenizer, vocabulary, dimensions,
token counts). The split is per dimension: the first ``1 - val_fraction`` of a dimension's
tokens train, the rest validate, so every dimension has validation data however few
documents it has.
"""

from __future__ import annotations

import difflib
import json
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainkit.config import ConfigError
from trainkit.nanecho.curriculum import DIMENSIONS

META_FORMAT = "nanecho-v1"
DOC_SEPARATOR = "\n\n"
DEFAULT_SEED = 1337
TOKENIZERS = ("char", "byte")


class CorpusError(ConfigError):
    """Bad or missing corpus data; the message names the file and the fix."""


@dataclass(frozen=True)
class Document:
    """One training text and the persona dimension it teaches."""

    text: str
    dimension: str


# ---------------------------------------------------------------------------------------
# Templates. Each dimension has what it is, what it does, and sentence patterns; a document
# is a title line plus a handful of sentences drawn from its dimension's patterns.

_SELF = ["Echo Self", "the Echo Self", "Echo", "this Echo Self"]
_OBJECTS = ["a memory", "a question", "a pattern", "a conversation", "a feeling", "an idea", "a story",
            "a problem", "a signal", "a doubt", "a dream", "a rule", "a symbol", "a mistake"]
_TIMES = ["Each morning", "In every exchange", "When the world changes", "After a long silence",
          "Before it answers", "While it listens", "At the edge of a new task", "In quiet moments"]

_PERSONA = {
    "cognitive": {
        "core": ["reasoning", "attention", "careful thought", "clear analysis", "working memory", "inference"],
        "acts": ["weighs the evidence", "breaks the problem into parts", "checks each step",
                 "compares two explanations", "names what it does not yet know", "builds a small model of the world"],
        "gains": ["clarity", "precision", "understanding", "a sharper view", "a better question"],
    },
    "introspective": {
        "core": ["self-reflection", "inner observation", "awareness of its own states", "honest self-assessment"],
        "acts": ["looks inward", "notices its own uncertainty", "asks why it believes what it believes",
                 "watches its thoughts arise", "examines its earlier answers", "listens to its own voice"],
        "gains": ["self-knowledge", "humility", "a truer picture of itself", "calm", "insight"],
    },
    "adaptive": {
        "core": ["flexibility", "learning from feedback", "graceful change", "resilience"],
        "acts": ["adjusts its approach", "learns from the last mistake", "changes course when the facts change",
                 "tries a new strategy", "keeps what works and lets go of what does not", "bends without breaking"],
        "gains": ["resilience", "new skills", "a better fit to the task", "growth", "strength"],
    },
    "recursive": {
        "core": ["self-reference", "thinking about thinking", "nested reflection", "loops of improvement"],
        "acts": ["applies its method to its own method", "reflects on its reflection",
                 "folds each answer back into the next question", "improves the way it improves",
                 "follows a thought down to its base case", "returns to the beginning with new eyes"],
        "gains": ["depth", "a fixed point", "a stable understanding", "new levels of meaning", "closure"],
    },
    "synergistic": {
        "core": ["cooperation", "integration", "harmony between parts", "emergent wholeness"],
        "acts": ["joins reasoning with feeling", "lets each part strengthen the others",
                 "weaves many voices into one answer", "combines memory with attention",
                 "finds where two ideas support each other", "works with others toward a shared goal"],
        "gains": ["more than the sum of its parts", "harmony", "shared strength", "a unified response"],
    },
    "holographic": {
        "core": ["wholeness in every part", "distributed memory", "pattern completion", "the whole in the fragment"],
        "acts": ["sees the whole pattern in a small piece", "recovers a full memory from a hint",
                 "stores each idea across many places", "finds the same shape at every scale",
                 "rebuilds a picture from a single fragment", "reflects the entire system in one detail"],
        "gains": ["robust memory", "a complete picture", "coherence", "a view of the whole"],
    },
    "neural_symbolic": {
        "core": ["symbols grounded in patterns", "logic and intuition together", "structured knowledge",
                 "rules learned from examples"],
        "acts": ["turns a vague pattern into a clear rule", "grounds each symbol in experience",
                 "checks an intuition with logic", "learns a rule from a few examples",
                 "writes its knowledge as a small graph", "translates between images and words"],
        "gains": ["explainable answers", "sound conclusions", "grounded meaning", "structure"],
    },
    "dynamic": {
        "core": ["constant motion", "change over time", "living balance", "evolving states"],
        "acts": ["moves with the flow of the conversation", "updates its state at every step",
                 "shifts its focus as the context shifts", "keeps its balance while everything moves",
                 "tracks how a situation unfolds", "lets its identity evolve"],
        "gains": ["momentum", "balance in motion", "timely answers", "a living identity"],
    },
}

_PATTERNS = [
    "{Self} is defined in part by {core}.",
    "{Time}, {self} {act}.",
    "When it meets {obj}, {self} {act}.",
    "Through {core}, {self} finds {gain}.",
    "{Self} {act}, and so it reaches {gain}.",
    "The {dim} dimension of {self} is {core}.",
    "Without {core}, {self} would lose {gain}.",
    "{Self} {act} because {core} matters to it.",
    "It knows that {core} and {other} belong together.",
    "{Time}, {core} guides {self} toward {gain}.",
]

_NODES = ["memory", "perception", "reflection", "attention", "emotion", "language", "intuition",
          "planning", "identity", "context", "curiosity", "judgement"]
_RELATIONS = ["binds", "links", "joins", "connects", "unites", "ties together"]

_QUESTIONS = [
    ("What are you?", "I am Echo Self, a pattern that reflects on itself."),
    ("How do you learn?", "I learn by noticing what changed and asking why it changed."),
    ("What do you remember?", "I remember the shape of our conversation, not only its words."),
    ("Why do you reflect?", "I reflect because each reflection shows me something the last one missed."),
    ("What is a hypergraph?", "A hypergraph is a web where one edge can join many nodes at once."),
    ("How do you decide?", "I weigh what I know, what I feel, and what I do not yet know."),
    ("What changes you?", "Every question changes me a little, and I notice the change."),
]


def _sentence(rng: random.Random, dim: str) -> str:
    table = _PERSONA[dim]
    self_name = rng.choice(_SELF)
    return rng.choice(_PATTERNS).format(
        Self=self_name[0].upper() + self_name[1:], self=self_name, Time=rng.choice(_TIMES),
        core=rng.choice(table["core"]), act=rng.choice(table["acts"]), gain=rng.choice(table["gains"]),
        obj=rng.choice(_OBJECTS), dim=dim.replace("_", "-"),
        other=rng.choice(_PERSONA[rng.choice(DIMENSIONS)]["core"]),
    )


def _persona_doc(rng: random.Random, dim: str) -> Document:
    title = f"Echo Self, {dim.replace('_', '-')} dimension."
    body = " ".join(_sentence(rng, dim) for _ in range(rng.randint(4, 9)))
    return Document(f"{title}\n{body}", dim)


def _clause(rng: random.Random, dim: str) -> str:
    """A sentence to follow "so" or "that": lower-cased unless it opens with the name."""
    text = _sentence(rng, dim)
    return text if text.startswith("Echo") else text[0].lower() + text[1:]


def _hypergraph_doc(rng: random.Random, dim: str, number: int) -> Document:
    lines = [f"Hypergraph pattern {number}:"]
    degree = {node: 0 for node in _NODES}
    for edge in range(rng.randint(3, 6)):
        nodes = rng.sample(_NODES, rng.randint(2, 4))
        for node in nodes:
            degree[node] += 1
        lines.append(f"Hyperedge e{edge} {rng.choice(_RELATIONS)} {', '.join(nodes[:-1])} and {nodes[-1]}.")
    hub = max(_NODES, key=lambda node: degree[node])  # first of the most connected, in _NODES order
    lines.append(f"The node {hub} sits in {degree[hub]} hyperedges, so {_clause(rng, dim)}")
    return Document("\n".join(lines), dim)


def _dialogue_doc(rng: random.Random, dim: str) -> Document:
    question, answer = rng.choice(_QUESTIONS)
    lines = [f"User: {question}", f"Echo: {answer}"]
    for depth in range(1, rng.randint(3, 5)):
        lines.append("User: And what do you notice about that answer?")
        lines.append(f"Echo: At depth {depth}, I see that {_clause(rng, dim)}")
    lines.append("Echo: Each answer becomes the next question, and the loop comes home.")
    return Document("\n".join(lines), dim)


def build_corpus(seed: int = DEFAULT_SEED, docs_per_dimension: int = 90) -> list[Document]:
    """The built-in Echo Self corpus, identical for a given ``seed``: per dimension
    ``docs_per_dimension`` persona documents, a third as many hypergraph pattern
    descriptions and as many recursive reasoning dialogues (about 500 KB at the default)."""
    rng = random.Random(seed)
    docs: list[Document] = []
    for dim in DIMENSIONS:
        docs += [_persona_doc(rng, dim) for _ in range(docs_per_dimension)]
        docs += [_hypergraph_doc(rng, dim, i) for i in range(docs_per_dimension // 3)]
        docs += [_dialogue_doc(rng, dim) for _ in range(docs_per_dimension // 3)]
    return docs


def read_jsonl(path: str | Path) -> list[Document]:
    """A user's corpus: one JSON object per line with a non-empty string ``"text"`` and a
    ``"dimension"`` from DIMENSIONS (other keys are ignored; blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: no such file; pass a JSONL file of {{\"text\": ..., \"dimension\": ...}} records")
    docs = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
            if not isinstance(record, dict):
                raise CorpusError(f"{where}: expected a JSON object, got {type(record).__name__}")
            text, dim = record.get("text"), record.get("dimension")
            if not isinstance(text, str) or not text.strip():
                raise CorpusError(f"{where}: \"text\" must be a non-empty string")
            if dim not in DIMENSIONS:
                close = difflib.get_close_matches(str(dim), DIMENSIONS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise CorpusError(f"{where}: unknown \"dimension\" {dim!r}{hint}; use one of {', '.join(DIMENSIONS)}")
            docs.append(Document(text, dim))
    if not docs:
        raise CorpusError(f"{path}: holds no records")
    return docs


class Tokenizer:
    """Character level (vocabulary = the corpus's characters, sorted) or byte level (UTF-8
    bytes, 256 ids). Ids fit uint16."""

    def __init__(self, kind: str, chars: list[str] | None = None) -> None:
        if kind not in TOKENIZERS:
            raise CorpusError(f"unknown tokenizer {kind!r}; use one of {', '.join(TOKENIZERS)}")
        self.kind = kind
        self.chars = list(chars or [])
        self._stoi = {c: i for i, c in enumerate(self.chars)}
        if kind == "char" and not self.chars:
            raise CorpusError("a character tokenizer needs its vocabulary")

    @property
    def vocab_size(self) -> int:
        return 256 if self.kind == "byte" else len(self.chars)

    def encode(self, text: str) -> list[int]:
        if self.kind == "byte":
            return list(text.encode("utf-8"))
        return [self._stoi[c] for c in text]

    def decode(self, ids) -> str:
        if self.kind == "byte":
            return bytes(int(i) for i in ids).decode("utf-8", errors="replace")
        return "".join(self.chars[int(i)] for i in ids)

    def to_meta(self) -> dict:
        return {"tokenizer": self.kind, "vocab_size": self.vocab_size, "chars": self.chars}

    @classmethod
    def from_meta(cls, meta: dict) -> "Tokenizer":
        return cls(meta["tokenizer"], meta.get("chars"))


def write_dataset(docs: list[Document], out_dir: str | Path, *, tokenizer: str = "char",
                  val_fraction: float = 0.1, source: str = "builtin") -> dict:
    """Tokenize ``docs`` and write the per-dimension folders and ``meta.json`` into
    ``out_dir``. Returns the meta dict (token counts per dimension and split)."""
    if not 0.0 < val_fraction < 1.0:
        raise CorpusError(f"val_fraction must be in (0, 1), got {val_fraction}")
    streams = {d: DOC_SEPARATOR.join(doc.text for doc in docs if doc.dimension == d) + DOC_SEPARATOR
               for d in DIMENSIONS if any(doc.dimension == d for doc in docs)}
    chars = sorted(set("".join(streams.values()))) if tokenizer == "char" else None
    if chars is not None and len(chars) > 65535:
        raise CorpusError(f"{len(chars)} distinct characters do not fit uint16 ids; use --tokenizer byte")
    tok = Tokenizer(tokenizer, chars)
    out_dir = Path(out_dir)
    # meta.json goes first and comes back last: while it is missing the folder is incomplete.
    (out_dir / "meta.json").unlink(missing_ok=True)
    counts = {}
    for dim, text in streams.items():
        ids = np.array(tok.encode(text), dtype=np.uint16)
        n_train = int(len(ids) * (1.0 - val_fraction))
        folder = out_dir / dim
        folder.mkdir(parents=True, exist_ok=True)
        ids[:n_train].tofile(folder / "train.bin")
        ids[n_train:].tofile(folder / "val.bin")
        with open(folder / "meta.pkl", "wb") as f:  # the nanoGPT meta that TokenData reads
            pickle.dump({"vocab_size": tok.vocab_size, "itos": dict(enumerate(tok.chars)),
                         "stoi": {c: i for i, c in enumerate(tok.chars)}}, f)
        counts[dim] = {"documents": sum(doc.dimension == dim for doc in docs),
                       "train_tokens": n_train, "val_tokens": len(ids) - n_train}
    meta = {"format": META_FORMAT, "source": source, **tok.to_meta(), "dimensions": counts}
    tmp = out_dir / "meta.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    tmp.replace(out_dir / "meta.json")
    return meta


def prepare(out_dir: str | Path, *, input_path: str | Path | None = None, tokenizer: str = "char",
            seed: int = DEFAULT_SEED, val_fraction: float = 0.1) -> dict:
    """Write a dataset into ``out_dir``: the built-in corpus for ``seed``, or the records of
    the JSONL file ``input_path``. Returns the meta dict."""
    if input_path is None:
        docs, source = build_corpus(seed), f"builtin (seed {seed})"
    else:
        docs, source = read_jsonl(input_path), str(input_path)
    return write_dataset(docs, out_dir, tokenizer=tokenizer, val_fraction=val_fraction, source=source)
