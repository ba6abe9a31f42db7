"""Worker processes: read-only jobs that run beside the command's own work.

One owner for how a job runs in another process (decisions 36 and 44). A
second thread would add little: SQLite in one process serialises on its
allocator's lock. A job is a frozen dataclass with the database's path and a
``run()`` that opens it read-only itself; it is pickled to ``python -m
atocore_identity.workers`` on stdin, and its answer (or the typed error it
raised) comes back pickled on stdout. The worker imports this very package
from the parent's ``sys.path`` and does not inherit the SIGKILL test hook.
It is killed when the block that started it ends without collecting it (if
the parent itself is SIGKILLed, the worker finishes its reading and exits).
A worker that cannot start, dies or answers nonsense gives None, and the
caller does the job inline: slower, never less.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from atocore_identity.database import TEST_KILL_ENV, describe_sqlite_error
from atocore_identity.errors import IdentityError


class Job(Protocol):
    """What a worker runs: ``run()`` opens ``db`` read-only and answers."""

    @property
    def db(self) -> Path: ...

    def run(self) -> object: ...


def cpus() -> int:
    """The CPUs this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def start(job: Job, pass_fds: Sequence[int] = ()) -> subprocess.Popen[bytes] | None:
    """The worker, its job sent; None if it cannot be started here."""
    if not sys.executable:
        return None
    env = {k: v for k, v in os.environ.items() if k != TEST_KILL_ENV}
    # The worker imports this very package, wherever it came from (a zipapp,
    # a path added by a launcher), not whatever an installation would give.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "atocore_identity.workers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            pass_fds=tuple(pass_fds),
        )
    except OSError:
        return None
    stdin, proc.stdin = proc.stdin, None  # sent once here; communicate() only reads
    assert stdin is not None
    try:
        with stdin:
            stdin.write(pickle.dumps(job))
    except BrokenPipeError:
        pass  # the worker died at start: collect gives None
    except BaseException:  # a signal while the job was sent: no orphan
        end(proc)
        raise
    return proc


def collect(proc: subprocess.Popen[bytes]) -> object | None:
    """The worker's answer; None if it died or answered nonsense. A typed
    error the job raised (the file gone) is raised here as itself."""
    out, _ = proc.communicate()
    try:
        answer = pickle.loads(out) if proc.returncode == 0 else None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, ImportError):
        answer = None
    if isinstance(answer, IdentityError):
        raise answer
    return answer


def end(proc: subprocess.Popen[bytes]) -> None:
    """Kill the worker if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _work() -> None:
    """The worker: one job on stdin, its answer (or typed error) on stdout."""
    job: Job = pickle.loads(sys.stdin.buffer.read())
    answer: object
    try:
        answer = job.run()
    except IdentityError as exc:
        answer = exc
    except sqlite3.Error as exc:
        answer = describe_sqlite_error(job.db, exc)
    sys.stdout.buffer.write(pickle.dumps(answer))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    _work()
