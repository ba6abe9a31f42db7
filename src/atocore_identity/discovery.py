"""Discovery in a worker process while plan plans (SPEC §3, decision 36).

``survey.discover_columns`` owns what discovery reads and how it decides;
this module owns where it runs. A second thread would add little: SQLite in
one process serialises on its allocator's lock. A worker process reads in
parallel: ``discovering`` starts ``python -m atocore_identity.discovery``,
hands it the job (database path, registry, targets, ignored columns) pickled
on stdin and reads the ``Discovery`` back, pickled on stdout. The worker
opens the database read-only and reads only committed columns nobody
configured. It is killed when the block that started it ends without
collecting it, and it does not inherit the SIGKILL test hook.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from atocore_identity import survey
from atocore_identity.database import (
    TEST_KILL_ENV,
    busy_timeout_of,
    describe_sqlite_error,
    main_file,
    open_database,
)
from atocore_identity.errors import EXIT_BUG, IdentityError
from atocore_identity.plan_objects import Discovery
from atocore_identity.registry import Registry
from atocore_identity.survey import discover_columns
from atocore_identity.targets import Target


@dataclass(frozen=True)
class Job:
    """What the worker needs: everything ``discover_columns`` takes, and the file."""

    db: Path
    busy_timeout: float
    registry: Registry
    targets: tuple[Target, ...]
    ignore: tuple[tuple[str, str], ...]
    sample_rows: int  # the parent's survey.SAMPLE_ROWS: the worker reads as many


class WorkerFailed(IdentityError):
    """The discovery worker died or answered with something that is not a Discovery."""

    exit_code = EXIT_BUG


@contextmanager
def discovering(
    conn: sqlite3.Connection,
    registry: Registry,
    targets: Sequence[Target],
    ignore: Sequence[tuple[str, str]] = (),
) -> Iterator[Callable[[], Discovery]]:
    """Discovery of ``conn``'s file in a worker process while the caller plans
    with ``conn``; the yielded function waits for it. A database without a
    file (in memory) is discovered inline, when asked."""
    path = main_file(conn)
    if path is None:
        yield lambda: discover_columns(conn, registry, targets, ignore)
        return
    job = Job(
        path, busy_timeout_of(conn), registry, tuple(targets), tuple(ignore), survey.SAMPLE_ROWS
    )
    env = {k: v for k, v in os.environ.items() if k != TEST_KILL_ENV}
    proc = subprocess.Popen(
        [sys.executable, "-m", "atocore_identity.discovery"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        stdin, proc.stdin = proc.stdin, None  # sent once here; communicate() only reads
        assert stdin is not None
        try:
            with stdin:
                stdin.write(pickle.dumps(job))
        except BrokenPipeError:
            pass  # the worker died at start; _collect says so
        yield lambda: _collect(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _collect(proc: subprocess.Popen[bytes]) -> Discovery:
    out, err = proc.communicate()
    try:
        answer = pickle.loads(out) if proc.returncode == 0 else None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError):
        answer = None
    if isinstance(answer, IdentityError):
        raise answer
    if isinstance(answer, Discovery):
        return answer
    last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
    raise WorkerFailed(
        f"discovery of unconfigured columns failed (worker exit {proc.returncode}: {last[0]})",
        "run again with --no-discover, and report this with --debug output",
    )


def _work() -> None:
    """The worker: one Job on stdin, its Discovery (or typed error) on stdout."""
    job: Job = pickle.loads(sys.stdin.buffer.read())
    answer: Discovery | IdentityError
    try:
        conn = open_database(job.db, readonly=True, busy_timeout=job.busy_timeout)
        try:
            answer = discover_columns(
                conn, job.registry, job.targets, job.ignore, sample_rows=job.sample_rows
            )
        finally:
            conn.close()
    except IdentityError as exc:
        answer = exc
    except sqlite3.Error as exc:
        answer = describe_sqlite_error(job.db, exc)
    sys.stdout.buffer.write(pickle.dumps(answer))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    _work()
