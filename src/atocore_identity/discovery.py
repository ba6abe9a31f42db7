"""Discovery in worker processes beside the command's own work (decision 36).

``survey.discover_columns`` owns what discovery reads and how it decides;
this module owns where it runs. A second thread would add little: SQLite in
one process serialises on its allocator's lock. A worker process reads in
parallel: plan and verify start one beside their own work (``discovering``),
inspect two that share the columns out (``discovering_shared``). Each is
``python -m atocore_identity.discovery``, given its job (database path,
registry, targets, ignored columns, its columns) pickled on stdin; it sends
the ``Discovery`` (and, for inspect --sql, the statements it ran) back,
pickled on stdout. The worker
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
from atocore_identity.survey import discover_columns, discovery_columns, merge_discoveries
from atocore_identity.targets import Target


@dataclass(frozen=True)
class Job:
    """What a worker needs: everything ``discover_columns`` takes, and the file."""

    db: Path
    busy_timeout: float
    registry: Registry
    targets: tuple[Target, ...]
    ignore: tuple[tuple[str, str], ...]
    sample_rows: int  # the parent's survey.SAMPLE_ROWS: the worker reads as many
    only: tuple[tuple[str, str], ...] | None = None  # its share: (table, column); None: all
    trace: bool = False  # send back the statements it ran (inspect --sql)


# (the Discovery, the statements the worker ran if asked)
Found = tuple[Discovery, list[str]]


@contextmanager
def discovering(
    conn: sqlite3.Connection,
    registry: Registry,
    targets: Sequence[Target],
    ignore: Sequence[tuple[str, str]] = (),
) -> Iterator[Callable[[], Discovery]]:
    """Discovery of ``conn``'s file in one worker process while the caller
    works with ``conn``; the yielded function waits for it (plan, verify)."""
    with discovering_shared(conn, registry, targets, ignore) as found:
        yield lambda: found()[0]


@contextmanager
def discovering_shared(
    conn: sqlite3.Connection,
    registry: Registry,
    targets: Sequence[Target],
    ignore: Sequence[tuple[str, str]] = (),
    workers: int = 1,
    trace: bool = False,
) -> Iterator[Callable[[], Found]]:
    """Discovery in ``workers`` processes, the columns shared out by the rows
    they take to read; the yielded function waits for all of them and merges
    (with ``trace``, also the statements they ran). A share whose worker cannot
    start, dies or answers nonsense is discovered inline on ``conn``: slower,
    never less. A database without a file (in memory) is discovered inline. A
    typed error from a worker (the file gone) is raised as itself."""
    path = main_file(conn)
    columns = discovery_columns(conn, targets, ignore) if workers > 1 else []
    order = [(t, c) for t, c, _ in columns]
    shares = _share(columns, workers) if path else [None]
    started: list[tuple[tuple[tuple[str, str], ...] | None, subprocess.Popen[bytes] | None]] = []
    try:
        for share in shares:
            job = None if path is None else Job(
                path, busy_timeout_of(conn), registry, tuple(targets), tuple(ignore),
                survey.SAMPLE_ROWS, share, trace,
            )  # fmt: skip
            started.append((share, None if job is None else _start(job)))

        def collect() -> Found:
            parts: list[Discovery] = []
            statements: list[str] = []
            for share, proc in started:
                got = None if proc is None else _collect(proc)
                if got is None:  # inline, on the caller's (traced) connection
                    got = (discover_columns(conn, registry, targets, ignore, only=share), [])
                parts.append(got[0])
                statements += got[1]
            return merge_discoveries(parts, order), statements

        yield collect
    finally:
        for _, proc in started:
            if proc is not None:
                _end(proc)


def _share(
    columns: list[tuple[str, str, int]], workers: int
) -> list[tuple[tuple[str, str], ...] | None]:
    """The columns in ``workers`` shares of about as many rows to read each
    (the heaviest first, to the lightest share); one share is all (None)."""
    if workers <= 1 or len(columns) <= 1:
        return [None]
    loads = [0] * workers
    shares: list[list[tuple[str, str]]] = [[] for _ in range(workers)]
    for table, column, rows in sorted(columns, key=lambda c: -c[2]):
        lightest = loads.index(min(loads))
        shares[lightest].append((table, column))
        loads[lightest] += rows + 1
    return [tuple(s) for s in shares if s]


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


def _collect(proc: subprocess.Popen[bytes]) -> Found | None:
    """The worker's answer; None if it died or answered nonsense."""
    out, _ = proc.communicate()
    try:
        answer = pickle.loads(out) if proc.returncode == 0 else None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, ImportError):
        answer = None
    if isinstance(answer, IdentityError):
        raise answer
    if (
        isinstance(answer, tuple)
        and len(answer) == 2
        and isinstance(answer[0], Discovery)
        and isinstance(answer[1], list)
    ):
        return answer[0], [str(q) for q in answer[1]]
    return None


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _work() -> None:
    """The worker: one Job on stdin, its Found (or typed error) on stdout."""
    job: Job = pickle.loads(sys.stdin.buffer.read())
    answer: Found | IdentityError
    statements: list[str] = []
    try:
        conn = open_database(job.db, readonly=True, busy_timeout=job.busy_timeout)
        try:
            if job.trace:
                conn.set_trace_callback(statements.append)
            found = discover_columns(
                conn,
                job.registry,
                job.targets,
                job.ignore,
                sample_rows=job.sample_rows,
                only=job.only,
            )
            answer = (found, statements)
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
