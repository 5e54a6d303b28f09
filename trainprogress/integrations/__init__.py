"""One-line integrations with training frameworks.

- ``trainprogress.integrations.hf.TrainProgressCallback``: Hugging Face ``Trainer``
  (``pip install "trainprogress[hf]"``).
- ``trainprogress.integrations.lightning.TrainProgress``: PyTorch Lightning
  (``pip install "trainprogress[lightning]"``).

Each module imports its framework only when imported itself.
"""
