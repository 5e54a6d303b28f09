"""Loss tensors are never synchronised per step: at most one host-device sync per report."""

import pytest
import torch
from helpers import FakeClock, RecordingSink

from trainprogress import ProgressTracker

# Every way a tensor's value reaches the host, i.e. every device sync on an accelerator.
SYNCING = {
    torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__float__, torch.Tensor.__int__,
    torch.Tensor.__bool__, torch.Tensor.__index__, torch.Tensor.numpy, torch.Tensor.cpu,
    torch.Tensor.__format__, torch.Tensor.__repr__,
}


class CountingTensor(torch.Tensor):
    """A tensor that counts the calls that would synchronise with its device."""

    syncs = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in SYNCING:
            CountingTensor.syncs += 1
        return super().__torch_function__(func, types, args, kwargs or {})


def counting(value):
    return torch.tensor(value).as_subclass(CountingTensor)


def test_one_sync_per_report_and_none_between():
    CountingTensor.syncs = 0
    clock = FakeClock()
    sink = RecordingSink()
    tracker = ProgressTracker(1000, interval_percent=10, sinks=[sink], clock=clock, is_master=True)
    model = torch.nn.Linear(4, 1)
    for i in range(1000):
        clock.advance(0.01)
        loss = model(torch.ones(4)).sum().as_subclass(CountingTensor) * 0 + counting(3.0 - i / 1000)
        report = tracker.step(loss=loss, lr=1e-3, grad_norm=counting(0.5))
        reports_so_far = sum(1 for r in sink.reports if r.kind == "scheduled")
        assert CountingTensor.syncs == reports_so_far, f"step {i + 1}: {CountingTensor.syncs} syncs for {reports_so_far} reports"
        if report is not None:
            assert report.loss == pytest.approx(3.0 - i / 1000)
            assert report.metrics["grad_norm"] == 0.5
    tracker.close()
    assert CountingTensor.syncs == 10
    final = sink.reports[-1]
    assert final.kind == "final" and final.smoothed_loss == pytest.approx(3.0 - 949.5 / 1000)  # mean of the last 100


def test_a_check_and_a_report_at_one_step_share_one_sync():
    from trainprogress.anomaly.config import AnomalyConfig

    CountingTensor.syncs = 0
    clock = FakeClock()
    sink = RecordingSink()
    # Checks every 1% (no minimum spacing) and reports every 10%: every report falls on a check.
    tracker = ProgressTracker(1000, interval_percent=10, sinks=[sink], clock=clock, is_master=True,
                              anomaly=AnomalyConfig(check_percent=1.0, min_check_steps=1, min_check_interval_s=0))
    for i in range(1000):
        clock.advance(0.01)
        tracker.step(loss=counting(3.0 - i / 1000), lr=1e-3)
    assert [r.kind for r in sink.reports] == ["scheduled"] * 10
    assert CountingTensor.syncs == 100  # one per check; the reports reuse it
    tracker.close()


@pytest.mark.parametrize("total", [100, 300, 1_000, 100_000])
def test_anomaly_checks_add_almost_no_syncs_between_reports(total):
    """With anomaly detection on, every report is a check (one sync for both), and checks
    between reports are at most one per AnomalyConfig.min_check_steps (100) steps and per
    min_check_interval_s (10) seconds."""
    CountingTensor.syncs = 0
    clock = FakeClock()
    sink = RecordingSink()
    tracker = ProgressTracker(total, sinks=[sink], clock=clock, is_master=True, anomaly=True)
    loss, grad_norm = counting(2.0), counting(0.5)
    step_s = 0.05
    syncs_at_reports = 0
    for _ in range(total):
        clock.advance(step_s)
        before = CountingTensor.syncs
        report = tracker.step(loss=loss, lr=1e-3, grad_norm=grad_norm)
        if report is not None:
            syncs_at_reports += CountingTensor.syncs - before
    tracker.close()
    reports = [r for r in sink.reports if r.kind != "final"]
    assert len(reports) == 100 and not any(r.anomalies for r in reports)
    assert syncs_at_reports == 100  # one per report, the check included
    between = CountingTensor.syncs - syncs_at_reports
    bound = min(total // 100, total * step_s / 10)
    assert between <= bound, f"{between} syncs between reports over {total} steps (bound {bound})"
    if total <= 1_000:
        assert between == 0


def test_cost_metering_adds_no_sync(tmp_path):
    """The same loop as the first test, with cost on (its meters read at every report):
    still one sync per report."""
    from trainprogress.cost import CostConfig

    package = tmp_path / "intel-rapl:0"  # a fake RAPL package: the meters have a counter to read
    package.mkdir()
    (package / "energy_uj").write_text("0\n")
    (package / "max_energy_range_uj").write_text("262143328850\n")
    CountingTensor.syncs = 0
    clock = FakeClock()
    sink = RecordingSink()
    tracker = ProgressTracker(1000, interval_percent=10, sinks=[sink], clock=clock, is_master=True,
                              cost=CostConfig(price_per_device_hour=1.0, rapl_root=str(tmp_path)))
    for i in range(1000):
        clock.advance(0.01)
        tracker.step(loss=counting(3.0 - i / 1000), lr=1e-3, grad_norm=counting(0.5))
        assert CountingTensor.syncs == sum(1 for r in sink.reports if r.kind == "scheduled")
    tracker.close()
    assert CountingTensor.syncs == 10
    assert all(r.run_cost.energy_source == "rapl" for r in sink.reports)
