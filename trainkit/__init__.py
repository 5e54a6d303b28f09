"""trainkit: the shared pieces of this repository's GPT trainers (train.py, train_nanecho.py).

Modules: ``config`` (safe nanoGPT-style configuration), ``model`` (GPT), ``data`` (token
files and batches), ``schedule`` (learning rate), ``checkpoint`` (atomic save, safe load),
``runtime`` (device, dtype, DDP), ``step`` (one optimizer step), ``reporting`` (the progress
tracker from a config) and ``training`` (the setup both trainers share, and their one
checkpoint point).
Import the modules you need; importing the package itself does not import torch.
"""

from trainkit.config import ConfigError

__all__ = ["ConfigError"]
