"""The progress plot, checked as an image: its size, a drawn line in every panel, and as many
points per series as the log has values; overlays, markers, and the missing-extra message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import FakeClock, png_size
from logwriter import write_log
from trainprogress import read_log
from trainprogress.reading.plot import ITERS, RUN_COLOURS, SMOOTHED, build_figure, save_plot
from trainprogress.reading.series import build_series

REPO = Path(__file__).resolve().parents[1]


def records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def count(path, key):
    """Reports (final summaries aside) with a value for ``key``, straight from the file."""
    return sum(1 for r in records(path) if r["type"] == "report" and r["kind"] != "final" and r.get(key) is not None)


@pytest.fixture(scope="module")
def log_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "progress.jsonl"
    write_log(path, 300, clock=FakeClock(), interval=2, eval_every=60, phases=[(1, "basics"), (150, "advanced")],
              nan_at={204})  # on a report boundary: a report holds the NaN
    return path


def panels(figure):
    return {ax.get_title(): ax for ax in figure.axes if ax.get_title()}


def test_points_per_series_match_the_log(log_path):
    (run,) = read_log(log_path).runs
    figure = build_figure([run])
    axes = panels(figure)
    loss_lines = {line.get_label(): line for line in axes["Loss"].get_lines()}
    assert any(r.get("loss", 0) is None for r in records(log_path))  # the NaN, written as null, is no point
    assert len(loss_lines["loss"].get_xdata()) == count(log_path, "loss")
    assert len(loss_lines["smoothed loss"].get_xdata()) == count(log_path, "smoothed_loss")
    evals = [r for r in records(log_path) if r["type"] == "report" and "val_loss" in r["metrics"]]
    assert len(loss_lines["validation loss"].get_xdata()) == len({r["metrics"]["val_loss"] for r in evals}) == 5
    for title, key in [("Learning rate", "lr"), ("Speed (pauses excluded)", "iters_per_s"),
                       ("Model FLOPs utilisation", "mfu")]:
        (line,) = axes[title].get_lines()
        assert len(line.get_xdata()) == count(log_path, key), title
    eta_points = axes["ETA convergence: estimated end vs actual end"].get_lines()[0]
    assert len(eta_points.get_xdata()) == count(log_path, "eta_s")
    memory = [line for line in axes["Memory"].get_lines() if line.get_label().startswith("cpu RSS")]
    assert len(memory[0].get_xdata()) == sum(1 for r in records(log_path)
                                             if r["type"] == "report" and r["kind"] != "final" and r["memory"])


def test_the_png_is_1600_by_1000_with_a_line_drawn_in_every_panel(log_path, tmp_path):
    (run,) = read_log(log_path).runs
    figure = build_figure([run])
    png = tmp_path / "run.png"
    figure.savefig(png)
    with Image.open(png) as opened:
        image = np.asarray(opened.convert("RGB")).astype(int)
    assert image.shape == (1000, 1600, 3)
    colours = {"Loss": SMOOTHED, "Learning rate": SMOOTHED, "Speed (pauses excluded)": ITERS,
               "Model FLOPs utilisation": ITERS, "Memory": RUN_COLOURS[0],
               "ETA convergence: estimated end vs actual end": SMOOTHED}
    for title, ax in panels(figure).items():
        box = ax.get_window_extent()
        crop = image[int(1000 - box.y1):int(1000 - box.y0), int(box.x0):int(box.x1)]
        rgb = np.array([int(colours[title][i:i + 2], 16) for i in (1, 3, 5)])
        line_pixels = (np.abs(crop - rgb).max(axis=2) <= 12).sum()
        assert line_pixels > 100, f"{title}: {line_pixels} pixels of its line"
        assert len(np.unique(crop.reshape(-1, 3), axis=0)) > 20, f"{title} looks blank"


def test_phases_pauses_anomalies_and_the_title(log_path):
    (run,) = read_log(log_path).runs
    figure = build_figure([run])
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert labels == ["phase: basics", "phase: advanced", "eval pause", "checkpoint pause", "anomaly"]
    title = figure._suptitle.get_text()
    assert title.startswith(run.name) and "completed at iteration 300/300" in title and "best val loss" in title


def test_a_resume_is_marked_and_gaps_are_left_out_of_the_time_axis(tmp_path):
    path = tmp_path / "progress.jsonl"
    write_log(path, 100, clock=FakeClock(), crash_at=57)
    write_log(path, 100, clock=FakeClock(), start_iter=40)
    (run,) = read_log(path).runs
    figure = build_figure([run], x_axis="iteration")
    loss_ax = panels(figure)["Loss"]
    resume_lines = [line for line in loss_ax.get_lines() if line.get_color() == "black" and line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in resume_lines] == [40]
    smoothed = next(line for line in loss_ax.get_lines() if line.get_label() == "smoothed loss")
    xs = [x for x in smoothed.get_xdata() if x == x]  # NaN: the line's break at the resume
    assert xs == sorted(xs) and len(xs) == len(run.reports)  # redone iterations drawn once
    assert len(smoothed.get_xdata()) == len(xs) + 1
    labels = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    assert "resumed" in labels


@pytest.mark.parametrize("ending", [{"stop_at": 60}, {"crash_at": 61}])
def test_a_run_that_did_not_complete_has_no_actual_end(tmp_path, ending):
    path = tmp_path / "progress.jsonl"
    write_log(path, 100, clock=FakeClock(), **ending)
    (run,) = read_log(path).runs
    figure = build_figure([run])
    eta_ax = panels(figure)["ETA convergence: estimated end vs actual end"]
    assert [line.get_label() for line in eta_ax.get_lines()] == ["estimated end"]
    assert figure._suptitle.get_text().splitlines()[1].startswith(f"{run.status} at iteration 6")


def test_several_files_overlay_with_a_legend_by_run_name(tmp_path):
    paths = []
    for name, total in (("small", 100), ("large", 200)):
        (tmp_path / name).mkdir()
        paths.append(tmp_path / name / "progress.jsonl")
        write_log(paths[-1], total, clock=FakeClock())
    runs = [read_log(path).runs[0] for path in paths]
    figure = build_figure(runs)
    loss_ax = panels(figure)["Loss"]
    labels = [text.get_text() for text in loss_ax.get_legend().get_texts()]
    assert "small: smoothed loss" in labels and "large: smoothed loss" in labels
    assert loss_ax.get_xlabel() == "" and panels(figure)["Model FLOPs utilisation"].get_xlabel() == "iteration"
    assert figure._suptitle.get_text() == "2 runs: small vs large"


def test_save_plot_writes_atomically_and_leaves_pyplot_alone(log_path, tmp_path):
    # pyplot holds matplotlib's global state (the backend, the current figure): it must
    # never be imported, let alone switched.
    script = (
        "import sys\n"
        "from trainprogress import read_log\n"
        "from trainprogress.reading.plot import save_plot\n"
        f"save_plot(read_log({str(log_path)!r}).runs, {str(tmp_path / 'out' / 'run.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, timeout=300)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["run.png"]
    assert png_size(tmp_path / "out" / "run.png") == (1600, 1000)


def test_without_matplotlib_the_command_names_the_extra(log_path, tmp_path):
    script = (
        "import sys\n"
        "sys.modules['matplotlib'] = None  # as if it were not installed\n"
        "from trainprogress.reading.cli import main\n"
        f"sys.exit(main(['plot', {str(log_path)!r}, '-o', {str(tmp_path / 'x.png')!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 1
    assert "pip install 'trainprogress[plot]'" in result.stderr and "matplotlib" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_no_runs_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no runs to plot"):
        save_plot([], tmp_path / "x.png")


def test_a_long_log_is_drawn_from_every_kth_report_and_its_last(tmp_path):
    path = tmp_path / "progress.jsonl"
    write_log(path, 1000, clock=FakeClock(), interval=0.25, eval_every=250)  # 400 reports
    (run,) = read_log(path).runs
    series = build_series(run, x_axis="iteration", max_points=90)
    assert series.report_stride == 5
    assert series.loss.x == [float(r["iteration"]) for r in run.reports[::5]] + [1000.0]
    assert len(series.val_loss.x) == 4  # every evaluation still drawn, each at the next drawn report
    assert build_series(run, x_axis="iteration").report_stride == 1

