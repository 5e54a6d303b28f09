"""What a JAX or Keras loop gets today: the plain-loop API with host numbers. A float, a
numpy scalar or a 0-d numpy array (what ``np.asarray(jax_loss)`` or a Keras logs dict
holds) works as the loss, the learning rate and any named value, and reaches the report and
the JSONL log as a float."""

import json

import numpy as np
import pytest

from trainprogress import ProgressTracker
from trainprogress.sinks import build_sinks


@pytest.mark.parametrize("number", [float, np.float32, np.float64, lambda x: np.array(x, dtype=np.float32)],
                         ids=["float", "float32", "float64", "0-d array"])
def test_host_numbers_reach_the_report_and_the_log_as_floats(tmp_path, number):
    jsonl = tmp_path / "p.jsonl"
    tracker = ProgressTracker(20, sinks=build_sinks(console=False, jsonl=jsonl))
    for i in range(20):
        report = tracker.step(loss=number(3.0 - i / 10), lr=number(0.5), val_loss=number(4.0 - i / 20),
                              grad_norm=number(1.5))
    final = tracker.close()
    assert report.loss == pytest.approx(1.1) and report.lr == pytest.approx(0.5)
    assert type(report.metrics["grad_norm"]) is float and report.metrics["grad_norm"] == pytest.approx(1.5)
    assert final.best_val_loss == pytest.approx(3.05)
    last = [r for r in map(json.loads, jsonl.read_text().splitlines()) if r["type"] == "report"][-1]
    assert last["loss"] == pytest.approx(1.1) and last["lr"] == pytest.approx(0.5)
    assert last["metrics"]["val_loss"] == pytest.approx(3.05) and last["metrics"]["grad_norm"] == pytest.approx(1.5)


def test_a_phase_name_stays_a_string():
    tracker = ProgressTracker(2, sinks=[])
    tracker.step(loss=1.0, phase="warmup")
    report = tracker.step(loss=1.0, phase="main")
    tracker.close()
    assert report.metrics["phase"] == "main"
