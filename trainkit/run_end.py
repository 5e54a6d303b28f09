"""How both trainers' runs end, in one place so that they cannot drift apart.

``run_until_done(cfg, rt, train)`` runs ``train(cfg, rt, stop)`` under GracefulStop, then
(also after a stop or a crash, before its traceback) prints where the run's log and picture
are and leaves the process group; a stopped run exits with 128 + the signal's number (130
SIGINT, 143 SIGTERM). ``exit_on_config_error(prog, main)`` is the scripts' entry point: bad
input (ConfigError and its kinds: data, checkpoint, out_dir, memory) exits 1 with one line,
``prog: error: ...``, instead of a traceback.
"""

from __future__ import annotations

import sys
from typing import Callable, TypeVar

from trainkit.config import ConfigError
from trainkit.reporting import log_location_line
from trainkit.runtime import Runtime
from trainkit.settings import GPTTrainingConfig
from trainkit.signals import GracefulStop

Config = TypeVar("Config", bound=GPTTrainingConfig)


def run_until_done(cfg: Config, rt: Runtime, train: Callable[[Config, Runtime, GracefulStop], int], *,
                   show_log_location: bool = True) -> None:
    """Run ``train`` with SIGINT and SIGTERM turned into a stop after the current step;
    raises SystemExit with its exit code when that is not 0."""
    try:
        with GracefulStop() as stop:
            exit_code = train(cfg, rt, stop)
    finally:
        # Also after a stop or a crash (then before the traceback): the log says what happened.
        location = log_location_line(cfg, cfg.out_dir)
        if location and show_log_location:
            rt.print(location)
        rt.close()
    if exit_code:
        sys.exit(exit_code)


def exit_on_config_error(prog: str, main: Callable[[list[str]], None]) -> None:
    """Run ``main`` on the command line's arguments; bad input exits 1 with one line."""
    try:
        main(sys.argv[1:])
    except ConfigError as e:
        sys.exit(f"{prog}: error: {e}")
