import subprocess
import sys
from pathlib import Path

import pytest

# The tests import their helpers as a plain module.
sys.path.insert(0, str(Path(__file__).parent))

from helpers import NANECHO_TINY, TINY_TRAIN, Webhook, run_script  # noqa: E402


@pytest.fixture
def as_a_script(monkeypatch):
    """For a trainer's ``main(argv)`` called in this process, as run_script runs its script:
    from the repository root (config and data paths are relative to it), on one torch thread
    (OMP_NUM_THREADS=1, so the runtime leaves the count alone; two threads on a shared 2-core
    machine only contend). A process of its own costs seconds of torch imports; the tests that
    need one (a real exit code, a signal to a process, torchrun) start one."""
    import torch

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trainer_webhook():
    """The notification endpoint of the shared train.py run below."""
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture(scope="session")
def tiny_train_run(tmp_path_factory, trainer_webhook) -> tuple[Path, subprocess.CompletedProcess]:
    """One real train.py process of 40 tiny steps (TINY_TRAIN: a report every 10%, evaluations
    at 20 and 40) with every sink on, W&B offline: its out_dir and its result. Shared by the
    tests that only read what such a run prints and writes (test_train_e2e, test_trainer_sinks);
    starting it once saves a torch-importing process per module."""
    out = tmp_path_factory.mktemp("tiny_train_run")
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(out), "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
           "TRAINPROGRESS_SLACK_WEBHOOK_URL": trainer_webhook.url}
    result = run_script("train.py", *TINY_TRAIN, "--max_iters=40", f"--out_dir={out}", "--jsonl_log=True",
                        "--tensorboard_log=True", "--wandb_log=True", "--wandb_run_name=tiny", "--progress_bar=True",
                        "--notify=True", env=env)
    return out, result


@pytest.fixture(scope="session")
def nanecho_data_dir(tmp_path_factory) -> Path:
    """A NanEcho dataset prepared from the shipped corpus."""
    from trainkit.nanecho.corpus import prepare

    folder = tmp_path_factory.mktemp("nanecho_data")
    prepare(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_nanecho_run(tmp_path_factory, nanecho_data_dir) -> tuple[Path, subprocess.CompletedProcess]:
    """One real train_nanecho.py process of 40 tiny steps (NANECHO_TINY: connections grow every
    10 steps, evaluations every 20, a report every 10%) with the JSONL log, the picture and
    TensorBoard: its out_dir and its result. Shared by the tests that only read its outputs
    (test_nanecho_train, test_trainer_sinks, test_trainer_plot)."""
    out = tmp_path_factory.mktemp("tiny_nanecho_run")
    result = run_script("train_nanecho.py", *NANECHO_TINY, "--max_iters", "40", "--data_dir", str(nanecho_data_dir),
                        "--out_dir", str(out), "--tensorboard_log", "True")
    return out, result
