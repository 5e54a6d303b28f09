"""The run's cost: device-hours, energy from a fake NVML and a fake RAPL tree, money, CO2,
and what the JSONL log, the console and the summary make of them."""

from __future__ import annotations

import io
import json
import re
import sys
import types
from dataclasses import fields

import pytest
from helpers import FakeClock, RecordingSink

import trainprogress.cost as cost_module
from trainprogress import ProgressTracker, read_log
import trainprogress.sinks.jsonl as jsonl_module
from trainprogress.cost import CostConfig, CostMeter, RunCost
from trainprogress.energy import COST_EXTRA, CounterTotal, RaplMeter, sum_distinct
from trainprogress.ranks import _energy_of_ranks, _energy_slots
from trainprogress.reading.runlog import report_from_record
from trainprogress.sinks import ConsoleSink, JsonlSink
from trainprogress.sinks.console import render_progress
from trainprogress.reading.summary import format_summary, summarize

CUDA_UUID = "5c8e3a1b-0f2d-4e6a-9b7c-1d2e3f4a5b6c"  # as torch spells it
OTHER_UUID = "aaaaaaaa-0000-0000-0000-000000000000"


class NotSupported(Exception):
    pass


def fake_nvml(counters: dict[str, object]) -> types.ModuleType:
    """A pynvml with one GPU per entry of ``counters``: its NVML UUID ("GPU-...") to a
    callable giving the energy counter in millijoules (or raising)."""
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = Exception
    nvml.NVMLError_NotSupported = NotSupported
    nvml.inits = 0
    uuids = list(counters)

    def init():
        nvml.inits += 1

    def shutdown():
        nvml.inits -= 1

    nvml.nvmlInit, nvml.nvmlShutdown = init, shutdown
    nvml.nvmlDeviceGetCount = lambda: len(uuids)
    nvml.nvmlDeviceGetHandleByIndex = lambda index: uuids[index]
    nvml.nvmlDeviceGetUUID = lambda handle: handle
    nvml.nvmlDeviceGetTotalEnergyConsumption = lambda handle: counters[handle]()
    return nvml


@pytest.fixture
def on_cuda(monkeypatch):
    """The run trains on one CUDA device whose UUID is CUDA_UUID (no real GPU needed)."""
    monkeypatch.setattr(cost_module, "cuda_indices", lambda device, decide: [0])
    monkeypatch.setattr(cost_module, "cuda_uuids", lambda indices: [CUDA_UUID])


def no_rapl(tmp_path):
    return str(tmp_path / "no-powercap")


def run_tracker(config, clock, steps=100, step_s=36.0, sinks=None, **kwargs):
    sink = RecordingSink()
    tracker = ProgressTracker(steps, interval_percent=10, sinks=[sink, *(sinks or [])], clock=clock,
                              is_master=True, cost=config, **kwargs)
    for _ in range(steps):
        clock.advance(step_s)
        tracker.step(loss=1.0)
    tracker.close()
    return sink.reports


def test_device_hours_are_elapsed_times_devices_and_money_is_hours_times_price(tmp_path):
    clock = FakeClock()
    config = CostConfig(price_per_device_hour=2.5, currency="EUR", devices=8, rapl_root=no_rapl(tmp_path))
    reports = run_tracker(config, clock)
    assert len(reports) == 11
    for report in reports:
        c = report.run_cost
        assert c.devices == 8
        assert c.device_hours == pytest.approx(report.elapsed_s * 8 / 3600)
        assert c.cost == pytest.approx(c.device_hours * 2.5)
        if report.kind != "final":
            assert c.device_hours_total == pytest.approx((report.elapsed_s + report.eta_s) * 8 / 3600)
            assert c.cost_total == pytest.approx(c.device_hours_total * 2.5)
    final = reports[-1].run_cost
    assert final.device_hours == pytest.approx(100 * 36.0 * 8 / 3600)  # 8 device-hours: 1 hour on 8 devices
    assert final.device_hours_total == final.device_hours and final.cost_total == final.cost == pytest.approx(20.0)
    assert reports[4].run_cost.device_hours_total == pytest.approx(8.0)  # steady steps: the ETA is exact
    assert final.energy_j is None and final.co2_kg is None
    assert final.energy_note == "energy: not measured (no NVIDIA GPU; no readable RAPL)"


def test_devices_default_to_the_world_size(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    meter = CostMeter(CostConfig(rapl_root=no_rapl(tmp_path)), FakeClock(), "cpu")
    assert meter.devices == 4
    assert meter.figures(3600.0, 1800.0).device_hours_total == pytest.approx(6.0)


def test_the_gpu_counter_gives_energy_power_projection_money_and_co2(tmp_path, on_cuda, monkeypatch):
    clock = FakeClock()
    start = clock.now
    watts = 300.0
    # Two GPUs, the run's one listed second: matched by UUID, not by NVML's order.
    nvml = fake_nvml({f"GPU-{OTHER_UUID}": lambda: 5e9,
                      f"GPU-{CUDA_UUID.upper()}": lambda: 1e9 + watts * (clock.now - start) * 1000})
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    config = CostConfig(price_per_device_hour=2.0, price_per_kwh=0.5, currency="USD", grid_kg_co2_per_kwh=0.4,
                        rapl_root=no_rapl(tmp_path))
    reports = run_tracker(config, clock)
    for report in reports:
        c = report.run_cost
        assert c.energy_source == "nvml"
        assert c.energy_j == pytest.approx(watts * report.elapsed_s)
        assert c.power_w == pytest.approx(watts)
        kwh = c.energy_j / 3.6e6
        assert c.cost == pytest.approx(c.device_hours * 2.0 + kwh * 0.5)
        assert c.co2_kg == pytest.approx(kwh * 0.4)
        if report.kind != "final":
            assert c.energy_total_j == pytest.approx(c.energy_j + watts * report.eta_s)
    final = reports[-1].run_cost
    assert final.energy_j == pytest.approx(300.0 * 3600)  # 0.3 kWh in one hour at 300 W
    assert final.energy_note == "CPU: no readable RAPL"
    assert nvml.inits == 0  # every nvmlInit was matched by a shutdown at close


def test_an_unsupported_counter_says_so_and_hours_and_money_still_show(tmp_path, on_cuda, monkeypatch):
    def unsupported():
        raise NotSupported("Not Supported")

    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml({f"GPU-{CUDA_UUID}": unsupported}))
    clock = FakeClock()
    reports = run_tracker(CostConfig(price_per_device_hour=3.0, price_per_kwh=0.2, rapl_root=no_rapl(tmp_path)), clock)
    final = reports[-1].run_cost
    assert final.energy_j is None and final.energy_source is None
    assert final.energy_note == ("energy: not measured (GPU: counter not supported on this GPU; no readable RAPL); "
                                 "the cost leaves out energy")
    assert final.device_hours == pytest.approx(1.0) and final.cost == pytest.approx(3.0)


def test_without_the_nvml_package_the_reason_names_the_extra(tmp_path, on_cuda, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    meter = CostMeter(CostConfig(rapl_root=no_rapl(tmp_path)), FakeClock(), "cuda:0")
    meter.read()
    assert meter.figures(10.0, None).energy_note == f"energy: not measured (GPU: {COST_EXTRA}; no readable RAPL)"


def test_a_gpu_that_nvml_does_not_list_is_not_measured(tmp_path, on_cuda, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml({f"GPU-{OTHER_UUID}": lambda: 1.0}))
    meter = CostMeter(CostConfig(rapl_root=no_rapl(tmp_path)), FakeClock(), "cuda:0")
    meter.read()
    assert "no NVML device has this GPU's UUID" in meter.figures(10.0, None).energy_note
    assert sys.modules["pynvml"].inits == 0


def test_a_counter_reset_never_gives_negative_energy(tmp_path, on_cuda, monkeypatch):
    readings = iter([1_000_000.0, 2_000_000.0, 500.0, 1_500.0, 1_500.0])  # mJ; a driver reload after the 2nd
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml({f"GPU-{CUDA_UUID}": lambda: next(readings)}))
    clock = FakeClock()
    meter = CostMeter(CostConfig(rapl_root=no_rapl(tmp_path)), clock, "cuda:0")
    energies = []
    for _ in range(4):
        clock.advance(10.0)
        meter.read()
        energies.append(meter.figures(clock.now - 1000.0, 0.0).energy_j)
    assert energies == pytest.approx([1000.0, 1000.5, 1001.5, 1001.5])  # the reset adds the 0.5 J since it
    assert energies == sorted(energies)


def test_counter_totals_correct_a_wrap_and_treat_a_reset_as_a_lower_bound():
    wrapping = CounterTotal(900.0, wrap_range=1000.0)
    assert wrapping.update(950.0) == 50.0
    assert wrapping.update(30.0) == 130.0  # 950 -> 1000 (wrap) -> 30
    resetting = CounterTotal(900.0)
    assert resetting.update(950.0) == 50.0
    assert resetting.update(30.0) == 80.0


def make_rapl(root, domain, energy_uj, max_uj=262_143_328_850):
    path = root / domain
    path.mkdir(parents=True, exist_ok=True)
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


def test_rapl_counts_packages_only_and_corrects_a_wrap(tmp_path):
    root = tmp_path / "powercap"
    top = 262_143_328_850
    package0 = make_rapl(root, "intel-rapl:0", top - 2_000_000)
    package1 = make_rapl(root, "intel-rapl:1", 5_000_000)
    core = make_rapl(root, "intel-rapl:0:0", 1_000)  # a sub-domain of package 0: already in it
    mmio = make_rapl(root, "intel-rapl-mmio:0", 1_000)  # the same package through MMIO
    (root / "intel-rapl").mkdir()  # the control type's own folder
    meter, reason = RaplMeter.open(root)
    assert reason is None
    (package0 / "energy_uj").write_text(f"{3_000_000}\n")  # wrapped: 2 J to the top, then 3 J
    (package1 / "energy_uj").write_text(f"{6_000_000}\n")
    (core / "energy_uj").write_text(f"{900_000_000}\n")
    (mmio / "energy_uj").write_text(f"{900_000_000}\n")
    joules = meter.read()
    assert {key.split(":", 2)[2] for key in joules} == {"intel-rapl:0", "intel-rapl:1"}
    assert sum(joules.values()) == pytest.approx(5.0 + 1.0)


def test_rapl_energy_reaches_the_report(tmp_path):
    root = tmp_path / "powercap"
    package = make_rapl(root, "intel-rapl:0", 0)
    clock = FakeClock()
    sink = RecordingSink()
    tracker = ProgressTracker(10, interval_percent=50, sinks=[sink], clock=clock, is_master=True,
                              cost=CostConfig(rapl_root=str(root)), device="cpu")
    for i in range(10):
        clock.advance(1.0)
        (package / "energy_uj").write_text(f"{(i + 1) * 65_000_000}\n")  # 65 W
        tracker.step(loss=1.0)
    tracker.close()
    final = sink.reports[-1].run_cost
    assert final.energy_source == "rapl" and final.energy_j == pytest.approx(650.0)
    assert final.power_w == pytest.approx(65.0) and final.energy_note is None


def test_no_readable_rapl_is_a_reason(tmp_path):
    assert RaplMeter.open(tmp_path / "missing") == (None, "no readable RAPL")
    make_rapl(tmp_path, "intel-rapl:0", 0)
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("")  # unreadable as a number
    assert RaplMeter.open(tmp_path)[0] is None


def test_two_ranks_on_one_gpu_count_it_once():
    gpu, cpu = "gpu:" + CUDA_UUID, "rapl:host:intel-rapl:0"
    rank0 = {gpu: 1000.0, cpu: 300.0}
    rank1 = {gpu: 1010.0, cpu: 290.0}  # the same GPU and host, metered a little longer / shorter
    rank2 = {"gpu:" + OTHER_UUID: 900.0}
    assert sum_distinct([rank0, rank1, rank2]) == (pytest.approx(1010.0 + 300.0 + 900.0), 3)
    # The same through the exchange's float64 rows.
    rows = [[0.0] * 7 + _energy_slots(r) for r in (rank0, rank1, rank2)]
    assert _energy_of_ranks(rows) == pytest.approx(2210.0)
    assert _energy_of_ranks([[0.0] * 7 + _energy_slots({})] * 2) is None


def test_rank_0_shows_every_ranks_energy_after_an_exchange(tmp_path):
    meter = CostMeter(CostConfig(rapl_root=no_rapl(tmp_path)), FakeClock(), "cpu")
    meter.read()
    assert meter.figures(10.0, None).energy_j is None
    meter.merge_ranks(500.0)  # the other ranks' devices (rank 0 measures none)
    figures = meter.figures(10.0, None)
    assert figures.energy_j == 500.0 and figures.energy_source == "other ranks"


def test_the_log_the_console_and_the_summary_show_the_cost(tmp_path, on_cuda, monkeypatch):
    clock = FakeClock()
    start = clock.now
    monkeypatch.setitem(sys.modules, "pynvml",
                        fake_nvml({f"GPU-{CUDA_UUID}": lambda: 250.0 * (clock.now - start) * 1000}))
    out = io.StringIO()
    log = tmp_path / "progress.jsonl"
    config = CostConfig(price_per_device_hour=2.0, currency="USD", grid_kg_co2_per_kwh=0.5, rapl_root=no_rapl(tmp_path))
    run_tracker(config, clock, sinks=[ConsoleSink(out), JsonlSink(log)])
    records = [json.loads(line) for line in log.read_text().splitlines()]
    reports = [r for r in records if r["type"] == "report"]
    keys = {"devices", "device_hours", "device_hours_total", "energy_j", "energy_total_j", "power_w", "energy_source",
            "energy_note", "cost", "cost_total", "currency", "co2_kg", "co2_total_kg"}
    assert all(keys <= r.keys() for r in reports)
    assert reports[-1]["energy_j"] == pytest.approx(250.0 * 3600) and reports[-1]["cost"] == pytest.approx(2.0)
    assert reports[0]["scalars"]["cost/energy_j"] == pytest.approx(reports[0]["energy_j"])
    text = out.getvalue()
    assert "💰 Cost:" in text and "Device-hours: 0.100 so far, 1.000 at the end (1 device)" in text
    assert "Energy: 25.0 Wh so far, 250.0 Wh at the end (nvml, 250 W mean)" in text
    assert "Cost: 1.000 device-hours, 250.0 Wh (nvml), 2.00 USD, 0.125 kg CO2" in text
    rebuilt = report_from_record(reports[3])  # what `trainprogress watch` renders from the log
    assert rebuilt.run_cost == RunCost.from_record(reports[3]) and rebuilt.run_cost.energy_j == reports[3]["energy_j"]
    assert "\n".join(render_progress(rebuilt)) in text
    summary = summarize(read_log(log).runs[0], read_log(log))
    assert summary["cost"]["energy_j"] == pytest.approx(250.0 * 3600) and summary["cost"]["cost"] == pytest.approx(2.0)
    assert any("Cost: 1.000 device-hours on 1 device(s), 250.0 Wh measured (nvml), 2.00 USD, 0.125 kg CO2" in line
               for line in format_summary(summary))


def test_the_jsonl_docstring_lists_every_cost_key():
    doc = jsonl_module.__doc__
    part = doc[doc.index("Cost: when the tracker's"):doc.index("``event``: ``event`` names")]
    documented = {key for line in part.splitlines() if line.startswith("- ")
                  for key in re.findall(r"``(\w+)``", line.split(":")[0])}
    assert documented == {f.name for f in fields(RunCost)}


def test_a_run_without_cost_has_no_cost_keys(tmp_path):
    log = tmp_path / "progress.jsonl"
    run_tracker(False, FakeClock(), sinks=[JsonlSink(log)])
    report = next(json.loads(line) for line in log.read_text().splitlines() if '"report"' in line)
    assert "device_hours" not in report and not any(k.startswith("cost/") for k in report["scalars"])


@pytest.mark.parametrize("kwargs, message", [
    ({"price_per_kwh": -0.1}, "price_per_kwh must be a number >= 0"),
    ({"devices": 0}, "devices must be an int >= 1"),
])
def test_bad_cost_settings_say_which(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CostConfig(**kwargs)


def test_cost_takes_a_bool_or_a_cost_config():
    with pytest.raises(TypeError, match="cost must be a bool or a CostConfig"):
        ProgressTracker(10, sinks=[], is_master=True, cost={"price_per_kwh": 0.3})


def test_a_resumed_runs_summary_adds_up_what_each_process_spent(tmp_path):
    log = tmp_path / "progress.jsonl"
    config = CostConfig(price_per_device_hour=1.0, rapl_root=no_rapl(tmp_path))
    clock = FakeClock()
    first = ProgressTracker(100, interval_percent=10, sinks=[JsonlSink(log)], clock=clock, is_master=True, cost=config)
    for _ in range(50):
        clock.advance(36.0)
        first.step(loss=1.0)
    first.close()  # stopped at half-way: 0.5 device-hours spent
    clock = FakeClock()
    second = ProgressTracker(100, start_iter=50, interval_percent=10, sinks=[JsonlSink(log)], clock=clock,
                             is_master=True, cost=config)
    for _ in range(20):
        clock.advance(72.0)  # slower now: 0.4 hours for 20 steps, 1.2 hours to go
        second.step(loss=1.0)
    cost = summarize(read_log(log).runs[0], read_log(log))["cost"]
    assert cost["device_hours"] == pytest.approx(0.5 + 0.4) and cost["cost"] == pytest.approx(0.9)
    assert cost["device_hours_total"] == pytest.approx(0.5 + 0.4 + 30 * 72.0 / 3600)
    second.close()


def test_the_trainer_takes_the_price_keys(tmp_path, capsys, as_a_script):
    import train
    from helpers import TINY_TRAIN, read_jsonl

    train.main([*TINY_TRAIN, "--max_iters=8", "--report_interval=50", "--jsonl_log=True", "--price_per_device_hour=3.5",
                "--currency=EUR", "--final_full_eval=False", f"--out_dir={tmp_path}"])
    stdout = capsys.readouterr().out
    assert "💰 Cost:" in stdout and " EUR so far, " in stdout
    final = [r for r in read_jsonl(tmp_path / "progress.jsonl") if r["type"] == "report"][-1]
    assert final["currency"] == "EUR" and final["devices"] == 1
    assert final["device_hours"] == pytest.approx(final["elapsed_s"] / 3600)
    assert final["cost"] == pytest.approx(3.5 * final["device_hours"])
    assert final["energy_note"].startswith("energy: not measured (no NVIDIA GPU; ")
