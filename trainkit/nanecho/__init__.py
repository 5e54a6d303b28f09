"""NanEcho: a GPT with growing connections, trained over curriculum phases on a corpus
tagged with eight persona dimensions (the trainer is train_nanecho.py).

Modules: ``connections`` (masks, growth, parameter counts), ``model`` (the masked GPT),
``curriculum`` (phases, persona dimensions, sampling weights), ``corpus`` (the Echo Self
corpus, JSONL input, tokenization, per-dimension token files) and ``data`` (batches mixed
by the curriculum's weights, per-dimension evaluation splits).
"""
