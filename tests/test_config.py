"""trainkit.config: safe parsing of config files and flags, and train.py's configuration
errors as a user meets them (a ConfigError from the entry point, checked in process, and no
out_dir written; one real process for the clean non-zero exit that any ConfigError becomes)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

import train
from helpers import run_script
from trainkit.config import ConfigError, format_help, load_config, opt, parse_config_file, parse_value, require

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Demo:
    max_iters: int = opt(100, "steps")
    learning_rate: float = opt(1e-3, "peak rate")
    out_dir: str = opt("out", "folder")
    compile: bool | None = opt(None, "None: auto")
    eval_only: bool = opt(False, "evaluate and exit")
    init_from: Literal["scratch", "resume"] = opt("scratch", "start")
    betas: tuple = opt((0.9, 0.95), "AdamW betas")

    def __post_init__(self) -> None:
        require(self.max_iters > 0, f"max_iters must be > 0, got {self.max_iters}")


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ----------------------------------------------------------------------------- the parser

def test_defaults_then_files_then_flags_in_order(tmp_path):
    a = write(tmp_path, "a.py", "max_iters = 10\nlearning_rate = 1e-2\n")
    b = write(tmp_path, "b.json", '{"max_iters": 20, "eval_only": true}')
    cfg = load_config(Demo, [a, b, "--learning_rate=3e-4", "--out_dir", "runs/x"])
    assert (cfg.max_iters, cfg.learning_rate, cfg.out_dir, cfg.eval_only) == (20, 3e-4, "runs/x", True)
    assert cfg.init_from == "scratch"


def test_config_file_allows_literals_arithmetic_and_earlier_names(tmp_path):
    path = write(tmp_path, "c.py", '"""doc"""\n# comment\nmax_iters = 5 * 8\nlearning_rate = 6e-4 / 2\n'
                 'out_dir = "out-" + "x"\nbetas = (0.9, 1 - 0.01)\ncompile: bool = False\nlr_copy = learning_rate\n')
    values = parse_config_file(path)
    assert values == {"max_iters": 40, "learning_rate": 3e-4, "out_dir": "out-x", "betas": (0.9, 0.99),
                      "compile": False, "lr_copy": 3e-4}


@pytest.mark.parametrize("code, found", [
    ("import os\n", "Import"),
    ("max_iters = __import__('os').system('true')\n", "a function call"),
    ("out_dir = home\n", "name 'home' is not defined"),
    ("max_iters = (1).real\n", "an attribute access"),
    ("for i in range(3): pass\n", "For"),
    ("max_iters = 2 ** 100000\n", "too large"),
    ("out_dir = 'x' * 10**9\n", "too large"),
    ("max_iters = 1 / 0\n", "division by zero"),
])
def test_only_literal_assignments_are_allowed(tmp_path, code, found):
    path = write(tmp_path, "evil.py", code)
    with pytest.raises(ConfigError) as err:
        parse_config_file(path)
    assert found in str(err.value)
    assert f"{path}:1" in str(err.value)


def test_config_file_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    path = write(tmp_path, "evil.py", f"max_iters = 3\nout_dir = __import__('pathlib').Path(r'{marker}').touch()\n")
    with pytest.raises(ConfigError, match=r"evil\.py:2: a function call is not allowed"):
        load_config(Demo, [path])
    assert not marker.exists()


def test_flag_values_parse_as_literals_else_strings():
    assert parse_value("3e-4") == 3e-4
    assert parse_value("2*8") == 16
    assert parse_value("True") is True
    assert parse_value("'gpt'") == "gpt"
    assert parse_value("cpu") == "cpu"
    assert parse_value("out/run-1") == "out/run-1"
    assert parse_value("__import__('os')") == "__import__('os')"  # just text, never run


def test_type_coercions():
    cfg = load_config(Demo, ["--max_iters=5e3", "--learning_rate=1", "--out_dir=2024", "--compile=false", "--eval_only"])
    assert cfg.max_iters == 5000 and isinstance(cfg.max_iters, int)
    assert cfg.learning_rate == 1.0 and isinstance(cfg.learning_rate, float)
    assert cfg.out_dir == "2024"
    assert cfg.compile is False and cfg.eval_only is True
    assert load_config(Demo, ["--compile=None"]).compile is None


@pytest.mark.parametrize("argv, expected", [
    (["--max_iter=5"], "unknown config key 'max_iter' (from --max_iter=5). Did you mean 'max_iters'?"),
    (["--lerning_rate", "1"], "Did you mean 'learning_rate'?"),
    (["--max_iters=abc"], "config key 'max_iters' expects int, got str 'abc' (from --max_iters=abc)"),
    (["--max_iters=2.5"], "expects int, got float 2.5"),
    (["--learning_rate=True"], "expects float, got bool True"),
    (["--init_from=gpt2"], "expects 'scratch' | 'resume', got str 'gpt2'"),
    (["--max_iters"], "flag '--max_iters' has no value. Fix: write --max_iters=VALUE."),
    (["--max_iters=0"], "max_iters must be > 0, got 0"),
    (["-x"], "unknown option '-x'"),
    (["--learning_rate=1e999"], "config key 'learning_rate' must be a finite number, got inf (from --learning_rate=1e999)"),
    (["--learning_rate=-1e999"], "config key 'learning_rate' must be a finite number, got -inf"),
    (["--learning_rate=1e999-1e999"], "config key 'learning_rate' must be a finite number, got nan"),
    (["--betas=(0.9, 1e999)"], "config key 'betas' must be a finite number, got (0.9, inf)"),
])
def test_errors_name_the_problem_and_the_fix(argv, expected):
    with pytest.raises(ConfigError) as err:
        load_config(Demo, argv, prog="demo.py")
    assert expected in str(err.value)


def test_non_finite_values_in_files_are_refused(tmp_path):
    py = write(tmp_path, "c.py", "learning_rate = 1e308 * 10\n")
    js = write(tmp_path, "c.json", '{"learning_rate": NaN}')
    for path, shown in ((py, "inf"), (js, "nan")):
        with pytest.raises(ConfigError) as err:
            load_config(Demo, [path])
        assert f"config key 'learning_rate' must be a finite number, got {shown} (from {path}" in str(err.value)
        assert "Fix: give a finite value like 0.001" in str(err.value)


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = write(tmp_path, "c.py", "max_iters = 3\nbatchsize = 12\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'batchsize' \(from .*c\.py: batchsize = 12\)"):
        load_config(Demo, [path])


def test_missing_file_suggests_a_close_name(tmp_path):
    write(tmp_path, "train_shakespeare_char.py", "max_iters = 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(Demo, [str(tmp_path / "train_shakespear_char.py")])
    message = str(err.value)
    assert "not found" in message and "Did you mean" in message and "train_shakespeare_char.py" in message


def test_json_must_be_an_object(tmp_path):
    with pytest.raises(ConfigError, match="expected a JSON object"):
        load_config(Demo, [write(tmp_path, "c.json", "[1, 2]")])
    with pytest.raises(ConfigError, match=r"c2\.json:1: invalid JSON"):
        load_config(Demo, [write(tmp_path, "c2.json", "{max_iters: 3}")])


def test_help_lists_every_key_with_default_and_help():
    text = format_help(Demo, "demo.py")
    assert "--max_iters=100  (int)" in text and "steps" in text
    assert "--compile=None  (bool | None)" in text


# ----------------------------------------------------------------------------- train.py as a user runs it

TINY = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--block_size=16", "--batch_size=4", "--max_iters=5",
        "--lr_decay_iters=5", "--warmup_iters=1", "--eval_interval=5", "--eval_iters=1", "--device=cpu"]


@pytest.mark.parametrize("args, env, expected", [
    (["config/no_such_config.py"], None, "config file 'config/no_such_config.py' not found"),
    (["--batchsize=4"], None, "unknown config key 'batchsize' (from --batchsize=4). Did you mean 'batch_size'?"),
    (["--max_iters=ten"], None, "config key 'max_iters' expects int, got str 'ten'"),
    (["--max_iters=0"], None, "max_iters must be > 0, got 0"),
    (["--batch_size=-1"], None, "batch_size must be > 0, got -1"),
    (["--report_interval=0"], None, "report_interval must be a percent in (0, 100], got 0.0"),
    (["--min_lr=1"], None, "min_lr (1.0) must lie in [0, learning_rate=0.0006]"),
    (["--learning_rate=1e999"], None, "config key 'learning_rate' must be a finite number, got inf"),
    (["--learning_rate=1e999-1e999"], None, "config key 'learning_rate' must be a finite number, got nan"),
    (["--grad_clip=1e999"], None, "config key 'grad_clip' must be a finite number, got inf"),
    (["--block_size=200000"], None, "val.bin holds 103,650 tokens, fewer than the 200,001 needed (block_size + 1)"),
    (["--gradient_accumulation_steps=3"], {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"},
     "gradient_accumulation_steps (3) is not divisible by the world size (2)"),
    (["--init_from=resume"], None, "ckpt.pt. Fix: train from scratch first"),
    (["--dataset=shakespeare"], None, "shakespeare/train.bin not found and there is no"),
    (["--device=cuda:99"], None, "device 'cuda:99' requested but "),  # no CUDA, or fewer GPUs: either names the fix
    (["--dtype=float16"], None, "dtype float16 needs a CUDA device"),
])
def test_train_config_errors_are_config_errors_and_write_nothing(tmp_path, monkeypatch, capsys, as_a_script, args, env,
                                                                 expected):
    """In process: train.py's entry point turns every ConfigError into one `train.py: error:`
    line and a non-zero exit (the subprocess test below proves that path)."""
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    out_dir = tmp_path / "out"
    with pytest.raises(ConfigError) as err:
        train.main([*TINY, f"--out_dir={out_dir}", *args])
    assert expected in str(err.value)
    assert capsys.readouterr().out.count("TRAINING PROGRESS") == 0
    assert not out_dir.exists()


def test_a_config_error_exits_nonzero_with_one_line_and_no_traceback(tmp_path):
    """As a user meets it, in a real process: the ConfigError of any bad setting becomes one
    `train.py: error:` line, a non-zero exit, and no out_dir."""
    out_dir = tmp_path / "out"
    result = run_script("train.py", *TINY, f"--out_dir={out_dir}", "--batchsize=4", timeout=120, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "train.py: error: unknown config key 'batchsize' (from --batchsize=4). Did you mean 'batch_size'? "
        "Fix: run train.py --help to list the keys."]
    assert result.stdout.count("TRAINING PROGRESS") == 0
    assert not out_dir.exists()


def test_train_help_lists_the_keys(capsys, as_a_script):
    train.main(["--help"])
    out = capsys.readouterr().out
    for key in ("--report_interval=1.0", "--log_interval=1", "--init_from='scratch'", "--gradient_accumulation_steps=40"):
        assert key in out


def test_shipped_configs_load():
    char = load_config(train.TrainConfig, [str(REPO / "config/train_shakespeare_char.py")])
    assert (char.n_layer, char.n_head, char.n_embd, char.block_size, char.batch_size) == (4, 4, 128, 64, 12)
    assert (char.max_iters, char.lr_decay_iters, char.learning_rate, char.min_lr, char.warmup_iters) == (2000, 2000, 1e-3, 1e-4, 100)
    assert (char.beta2, char.dropout, char.gradient_accumulation_steps, char.compile) == (0.99, 0.0, 1, False)
    big = load_config(train.TrainConfig, [str(REPO / "config/train_shakespeare.py")])
    assert (big.n_layer, big.n_embd, big.block_size) == (6, 384, 256)
    bench = load_config(train.TrainConfig, [str(REPO / "config/bench_gpt2_124m.py")])
    assert (bench.n_layer, bench.n_head, bench.n_embd, bench.block_size) == (12, 12, 768, 1024)


@pytest.mark.parametrize("device, local_rank, expected", [
    ("cuda:3", 0, "device 'cuda:3' requested but only 2 GPU(s) are visible (as CUDA_VISIBLE_DEVICES allows). "
                  "Fix: --device=cuda:N with N below 2, or --device=auto."),
    ("auto", 2, "process 2 of this node (LOCAL_RANK) has no GPU of its own: 2 visible. "
                "Fix: torchrun --nproc_per_node=2, or --device=cpu."),
])
def test_a_gpu_past_the_visible_ones_is_refused_with_the_fix(monkeypatch, device, local_rank, expected):
    import torch

    from trainkit.runtime import _resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert _resolve_device("auto", 1) == torch.device("cuda", 1)  # each process of a node its own GPU
    with pytest.raises(ConfigError) as err:
        _resolve_device(device, local_rank)
    assert str(err.value) == expected
