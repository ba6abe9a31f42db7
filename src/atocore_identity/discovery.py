"""Discovery in a worker process beside plan's and verify's own work (decision 36).

``survey.discover_columns`` owns what discovery reads and how it decides;
this module owns where it runs. A second thread would add little: SQLite in
one process serialises on its allocator's lock. A worker process reads in
parallel: ``discovering`` starts ``python -m atocore_identity.discovery``,
hands it the job (database path, registry, targets, ignored columns) pickled
on stdin and reads the ``Discovery`` back, pickled on stdout. The worker
opens the database read-only and reads only committed columns nobody
configured; it imports the package from the parent's ``sys.path`` and does
not inherit the SIGKILL test hook. It is killed when the block that started
it ends without collecting it (if the parent itself is SIGKILLed, the worker
finishes its reading and exits). A worker that cannot start, dies or
answers nonsense is replaced by discovery inline: slower, never less.
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
from atocore_identity.errors import IdentityError
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


@contextmanager
def discovering(
    conn: sqlite3.Connection,
    registry: Registry,
    targets: Sequence[Target],
    ignore: Sequence[tuple[str, str]] = (),
) -> Iterator[Callable[[], Discovery]]:
    """Discovery of ``conn``'s file in a worker process while the caller plans
    with ``conn``; the yielded function waits for it. A database without a
    file (in memory), a worker that cannot start, and a worker that dies or
    answers nonsense fall back to discovery inline on ``conn``: slower, never
    less. A typed error from the worker (the file gone) is raised as itself."""

    def inline() -> Discovery:
        return discover_columns(conn, registry, targets, ignore)

    path = main_file(conn)
    proc = (
        None
        if path is None
        else _start(
            Job(
                path,
                busy_timeout_of(conn),
                registry,
                tuple(targets),
                tuple(ignore),
                survey.SAMPLE_ROWS,
            )
        )
    )
    if proc is None:
        yield inline
        return
    try:
        yield lambda: _collect(proc) or inline()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _start(job: Job) -> subprocess.Popen[bytes] | None:
    """The worker, its job sent; None if it cannot be started here."""
    if not sys.executable:
        return None
    env = {k: v for k, v in os.environ.items() if k != TEST_KILL_ENV}
    # The worker imports this very package, wherever it came from (a zipapp,
    # a path added by a launcher), not whatever an installation would give.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "atocore_identity.discovery"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
    except OSError:
        return None
    stdin, proc.stdin = proc.stdin, None  # sent once here; communicate() only reads
    assert stdin is not None
    try:
        with stdin:
            stdin.write(pickle.dumps(job))
    except BrokenPipeError:
        pass  # the worker died at start: _collect falls back
    return proc


def _collect(proc: subprocess.Popen[bytes]) -> Discovery | None:
    """The worker's Discovery; None if it died or answered nonsense."""
    out, _ = proc.communicate()
    try:
        answer = pickle.loads(out) if proc.returncode == 0 else None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, ImportError):
        answer = None
    if isinstance(answer, IdentityError):
        raise answer
    return answer if isinstance(answer, Discovery) else None


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
