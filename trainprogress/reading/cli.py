"""The ``trainprogress`` command: plot, summarise or watch a run from its JSONL log.

    trainprogress plot out/progress.jsonl -o run.png
    trainprogress plot a/progress.jsonl b/progress.jsonl -o compare.png
    trainprogress summary out/progress.jsonl [--json]
    trainprogress watch out/progress.jsonl [--once]

A trainer's out_dir may be given instead of its progress.jsonl (the trainers write it by
default): `trainprogress summary out-shakespeare-char`. Bad input (a missing or empty file,
an out_dir without a log, a file that is not a progress log, a newer schema) ends with a
message naming the file and the fix, and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Sequence

from .plot import PlotExtraMissing
from .runlog import STDIN_PATH, LogFileError, RunLog, check_regular_file, read_log, resolve_log_path
from .runs import Run
from .summary import format_summary, summarize

__all__ = ["main"]

ERROR_EXIT = 1
BROKEN_PIPE_EXIT = 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)


def _read(name: str) -> RunLog:
    """The log ``name`` means, read; an out_dir without a log is named as such, with the fix."""
    if name == STDIN_PATH:
        path = Path(name)
    else:
        path = resolve_log_path(name)
        if path != Path(name) and not path.exists():
            raise LogFileError(
                f"{path}: no such file: {name} holds no progress log. Fix: give the out_dir of a run "
                f"(the trainers write out_dir/progress.jsonl unless run with --jsonl_log=False) or the .jsonl file itself."
            )
    log = read_log(path)
    _note_skipped(log)
    return log


def _note_skipped(log: RunLog) -> None:
    if log.skipped_lines:
        print(f"trainprogress: note: {log.path}: {log.skipped_lines} unreadable line(s) skipped "
              f"(torn or garbled writes)", file=sys.stderr)


def _runs(log: RunLog, all_runs: bool) -> list[Run]:
    return list(log.runs) if all_runs else log.runs[-1:]


def _plot(args: argparse.Namespace) -> int:
    from .plot import save_plot

    runs: list[Run] = []
    for name in args.logs:
        runs += _runs(_read(name), args.all_runs)
    if args.output is None and args.logs[0] == STDIN_PATH:
        raise LogFileError("a log read from standard input has no name to write the PNG beside. Fix: pass -o run.png.")
    output = args.output or resolve_log_path(args.logs[0]).with_suffix(".png")
    check_output_path(output)
    save_plot(runs, output, x_axis=args.x)
    print(f"Wrote {output} ({', '.join(run.name for run in runs)})")
    return 0


def check_output_path(output: Path) -> None:
    """Raise LogFileError when the PNG cannot be written at ``output``: a folder is there,
    or a folder above it is a file."""
    if output.is_dir():
        raise LogFileError(f"-o {output} is a folder. Fix: name the PNG to write, e.g. -o {output / 'progress.png'}.")
    for parent in output.parents:
        if parent.exists():
            if not parent.is_dir():
                raise LogFileError(f"-o {output}: {parent} is a file, not a folder, so nothing can be written under it. "
                                   f"Fix: choose another path for the PNG.")
            return


def _summary(args: argparse.Namespace) -> int:
    log = _read(args.log)
    summaries = [summarize(run, log) for run in _runs(log, args.all_runs)]
    if args.json:
        print(json.dumps(summaries if args.all_runs else summaries[0], indent=2))
        return 0
    if len(log.runs) > 1 and not args.all_runs:
        print(f"({log.path} holds {len(log.runs)} runs; the latest below, --all-runs for every one)")
    for summary in summaries:
        print("\n".join(format_summary(summary)))
    return 0


def _watch(args: argparse.Namespace) -> int:
    from .watch import Watcher

    if not 0 < args.interval < math.inf:
        raise LogFileError(f"--interval must be a positive number of seconds, got {args.interval}. Fix: e.g. --interval 0.5.")
    if args.log == STDIN_PATH:
        raise LogFileError("watch follows a file as it grows and cannot follow standard input. Fix: pass the log's path.")
    path = resolve_log_path(args.log)
    check_regular_file(path)  # watch follows a file: no device, no pipe
    watcher = Watcher(path)
    if args.once:
        _read(args.log)  # the clear errors for a missing, empty or foreign file
        watcher.show_once()
        return 0
    try:
        return watcher.run(interval_s=args.interval)
    except KeyboardInterrupt:
        print()
        return 0


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="trainprogress",
        description="Look at a training run from its JSONL progress log: out_dir/progress.jsonl, which the "
                    "trainers write by default (give the file or the out_dir).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{plot,summary,watch}")

    plot = commands.add_parser("plot", help="draw the run (or several, overlaid) as one PNG",
                               description="Draw loss, learning rate, speed, MFU, memory and ETA convergence as one PNG.")
    plot.add_argument("logs", nargs="+", metavar="RUN.jsonl", help="progress logs (or out_dirs); several are overlaid")
    plot.add_argument("-o", "--output", type=Path, help="the PNG to write (default: the first log's name with .png)")
    plot.add_argument("--x", choices=("auto", "time", "iteration"), default="auto",
                      help="x axis: time since start, or iteration (auto: time for one run, iteration for several)")
    plot.add_argument("--all-runs", action="store_true", help="every run a file holds, not only its latest")
    plot.set_defaults(handler=_plot)

    summary = commands.add_parser("summary", help="how the run ended, or where it stands, with its key figures")
    summary.add_argument("log", metavar="RUN.jsonl", help="a progress log (or an out_dir)")
    summary.add_argument("--json", action="store_true", help="one JSON object (a list with --all-runs), for scripts")
    summary.add_argument("--all-runs", action="store_true", help="every run the file holds, not only its latest")
    summary.set_defaults(handler=_summary)

    watch = commands.add_parser("watch", help="follow a live run: the latest report and a live bar, until it ends",
                                description="Follow a live run from another terminal until it ends. Exit code 0 when "
                                            "it completes, 2 when it stops early or crashes.")
    watch.add_argument("log", metavar="RUN.jsonl", help="a progress log (or an out_dir); it may not exist yet")
    watch.add_argument("--once", action="store_true", help="print the current state and exit")
    watch.add_argument("--interval", type=float, default=0.5, help="seconds between looks at the file (default 0.5)")
    watch.set_defaults(handler=_watch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: sys.argv[1:]); returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (LogFileError, PlotExtraMissing) as exc:
        print(f"trainprogress {args.command}: error: {exc}", file=sys.stderr)
        return ERROR_EXIT
    except BrokenPipeError:
        # The reader went away (`trainprogress summary --json | head`): stop quietly, and
        # point stdout at /dev/null so that the interpreter's final flush fails no more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE_EXIT


if __name__ == "__main__":
    sys.exit(main())
