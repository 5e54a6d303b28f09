import sys
from pathlib import Path

import pytest

# The tests import their helpers as a plain module.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def as_a_script(monkeypatch):
    """For a trainer's ``main(argv)`` called in this process, as its script runs: from the
    repository root (config and data paths are relative to it), and with OMP_NUM_THREADS set
    so that the runtime leaves this process's torch thread count alone. A process of its own
    costs seconds of torch imports; the tests that need one (a real exit code, a signal,
    torchrun) start one."""
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
