"""One run per out_dir: a lock that a second run in the same folder is refused by.

``OutDirLock.acquire(out_dir)`` takes an exclusive ``fcntl.flock`` on ``out_dir/.lock``
and writes the holder's details into it (pid, host, start time, command). The kernel
releases the lock when the process ends, however it ends (SIGKILL and a crash included),
so a lock is never left held by a dead process; a clean exit also empties the file. A
second run finds the lock held and raises OutDirBusyError naming the holder and the fix. A
run that finds details in the file but takes the lock (its holder was killed) says in one
line that it takes over.

Where the filesystem has no locks (flock fails with ENOLCK or EOPNOTSUPP: some network
filesystems), the details alone decide: a holder whose pid is alive on this host keeps the
folder; any other is taken over.

The lock is per process and reentrant: a process that already holds it for a folder (two
runs one after the other in one Python process) gets the same lock back. Under torchrun
only rank 0 takes it (trainkit.training): the ranks of one job share out_dir by design,
every job has a rank 0, and the ranks learn rank 0's answer together.
"""

from __future__ import annotations

import atexit
import datetime
import errno
import json
import os
import socket
import sys
from typing import IO

from trainkit.config import ConfigError

try:
    import fcntl
except ImportError:  # Windows: no flock; the details alone decide
    fcntl = None

__all__ = ["LOCK_NAME", "OutDirBusyError", "OutDirLock"]

LOCK_NAME = ".lock"
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class OutDirBusyError(ConfigError):
    """Another live process trains into this out_dir; the message names it and the fix."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # another user's live process (or a number no process can have)
    return True


def _holder_text(details: dict) -> str:
    command = details.get("command")
    return (f"pid {details.get('pid', '?')} on host {details.get('host', '?')}, started {details.get('started', '?')}"
            + (f" ({command})" if command else ""))


class OutDirLock:
    """The lock of one out_dir, held by this process until it exits (or ``release``)."""

    _held: dict[str, "OutDirLock"] = {}  # real path of out_dir -> this process's lock

    def __init__(self, out_dir: str, file: IO[str]) -> None:
        self.out_dir, self.path, self._file = out_dir, os.path.join(out_dir, LOCK_NAME), file

    @classmethod
    def acquire(cls, out_dir: str) -> "OutDirLock":
        """Take the lock of ``out_dir`` (an existing folder). Raises OutDirBusyError when a
        live process holds it; prints one line (stderr) when it takes over a dead one's."""
        key = os.path.realpath(out_dir)
        if key in cls._held:
            return cls._held[key]
        path = os.path.join(out_dir, LOCK_NAME)
        file = open(path, "a+", encoding="utf-8")  # never truncates what a holder wrote
        try:
            previous = cls._read(file)
            if not cls._flock(file):
                raise OutDirBusyError(
                    f"out_dir '{out_dir}' is in use by another run: "
                    f"{_holder_text(previous) if previous else 'a process whose details are not written yet'}. "
                    f"Two runs in one folder would overwrite each other's checkpoint and mix their logs. "
                    f"Fix: wait for that run to end (or stop it: kill -TERM {previous.get('pid', 'PID')}), "
                    f"or set --out_dir to another folder.")
            if previous.get("pid") is not None and previous.get("pid") != os.getpid():
                print(f"out_dir '{out_dir}': taking over the lock left by {_holder_text(previous)}, which no longer "
                      f"runs (killed or crashed)", file=sys.stderr, flush=True)
            cls._write(file)
        except BaseException:
            file.close()
            raise
        lock = cls(out_dir, file)
        cls._held[key] = lock
        atexit.register(lock.release)
        return lock

    @staticmethod
    def _read(file: IO[str]) -> dict:
        file.seek(0)
        try:
            details = json.loads(file.read() or "{}")
        except ValueError:  # torn or foreign content: no details
            return {}
        return details if isinstance(details, dict) else {}

    @staticmethod
    def _flock(file: IO[str]) -> bool:
        """True when this process now holds the lock; False when a live process does."""
        if fcntl is not None:
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_LOCKS:
                    raise
        # No locks here: a holder alive on this host keeps the folder.
        details = OutDirLock._read(file)
        pid = details.get("pid")
        return not (details.get("host") == socket.gethostname() and isinstance(pid, int)
                    and pid != os.getpid() and _pid_alive(pid))

    @staticmethod
    def _write(file: IO[str]) -> None:
        details = {"pid": os.getpid(), "host": socket.gethostname(),
                   "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                   "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])[:300]}
        file.seek(0)
        file.truncate()
        file.write(json.dumps(details) + "\n")
        file.flush()

    def release(self) -> None:
        """Empty the file (no holder) and let the lock go. Idempotent."""
        if self._file.closed:
            return
        try:
            self._file.seek(0)
            self._file.truncate()
            self._file.flush()
        except OSError:
            pass  # the details stay; the next run takes the lock over and says so
        self._file.close()  # closing the descriptor releases the flock
        OutDirLock._held.pop(os.path.realpath(self.out_dir), None)
