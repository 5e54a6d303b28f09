import pytest

from trainprogress import format as fmt


@pytest.mark.parametrize(
    "seconds, text",
    [
        (None, "--:--:--"),
        (float("nan"), "--:--:--"),
        (float("inf"), "--:--:--"),
        (0, "00:00:00"),
        (0.4, "00:00:00"),
        (59.6, "00:01:00"),
        (26505, "07:21:45"),
        (86399, "23:59:59"),
        (86400, "1d 00:00:00"),
        (93784, "1d 02:03:04"),
        (10 * 86400 + 3661, "10d 01:01:01"),
        (-5, "00:00:00"),
    ],
)
def test_format_eta(seconds, text):
    assert fmt.format_eta(seconds) == text


@pytest.mark.parametrize(
    "seconds, text",
    [(42, "42.0s"), (750, "12.50 min"), (8820, "2.45 hours"), (267840, "3.10 days")],
)
def test_format_duration(seconds, text):
    assert fmt.format_duration(seconds) == text


@pytest.mark.parametrize("percent, text", [(25.0, "25%"), (100.0, "100%"), (0.5, "0.5%"), (24.666666, "24.67%"), (0.05, "0.05%")])
def test_format_percent(percent, text):
    assert fmt.format_percent(percent) == text


def test_reference_numbers():
    assert fmt.format_count(1536000000) == "1,536,000,000"
    assert fmt.format_loss(1.2345671) == "1.234567"
    assert fmt.format_lr(6e-4) == "6.00e-04"
    assert fmt.format_mfu(0.4215) == "42.15%"
    assert fmt.format_rate(17.234) == "17.23 iter/s"
    assert fmt.format_rate(0.0523) == "0.0523 iter/s"
    assert fmt.format_ms(58.034) == "58.03ms"
    assert fmt.format_memory(8.42 * 1024**3, 24 * 1024**3) == "8.42GB / 24.00GB"
    assert fmt.format_memory(1024**3, None) == "1.00GB"
    assert fmt.format_value(42350000) == "42,350,000"
    assert fmt.format_value(0.55) == "0.55"
    assert fmt.format_value("hypergraph_patterns") == "hypergraph_patterns"


def test_strip_emoji():
    assert fmt.strip_emoji("🔄 TRAINING PROGRESS: 25%") == "TRAINING PROGRESS: 25%"
    assert fmt.strip_emoji("⏱️ Time:") == "Time:"
    assert fmt.strip_emoji("⚠️ Anomalies:") == "Anomalies:"
    assert fmt.strip_emoji("✅ TRAINING COMPLETE!") == "TRAINING COMPLETE!"
    assert fmt.strip_emoji("   • Loss: 1.0") == "   • Loss: 1.0"
