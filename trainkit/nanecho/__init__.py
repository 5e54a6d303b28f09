"""NanEcho: a GPT with growing connections, trained over curriculum phases on a corpus
tagged with eight persona dimensions (the trainer is train_nanecho.py).

Modules: ``connections`` (masks, growth, parameter counts), ``model`` (the masked GPT),
``curriculum`` (phases, persona dimensions, sampling weights), ``corpus`` (the Echo Self
corpus, JSONL input, tokenization, per-dimension token files), ``data`` (batches mixed
by the curriculum's weights, per-dimension evaluation splits) and ``run_state`` (a run's
phase, connections, evaluations and milestones as the loop advances; its report sections).
"""
