"""The Lightning integration on real runs: a tiny LightningModule on random tokens, CPU, 200
optimizer steps with accumulate_grad_batches=2, Lightning's logging at its defaults."""

import json
import math

import pytest

torch = pytest.importorskip("torch")
L = pytest.importorskip("lightning")

from lightning.pytorch.callbacks import ModelCheckpoint  # noqa: E402

from helpers import record_lr_schedules  # noqa: E402
from trainprogress.integrations.lightning import TrainProgress  # noqa: E402
from trainprogress.sinks import build_sinks  # noqa: E402

VOCAB, SEQ, BATCH, ACCUM, STEPS = 256, 16, 4, 2, 200
BATCHES_PER_EPOCH = 200  # 100 optimizer steps per epoch: a checkpoint at step 100


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small shared CPU, tiny models run many times faster so."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyLM(L.LightningModule):
    def __init__(self, fail_at_step=None):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Embedding(VOCAB, 32), torch.nn.Linear(32, 32), torch.nn.GELU(), torch.nn.Linear(32, VOCAB)
        )
        self.fail_at_step = fail_at_step

    def loss(self, tokens):
        logits = self.net(tokens[:, :-1])
        return torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at_step:
            raise RuntimeError(f"boom at step {self.fail_at_step}")
        return self.loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.loss(batch))

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=1e-3)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / STEPS)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def train_dataloader(self):
        tokens = torch.randint(0, VOCAB, (BATCHES_PER_EPOCH * BATCH, SEQ), generator=torch.Generator().manual_seed(1))
        return torch.utils.data.DataLoader(tokens, batch_size=BATCH)

    def val_dataloader(self):
        tokens = torch.randint(0, VOCAB, (16, SEQ), generator=torch.Generator().manual_seed(2))
        return torch.utils.data.DataLoader(tokens, batch_size=8)


def fit(root, jsonl, ckpt_path=None, fail_at_step=None):
    torch.manual_seed(0)
    trainer = L.Trainer(
        max_steps=STEPS, accumulate_grad_batches=ACCUM, accelerator="cpu", devices=1,
        default_root_dir=str(root), enable_model_summary=False,
        callbacks=[TrainProgress(sinks=build_sinks(jsonl=jsonl)), ModelCheckpoint(dirpath=root / "ckpt", save_top_k=-1)],
    )
    trainer.fit(TinyLM(fail_at_step), ckpt_path=ckpt_path)
    return trainer


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lightning")
    jsonl = root / "progress.jsonl"
    fit(root, jsonl)
    return root, read_jsonl(jsonl)


def test_lightning_run_reports_exactly_100_times_with_the_unscaled_loss(full_run):
    root, lines = full_run
    reports = [r for r in lines if r["type"] == "report" and r["kind"] == "scheduled"]
    assert [r["iteration"] for r in reports] == list(range(2, STEPS + 1, 2))
    assert reports[-1]["percent"] == 100.0 and lines[0]["total_iters"] == STEPS
    for r in reports:
        # Near ln 256 (5.55), never Lightning's per-micro-batch value divided by 2.
        assert abs(r["loss"] - math.log(VOCAB)) < 0.5, r["loss"]
    # The rate step 200 used (1e-3 x (1 - 199/200)), not the scheduler's next (0).
    assert reports[-1]["lr"] == pytest.approx(1e-3 / STEPS)
    # Validation (after each epoch) is a pause, and its val_loss reaches the next reports.
    pauses = [(e["data"]["name"], e["iteration"]) for e in lines if e["type"] == "event" and e.get("event") == "pause"]
    assert ("eval", 100) in pauses and ("checkpoint", 100) in pauses
    assert not any(name == "eval" and it == 0 for name, it in pauses)  # the sanity check is not a pause
    assert abs(reports[50]["metrics"]["val_loss"] - math.log(VOCAB)) < 0.5
    assert lines[-1]["type"] == "run_end" and lines[-1]["status"] == "completed"


def test_lightning_console_replaces_the_bar_without_carriage_returns(tmp_path, capfd):
    fit(tmp_path, tmp_path / "p.jsonl")
    captured = capfd.readouterr()
    assert "\r" not in captured.out + captured.err
    assert captured.out.count("TRAINING PROGRESS") == 100
    assert "TRAINING COMPLETE" in captured.out


def test_lightning_resume_from_ckpt_path_continues_the_percent(full_run, tmp_path):
    root, _ = full_run
    jsonl = tmp_path / "resumed.jsonl"
    fit(tmp_path, jsonl, ckpt_path=str(root / "ckpt" / "epoch=0-step=100.ckpt"))
    lines = read_jsonl(jsonl)
    reports = [r for r in lines if r["type"] == "report" and r["kind"] == "scheduled"]
    assert lines[0]["start_iter"] == 100
    assert [r["percent"] for r in reports] == [float(p) for p in range(51, 101)]
    assert all(abs(r["loss"] - math.log(VOCAB)) < 0.5 for r in reports)


def test_lightning_crash_inside_training_gives_the_crash_summary(tmp_path, capfd):
    jsonl = tmp_path / "crash.jsonl"
    with pytest.raises(RuntimeError, match="boom at step 7"):
        fit(tmp_path, jsonl, fail_at_step=7)
    out = capfd.readouterr().out
    assert "TRAINING CRASHED" in out and "Iterations: 7/200" in out and "Error: RuntimeError: boom at step 7" in out
    lines = read_jsonl(jsonl)
    assert any(e["type"] == "event" and e["event"] == "crash" and "boom at step 7" in e["data"]["error"] for e in lines)
    assert lines[-1]["status"] == "crashed"


class ValLosses(L.Callback):
    """The validation losses Lightning computed, in order (the sanity check left out)."""

    def __init__(self):
        self.values = []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.values.append(float(trainer.callback_metrics["val_loss"]))


def test_lightning_validation_after_the_last_step_reaches_the_summary(tmp_path):
    from trainprogress.reading.runlog import read_log
    from trainprogress.reading.summary import summarize

    jsonl = tmp_path / "p.jsonl"
    val_losses = ValLosses()
    torch.manual_seed(0)
    trainer = L.Trainer(max_steps=STEPS, accumulate_grad_batches=ACCUM, accelerator="cpu", devices=1,
                        default_root_dir=str(tmp_path), enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[TrainProgress(sinks=build_sinks(console=False, jsonl=jsonl)), val_losses])
    trainer.fit(TinyLM())
    # Validation ran after each epoch: steps 100 and 200, the last; the last is the best.
    assert len(val_losses.values) == 2 and val_losses.values[1] < val_losses.values[0]
    final = [r for r in read_jsonl(jsonl) if r["type"] == "report" and r["kind"] == "final"][0]
    assert final["best_val_loss"] == pytest.approx(min(val_losses.values), rel=1e-6)
    assert final["metrics"]["val_loss"] == pytest.approx(val_losses.values[-1], rel=1e-6)
    assert summarize(read_log(jsonl).runs[-1])["best_val_loss"] == pytest.approx(min(val_losses.values), rel=1e-6)


class MicroLosses(TinyLM):
    """Keeps every micro-batch's loss as the step computed it (a test may sync)."""

    def __init__(self):
        super().__init__()
        self.micro_losses = []

    def training_step(self, batch, batch_idx):
        loss = self.loss(batch)
        self.micro_losses.append(loss.item())
        return loss

    def train_dataloader(self):
        tokens = torch.randint(0, VOCAB, (100 * BATCH, SEQ), generator=torch.Generator().manual_seed(1))
        return torch.utils.data.DataLoader(tokens, batch_size=BATCH)


def test_lightning_epoch_not_divisible_by_the_accumulation_reports_each_steps_true_loss(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    model = MicroLosses()
    trainer = L.Trainer(max_epochs=1, accumulate_grad_batches=3, accelerator="cpu", devices=1, limit_val_batches=0,
                        default_root_dir=str(tmp_path), enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[TrainProgress(sinks=build_sinks(console=False, jsonl=jsonl))])
    trainer.fit(model)
    # 100 micro-batches at 3 a step: 33 full steps, then one of a single micro-batch.
    assert trainer.global_step == 34 and len(model.micro_losses) == 100
    true_losses = [sum(group) / len(group) for group in (model.micro_losses[i:i + 3] for i in range(0, 100, 3))]
    reports = [r for r in read_jsonl(jsonl) if r["type"] == "report"]
    assert [r["iteration"] for r in reports if r["kind"] == "scheduled"] == list(range(1, 35))
    for r in reports:
        assert r["loss"] == pytest.approx(true_losses[r["iteration"] - 1], rel=1e-5), r["iteration"]
    assert reports[-1]["kind"] == "final" and reports[-1]["loss"] == pytest.approx(model.micro_losses[-1], rel=1e-5)


class Unsized(torch.utils.data.IterableDataset):
    """40 batches' worth of token rows, with no len()."""

    def __iter__(self):
        yield from torch.randint(0, VOCAB, (40 * BATCH, SEQ), generator=torch.Generator().manual_seed(1))


class UnsizedLM(TinyLM):
    def train_dataloader(self):
        return torch.utils.data.DataLoader(Unsized(), batch_size=BATCH)


def fit_unsized(root, progress):
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, limit_val_batches=0, default_root_dir=str(root),
                        enable_model_summary=False, enable_checkpointing=False, callbacks=[progress])
    trainer.fit(UnsizedLM())
    return trainer


def test_lightning_unsized_loader_without_max_steps_trains_with_one_warning(tmp_path, caplog, capfd):
    with caplog.at_level("WARNING", logger="trainprogress.integrations.lightning"):
        trainer = fit_unsized(tmp_path, TrainProgress())
    assert trainer.global_step == 40  # trained to the loader's end, as without the integration
    warnings = [r.getMessage() for r in caplog.records if r.name == "trainprogress.integrations.lightning"]
    assert len(warnings) == 1 and "cannot size this run" in warnings[0] and "iters_per_epoch=N" in warnings[0]
    assert "TRAINING PROGRESS" not in capfd.readouterr().out


def test_lightning_unsized_loader_is_sized_by_iters_per_epoch(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    fit_unsized(tmp_path, TrainProgress(iters_per_epoch=40, sinks=build_sinks(console=False, jsonl=jsonl)))
    lines = read_jsonl(jsonl)
    reports = [r for r in lines if r["type"] == "report" and r["kind"] == "scheduled"]
    assert lines[0]["total_iters"] == 40 and [r["iteration"] for r in reports] == list(range(1, 41))
    assert reports[-1]["percent"] == 100.0 and lines[-1]["status"] == "completed"


def test_lightning_passes_the_lambda_schedule_it_reads_without_stepping_it(tmp_path, monkeypatch):
    import trainprogress.integrations.lightning as integration

    given = record_lr_schedules(monkeypatch, integration)
    jsonl = tmp_path / "p.jsonl"
    fit(tmp_path, jsonl)
    assert len(given) == 1 and callable(given[0])
    schedule = given[0]
    reports = [r for r in read_jsonl(jsonl) if r["type"] == "report" and r["kind"] == "scheduled"]
    # The rates the run used, as the reports logged them from the optimizer, are the schedule's.
    for r in reports:
        assert schedule(r["iteration"]) == pytest.approx(r["lr"], rel=1e-9, abs=1e-15)
    forecasts = [r for r in reports if r["loss_forecast"] is not None]
    assert forecasts and forecasts[0]["percent"] <= 20
    assert all(r["loss_forecast_low"] <= r["loss_forecast"] <= r["loss_forecast_high"] for r in forecasts)


def test_lightning_runs_without_a_schedule_it_cannot_read():
    class FakeTrainer:
        optimizers = [object()]

        def __init__(self, scheduler, interval="step"):
            self.lr_scheduler_configs = [type("Config", (), {"scheduler": scheduler, "interval": interval,
                                                             "frequency": 1})()]

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    assert TrainProgress._lr_schedule(FakeTrainer(cosine)) is None  # not knowable without stepping it
    lambda_lr = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    assert TrainProgress._lr_schedule(FakeTrainer(lambda_lr, interval="epoch")) is None
    schedule = TrainProgress._lr_schedule(FakeTrainer(lambda_lr))
    assert [schedule(k) for k in (1, 2, 3)] == pytest.approx([0.1, 0.05, 0.025])
    assert lambda_lr.last_epoch == 0  # read, not stepped
