"""The Hugging Face Trainer integration on real runs: a tiny random-init GPT-2 on random
tokens, CPU, 200 optimizer steps with gradient accumulation 2, HF's logging at its
defaults."""

import json
import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments  # noqa: E402

from helpers import record_lr_schedules  # noqa: E402
from trainprogress.integrations.hf import TrainProgressCallback  # noqa: E402
from trainprogress.sinks import build_sinks  # noqa: E402

VOCAB, SEQ, STEPS, ACCUM, BATCH = 256, 32, 200, 2, 4
LR = 5e-4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small shared CPU, tiny models run many times faster so."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class RandomTokens(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        self.ids = torch.randint(0, VOCAB, (n, SEQ), generator=torch.Generator().manual_seed(seed))

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class RaiseAtStep(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError(f"boom at step {self.step}")


def make_trainer(out_dir, jsonl, extra_callbacks=()):
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=VOCAB, n_positions=64)
    args = TrainingArguments(
        output_dir=str(out_dir), max_steps=STEPS, per_device_train_batch_size=BATCH,
        gradient_accumulation_steps=ACCUM, learning_rate=LR, use_cpu=True, save_steps=100,
        eval_strategy="steps", eval_steps=100, per_device_eval_batch_size=8,
        dataloader_num_workers=0, seed=0,
    )
    return Trainer(
        model=GPT2LMHeadModel(config), args=args,
        train_dataset=RandomTokens(256, 1), eval_dataset=RandomTokens(16, 2),
        callbacks=[TrainProgressCallback(sinks=build_sinks(jsonl=jsonl)), *extra_callbacks],
    )


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf")
    jsonl = out / "progress.jsonl"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(out)
        trainer = make_trainer(out / "run", jsonl)
        trainer.train()
    return out, read_jsonl(jsonl)


def test_hf_run_reports_exactly_100_times_with_the_step_loss_lr_and_eval(full_run, capfd):
    out, lines = full_run
    reports = [r for r in lines if r["type"] == "report" and r["kind"] == "scheduled"]
    assert [r["iteration"] for r in reports] == list(range(2, STEPS + 1, 2))
    assert reports[-1]["percent"] == 100.0
    for r in reports:
        # Random tokens over 256 symbols: the loss sits near ln 256, never at half of it.
        assert abs(r["loss"] - math.log(VOCAB)) < 0.5, r["loss"]
        assert r["metrics"]["grad_norm"] > 0
    # The rate that step 200 used (linear decay: LR * 1/200), not the scheduler's next (0).
    assert reports[-1]["lr"] == pytest.approx(LR / STEPS)
    assert reports[0]["lr"] == pytest.approx(LR * (STEPS - 1) / STEPS)  # step 2's
    # Eval at step 100 shows in the reports after it.
    assert "val_loss" not in reports[49]["metrics"]
    assert abs(reports[50]["metrics"]["val_loss"] - math.log(VOCAB)) < 0.5
    assert reports[-1]["tokens_processed"] == STEPS * ACCUM * BATCH * SEQ
    assert reports[-1]["mfu"] is not None and 0 < reports[-1]["mfu"] < 1
    pauses = [(e["data"]["name"], e["iteration"]) for e in lines if e["type"] == "event" and e.get("event") == "pause"]
    assert ("eval", 100) in pauses and ("checkpoint", 100) in pauses and ("checkpoint", 200) in pauses
    assert lines[-1]["type"] == "run_end" and lines[-1]["status"] == "completed"


def test_hf_console_has_blocks_and_no_carriage_returns(tmp_path, capfd):
    trainer = make_trainer(tmp_path / "run", tmp_path / "p.jsonl")
    trainer.args.max_steps = 20
    trainer.args.save_strategy = "no"
    trainer.args.eval_strategy = "no"
    trainer.train()
    captured = capfd.readouterr()
    text = captured.out + captured.err
    assert "\r" not in text
    assert captured.out.count("TRAINING PROGRESS") == 20  # 20 steps: one report per step
    assert "TRAINING COMPLETE" in captured.out
    assert "{'loss'" not in text and "train_runtime" not in text  # HF's own printer is gone


def test_hf_resume_from_checkpoint_continues_the_percent(full_run, tmp_path):
    out, _ = full_run
    jsonl = tmp_path / "resumed.jsonl"
    trainer = make_trainer(out / "run", jsonl)
    trainer.train(resume_from_checkpoint=str(out / "run" / "checkpoint-100"))
    lines = read_jsonl(jsonl)
    reports = [r for r in lines if r["type"] == "report" and r["kind"] == "scheduled"]
    assert lines[0]["start_iter"] == 100
    assert [r["percent"] for r in reports] == [float(p) for p in range(51, 101)]
    assert all(abs(r["loss"] - math.log(VOCAB)) < 0.5 for r in reports)


def test_hf_crash_inside_training_gives_the_crash_summary(tmp_path, capfd):
    jsonl = tmp_path / "crash.jsonl"
    trainer = make_trainer(tmp_path / "run", jsonl, extra_callbacks=[RaiseAtStep(7)])
    with pytest.raises(RuntimeError, match="boom at step 7"):
        trainer.train()
    out = capfd.readouterr().out
    assert "TRAINING CRASHED" in out and "Iterations: 7/200" in out and "Error: RuntimeError: boom at step 7" in out
    lines = read_jsonl(jsonl)
    crash = [e for e in lines if e["type"] == "event" and e["event"] == "crash"]
    assert crash and "boom at step 7" in crash[0]["data"]["error"]
    assert lines[-1]["status"] == "crashed"


def test_hf_reported_loss_is_the_loss_hf_itself_logs_for_that_step(tmp_path):
    jsonl = tmp_path / "p.jsonl"
    trainer = make_trainer(tmp_path / "run", jsonl)
    trainer.args.max_steps = 20
    trainer.args.logging_steps = 1  # HF then logs every step's loss, to compare with
    trainer.args.save_strategy = "no"
    trainer.args.eval_strategy = "no"
    trainer.train()
    hf_losses = {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}
    hf_lrs = {entry["step"]: entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry}
    reports = [r for r in read_jsonl(jsonl) if r["type"] == "report" and r["kind"] == "scheduled"]
    assert len(reports) == 20
    for r in reports:
        assert r["loss"] == pytest.approx(hf_losses[r["iteration"]], rel=1e-5)
        assert r["lr"] == pytest.approx(hf_lrs[r["iteration"]])


class CountingTokens(RandomTokens):
    """Rows that count up from a random start: a sequence the model learns within a few
    dozen steps, so each evaluation is lower than the one before."""

    def __init__(self, n, seed):
        starts = torch.randint(0, VOCAB, (n, 1), generator=torch.Generator().manual_seed(seed))
        self.ids = (starts + torch.arange(SEQ)) % VOCAB


def test_hf_evaluation_at_the_last_step_reaches_the_summary(tmp_path):
    from trainprogress.reading.runlog import read_log
    from trainprogress.reading.summary import summarize

    jsonl = tmp_path / "p.jsonl"
    trainer = make_trainer(tmp_path / "run", jsonl)
    trainer.args.max_steps, trainer.args.eval_steps, trainer.args.save_strategy = 40, 20, "no"
    trainer.train_dataset, trainer.eval_dataset = CountingTokens(256, 1), CountingTokens(16, 2)
    trainer.train()
    evals = [entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry]
    # Evaluations at steps 20 and 40 (the last); the last is the best.
    assert len(evals) == 2 and evals[1] < evals[0]
    lines = read_jsonl(jsonl)
    final = [r for r in lines if r["type"] == "report" and r["kind"] == "final"][0]
    assert final["best_val_loss"] == pytest.approx(min(evals)) and final["metrics"]["val_loss"] == pytest.approx(evals[1])
    assert summarize(read_log(jsonl).runs[-1])["best_val_loss"] == pytest.approx(min(evals))


def test_hf_passes_the_schedule_of_its_lambda_scheduler_and_reports_a_forecast(tmp_path, monkeypatch):
    import trainprogress.integrations.hf as integration

    given = record_lr_schedules(monkeypatch, integration)
    jsonl = tmp_path / "p.jsonl"
    trainer = make_trainer(tmp_path / "run", jsonl)
    trainer.args.max_steps, trainer.args.logging_steps = 40, 1
    trainer.args.save_strategy = trainer.args.eval_strategy = "no"
    trainer.args.warmup_steps, trainer.args.lr_scheduler_type = 5, "cosine"
    trainer.train()
    assert len(given) == 1 and callable(given[0])
    schedule = given[0]
    hf_lrs = {entry["step"]: entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry}
    assert len(hf_lrs) == 40
    for step, rate in hf_lrs.items():  # the rates HF logged for each step are the schedule's
        assert schedule(step) == pytest.approx(rate, rel=1e-6, abs=1e-12)
    assert schedule(3) < schedule(6) and schedule(6) == pytest.approx(LR) and schedule(30) < LR  # warm-up, peak, cosine
    reports = [r for r in read_jsonl(jsonl) if r["type"] == "report" and r["kind"] == "scheduled"]
    forecasts = [r for r in reports if r["loss_forecast"] is not None]
    assert forecasts and forecasts[0]["percent"] <= 25
    assert all(r["loss_forecast_low"] <= r["loss_forecast"] <= r["loss_forecast_high"] for r in forecasts)
