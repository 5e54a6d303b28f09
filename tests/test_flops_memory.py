import pytest

from helpers import FakeClock, RecordingSink
from trainprogress import ProgressTracker, flops
from trainprogress.flops import _PEAKS, PeakFlops, PRECISIONS, TFLOPS, detect_peak, gpt_flops_per_token, lookup_peak, measure_cpu_peak
from trainprogress.memory import cuda_memory, probe_memory, process_memory


def test_gpt_flops_per_token_palm_formula():
    # GPT-2 small at block 1024: 6N + 12·L·H·Q·T with N = 85M non-embedding-position params.
    assert gpt_flops_per_token(85_000_000, 12, 12, 64, 1024) == 6 * 85_000_000 + 12 * 12 * 12 * 64 * 1024


# Names as torch.cuda.get_device_name() reports them, with the dense peak of that card at
# that precision (None: not in the table, so no MFU rather than another card's).
REAL_NAMES = [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.4, "NVIDIA H100 SXM"),
    ("NVIDIA H100 PCIe", "bf16", 756.5, "NVIDIA H100 PCIe"),
    ("NVIDIA H100 NVL", "bf16", 835.5, "NVIDIA H100 NVL"),
    ("NVIDIA H200", "bf16", 989.4, "NVIDIA H200"),
    ("NVIDIA H200 NVL", "bf16", 835.5, "NVIDIA H200 NVL"),
    ("NVIDIA GH200 480GB", "bf16", 989.4, "NVIDIA GH200"),
    ("NVIDIA GH200 144G HBM3e", "tf32", 494.7, "NVIDIA GH200"),
    ("NVIDIA H800", "bf16", None, None),
    ("NVIDIA H20", "bf16", None, None),
    ("NVIDIA A100-SXM4-40GB", "bf16", 312.0, "NVIDIA A100"),
    ("NVIDIA A100-SXM4-80GB", "tf32", 156.0, "NVIDIA A100"),
    ("NVIDIA A100-PCIE-40GB", "fp16", 312.0, "NVIDIA A100"),
    ("NVIDIA A100 80GB PCIe", "fp32", 19.5, "NVIDIA A100"),
    ("NVIDIA A800-SXM4-80GB", "bf16", None, None),
    ("NVIDIA RTX A1000", "bf16", None, None),
    ("NVIDIA RTX A6000", "bf16", None, None),
    ("NVIDIA A10", "bf16", 125.0, "NVIDIA A10"),
    ("NVIDIA A10G", "bf16", None, None),
    ("NVIDIA A40", "bf16", None, None),
    ("NVIDIA L4", "bf16", 121.0, "NVIDIA L4"),
    ("NVIDIA L40", "bf16", 181.05, "NVIDIA L40"),
    ("NVIDIA L40S", "bf16", 362.05, "NVIDIA L40S"),
    ("NVIDIA GeForce RTX 4090", "bf16", 165.2, "NVIDIA GeForce RTX 4090"),
    ("NVIDIA GeForce RTX 4090", "fp32", 82.6, "NVIDIA GeForce RTX 4090"),
    ("NVIDIA GeForce RTX 4090 D", "bf16", None, None),
    ("NVIDIA GeForce RTX 4090 Laptop GPU", "bf16", None, None),
    ("NVIDIA GeForce RTX 3090", "bf16", 71.0, "NVIDIA GeForce RTX 3090"),
    ("NVIDIA GeForce RTX 3090 Ti", "bf16", None, None),
    ("NVIDIA GeForce RTX 3080", "bf16", None, None),
    ("Tesla V100-SXM2-16GB", "fp16", 125.0, "NVIDIA V100 SXM2"),
    ("Tesla V100-SXM2-32GB", "bf16", 15.7, "NVIDIA V100 SXM2"),
    ("Tesla V100-PCIE-16GB", "fp16", 112.0, "NVIDIA V100 PCIe"),
    ("Tesla V100-PCIE-32GB", "fp32", 14.0, "NVIDIA V100 PCIe"),
    ("Tesla V100S-PCIE-32GB", "fp16", 130.0, "NVIDIA V100S PCIe"),
    ("Tesla T4", "fp16", 65.0, "NVIDIA T4"),
    ("Tesla P100-PCIE-16GB", "fp16", None, None),
    ("NVIDIA B200", "bf16", None, None),
    ("Quadro RTX 8000", "fp16", None, None),
]


@pytest.mark.parametrize("name, precision, tflops, label", REAL_NAMES)
def test_peak_table(name, precision, tflops, label):
    peak = lookup_peak(name, precision)
    if tflops is None:
        assert peak is None, f"{name} must get no peak, got {peak}"
    else:
        assert peak.flops_per_s == pytest.approx(tflops * TFLOPS)
        assert peak.source == f"table: {label} {precision}"


def test_every_table_row_names_its_data_sheet():
    assert len(REAL_NAMES) >= 30
    for pattern, _label, peaks, source in _PEAKS:
        assert source.startswith("https://") and set(peaks) == set(PRECISIONS), pattern
    matched = {lookup_peak(name, "fp32").source for name, *_ in REAL_NAMES if lookup_peak(name, "fp32")}
    assert len(matched) == len(_PEAKS)  # every row is reached by a real name


def test_unknown_accelerator_has_no_peak_and_bad_precision_is_named():
    assert lookup_peak("Some Future GPU", "bf16") is None
    with pytest.raises(ValueError, match="precision must be one of bf16, fp16, tf32, fp32"):
        lookup_peak("NVIDIA A100", "int8")


def test_cpu_peak_is_measured_once_and_labelled():
    import torch  # noqa: F401  (detect_peak only looks when torch is imported)

    first = measure_cpu_peak()
    assert first.flops_per_s > 1e8 and first.source.startswith("measured: CPU fp32 matmul")
    assert measure_cpu_peak() is first
    assert detect_peak() is first  # no CUDA here: the CPU probe
    bf16 = detect_peak("bf16")  # a bf16 run is measured against bf16 matmuls
    assert bf16 is not first and bf16.source.startswith("measured: CPU bf16 matmul")


def run_reports(**tracker_args):
    """The reports of a 20-step CPU run at 1 ms a step whose FLOPs per step make 1e9 FLOP/s."""
    clock, sink = FakeClock(), RecordingSink()
    with ProgressTracker(20, interval_percent=25, sinks=[sink], flops_per_iter=1e6, clock=clock,
                         **tracker_args) as tracker:
        for _ in range(20):
            clock.advance(0.001)
            tracker.step(loss=1.0)
    return [r for r in sink.reports if r.kind == "scheduled"]


def test_a_cpu_peak_measured_while_the_cpu_was_busy_is_measured_again_once(monkeypatch):
    # As if the probe had run on a machine busy with other work: a peak the run outpaces.
    busy = PeakFlops(1e8, "measured: CPU fp32 matmul, 2 threads")
    monkeypatch.setitem(flops._cpu_peaks, "fp32", busy)
    measured = []
    real_measure = flops.measure_cpu_peak
    monkeypatch.setattr(flops, "measure_cpu_peak", lambda *a, **k: measured.append(k) or real_measure(*a, **k))
    reports = run_reports(device="cpu")
    assert measured.count({"again": True}) == 1  # once, though every report is above the busy peak
    assert reports[0].peak_flops > 1e9 > busy.flops_per_s and reports[0].mfu < 1
    assert {r.peak_flops for r in reports} == {reports[0].peak_flops}


def test_a_given_peak_is_kept_when_the_run_outpaces_it():
    reports = run_reports(peak_flops=1e8)
    assert all(r.peak_flops == 1e8 and r.mfu == pytest.approx(10.0) for r in reports)


def test_memory_probes_on_cpu():
    stats = process_memory()
    assert stats.device == "cpu" and 10 * 2**20 < stats.used_bytes < stats.total_bytes
    assert cuda_memory() is None  # no CUDA context: nothing, and no error
    assert [m.device for m in probe_memory()][-1] == "cpu"
