"""The notebook display, in a real Jupyter kernel: a notebook executed headless with
nbclient shows one display, updated in place, holding the full block at the end, and a
cell ending in ``tracker.close()`` echoes a one-line Report."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from trainprogress.sinks import ConsoleSink, build_sinks  # noqa: E402
from trainprogress.sinks.notebook import default_sink, in_notebook  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

CELL = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from trainprogress import ProgressTracker
tracker = ProgressTracker(300, interval_percent=1)
for i in range(300):
    time.sleep(0.003)
    tracker.step(loss=5.0 - i / 100, lr=1e-3)
tracker.close()
"""


def test_a_notebook_gets_one_display_updated_in_place(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(CELL))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["display_data", "execute_result"], [o.get("text", "") for o in outputs]
    # The cell's last line, tracker.close(), echoes its Report: one short line, not every field.
    assert outputs[1].data["text/plain"] == "Report(final, completed, 100%, iteration 300/300, loss 2.01)"
    plain = outputs[0].data["text/plain"]
    # The final state of the one display: the last full block, then the summary.
    assert plain.startswith("100% (300/300), finished")
    assert "TRAINING PROGRESS: 100% (300/300 iterations)" in plain and "TRAINING COMPLETE" in plain
    assert plain.count("TRAINING PROGRESS") == 1
    assert "<progress value=\"300\" max=\"300\"" in outputs[0].data["text/html"]


def test_outside_a_kernel_the_console_is_kept():
    assert not in_notebook()
    assert isinstance(default_sink(), ConsoleSink)
    assert isinstance(build_sinks()[0], ConsoleSink)
