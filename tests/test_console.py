"""The console block, rendered from a tracker on a fake clock, against exact text."""

import io

import pytest

from helpers import FakeClock

from trainprogress import ConsoleSink, ProgressTracker
from trainprogress.report import MemoryStats, Report, Section
from trainprogress.sinks.console import render_progress

GIB = 1024**3


def reference_report(**changes):
    fields = dict(
        kind="scheduled", iteration=150_000, total_iters=600_000, percent=25.0,
        elapsed_s=8820.0, paused_s=0.0, eta_s=26505.0, iters_per_s=17.23, ms_per_iter=58.03,
        loss=1.234567, lr=6e-4, mfu=0.4215, tokens_processed=1_536_000_000,
        memory=(MemoryStats(device="cuda", used_bytes=int(8.42 * GIB), total_bytes=24 * GIB),),
    )
    fields.update(changes)
    return Report(**fields)


def test_reference_block_exactly():
    assert "\n".join(render_progress(reference_report())) == "\n".join([
        "=" * 80,
        "🔄 TRAINING PROGRESS: 25% (150,000/600,000 iterations)",
        "=" * 80,
        "📊 Metrics:",
        "   • Loss: 1.234567",
        "   • Learning Rate: 6.00e-04",
        "   • MFU: 42.15%",
        "⏱️ Time:",
        "   • Elapsed: 2.45 hours",
        "   • ETA: 07:21:45",
        "   • Speed: 17.23 iter/s",
        "   • Time per iter: 58.03ms",
        "💾 Memory:",
        "   • GPU Memory: 8.42GB / 24.00GB",
        "   • Tokens processed: 1,536,000,000",
        "=" * 80,
    ])


def test_ascii_mode_has_no_emoji_or_other_non_ascii():
    out = io.StringIO()
    sink = ConsoleSink(out, ascii=True)
    sink.report(reference_report(metrics={"note": "8 × 4"}))
    text = out.getvalue()
    text.encode("ascii")  # raises if anything non-ASCII is left
    assert "TRAINING PROGRESS: 25% (150,000/600,000 iterations)" in text.splitlines()[1]
    assert "   - Loss: 1.234567" in text
    assert "Time:" in text.splitlines() and "Memory:" in text.splitlines()
    assert "8 x 4" in text


def test_stream_without_utf8_gets_ascii_automatically():
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    ConsoleSink(stream).report(reference_report())
    stream.flush()
    assert b"TRAINING PROGRESS: 25%" in raw.getvalue()


def test_tracker_to_console_with_sections_pauses_and_final_summary():
    clock = FakeClock()
    out = io.StringIO()
    tracker = ProgressTracker(
        200, interval_percent=50, tokens_per_iter=1000, flops_per_iter=1e12, peak_flops=1e14,
        sinks=[ConsoleSink(out)], clock=clock, is_master=True,
    )
    tracker.set_section("🧠 Model State", lambda: {"Active params": 42_350_000, "Total params": 77_000_000})
    for i in range(200):
        clock.advance(0.05)
        tracker.step(loss=2.0 - i / 200, lr=6e-4, val_loss=1.5 if i == 150 else None)
        if i == 99:
            with tracker.pause("eval"):
                clock.advance(10.0)
    tracker.close()
    blocks = out.getvalue()
    assert blocks.count("🔄 TRAINING PROGRESS:") == 2
    assert "🔄 TRAINING PROGRESS: 50% (100/200 iterations)" in blocks
    assert "   • Speed: 20.00 iter/s" in blocks  # the 10 s eval is not training time
    assert "   • MFU: 20.00%" in blocks  # 1e12 FLOP x 20 iter/s / 1e14 FLOP/s
    assert "   • Throughput: 20,000 tokens/s" in blocks
    assert "   • Active params: 42,350,000" in blocks
    assert "   • Best Validation Loss: 1.500000" in blocks
    final = blocks[blocks.index("✅ TRAINING COMPLETE!"):]
    assert "   • Iterations: 200/200" in final
    assert "   • Final loss: 1.005000" in final
    assert "   • Best validation loss: 1.500000" in final
    assert "   • Total time: 20.0s" in final
    assert "   • Average speed: 20.00 iter/s" in final
    assert "   • Tokens processed: 200,000" in final


def test_sections_join_the_block_they_name():
    report = reference_report(
        metrics={"grad_norm": 0.5},
        sections=(
            Section("Connections", (("Connection Ratio", "55.0%"), ("Phase", "hypergraph_patterns - Learning hypergraph patterns")), into="metrics"),
            Section("Batch", (("Batch size", "8 × 4 accumulation"), ("Tokens/batch", 8192)), into="memory"),
            Section("🧠 Model State", (("Active params", 42_350_000),)),
            Section("Clock", (("Wall", "12:00"),), into="time"),
        ),
    )
    lines = render_progress(report)
    metrics = lines[lines.index("📊 Metrics:") + 1: lines.index("⏱️ Time:")]
    assert metrics == [
        "   • Loss: 1.234567",
        "   • Learning Rate: 6.00e-04",
        "   • MFU: 42.15%",
        "   • Grad Norm: 0.5",
        "   • Connection Ratio: 55.0%",
        "   • Phase: hypergraph_patterns - Learning hypergraph patterns",
    ]
    time_lines = lines[lines.index("⏱️ Time:") + 1: lines.index("💾 Memory:")]
    assert time_lines[-1] == "   • Wall: 12:00"
    memory = lines[lines.index("💾 Memory:") + 1: lines.index("🧠 Model State:")]
    assert memory[-2:] == ["   • Batch size: 8 × 4 accumulation", "   • Tokens/batch: 8,192"]
    assert lines[lines.index("🧠 Model State:") + 1] == "   • Active params: 42,350,000"
    assert lines.count("📊 Metrics:") == 1 and "Connections:" not in lines and "Batch:" not in lines


def test_a_section_titled_like_a_built_in_block_is_a_block_of_its_own():
    report = reference_report(sections=(Section("📊 Metrics", (("Extra", 1),)),))
    lines = render_progress(report)
    assert lines.count("📊 Metrics:") == 2  # titles are never matched: only into= joins a block


def test_unknown_block_names_the_choices():
    tracker = ProgressTracker(10, sinks=[], is_master=True)
    with pytest.raises(ValueError, match="into must be one of 'metrics', 'time', 'memory' or None, got 'Metrics'"):
        tracker.set_section("x", {"a": 1}, into="Metrics")


def test_a_real_run_prints_the_blip_and_the_cleared_lines():
    # 2,000 steps of 0.1 s on a fake clock, a check every 0.1% (2 steps): a loss spike at
    # 1001..1040 raises and then clears; a gradient norm 50x its median at step 1500 only is a blip.
    from trainprogress.anomaly.config import AnomalyConfig

    clock, console = FakeClock(), io.StringIO()
    config = AnomalyConfig(min_check_steps=1, min_check_interval_s=0.0, clear_after_checks=3)
    tracker = ProgressTracker(2000, interval_percent=10, clock=clock, anomaly=config,
                              sinks=[ConsoleSink(console, ascii=False)])
    with tracker:
        for it in range(1, 2001):
            clock.advance(0.1)
            loss = 5.0 if 1001 <= it <= 1040 else 2.0 + 0.01 * (it % 7)
            tracker.step(loss=loss, lr=1e-3, grad_norm=50.0 if it == 1500 else 1.0 + 0.01 * (it % 5))
    lines = console.getvalue().splitlines()
    cleared = [line for line in lines if line.endswith(": loss spike cleared")]
    blips = [line for line in lines if "(a blip so far: reported if it persists)" in line]
    # Cleared once the pooled medians have been clean for 3 checks after the spike ends at 1040.
    assert cleared == ["✅ iteration 1,070: loss spike cleared"]
    assert blips == ["⚠️ iteration 1,500: gradient norm 50 is 49x its recent median 1.02 "
                     "(a blip so far: reported if it persists)"]


def test_a_crash_is_titled_crashed_and_shows_its_error_while_a_stop_is_titled_stopped():
    from helpers import train_with_sinks

    crashed = io.StringIO()
    with pytest.raises(RuntimeError):
        train_with_sinks([ConsoleSink(crashed, ascii=False)], crash_at=33)
    title, lines, _ = crashed.getvalue().split("=" * 80 + "\n")[-3:]
    assert title == "💥 TRAINING CRASHED\n"
    assert lines.splitlines()[:2] == ["   • Error: RuntimeError: CUDA out of memory", "   • Iterations: 33/200"]
    assert "STOPPED" not in crashed.getvalue()

    clock, stopped = FakeClock(), io.StringIO()
    with ProgressTracker(200, clock=clock, sinks=[ConsoleSink(stopped, ascii=True)]) as tracker:
        for _ in range(50):
            clock.advance(0.1)
            tracker.step(loss=2.0)
    title = stopped.getvalue().split("=" * 80 + "\n")[-3]
    assert title == "TRAINING STOPPED\n" and "Error" not in stopped.getvalue()
