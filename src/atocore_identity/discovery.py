"""Discovery in worker processes beside the command's own work (decision 36).

``survey.discover_columns`` owns what discovery reads and how it decides;
this module owns where it runs, in worker processes (``workers.py``): plan
and verify start one beside their own work (``discovering``), inspect two
that share the columns out (``discovering_shared``). Each gets its ``Job``
(database path, registry, targets, ignored columns, its columns) and sends
the ``Discovery`` back (and, for inspect --sql, the statements it ran). The
worker opens the database read-only and reads only committed columns nobody
configured. A share whose worker cannot start, dies or answers nonsense is
discovered inline instead: slower, never less.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from atocore_identity import survey
from atocore_identity.database import busy_timeout_of, main_file, open_database
from atocore_identity.plan_objects import Discovery
from atocore_identity.registry import Registry
from atocore_identity.survey import discover_columns, discovery_columns, merge_discoveries
from atocore_identity.targets import Target
from atocore_identity.workers import collect as collect_answer
from atocore_identity.workers import end as end_worker
from atocore_identity.workers import start as start_worker


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

    def run(self) -> Found:
        statements: list[str] = []
        conn = open_database(self.db, readonly=True, busy_timeout=self.busy_timeout)
        try:
            if self.trace:
                conn.set_trace_callback(statements.append)
            found = discover_columns(
                conn,
                self.registry,
                self.targets,
                self.ignore,
                sample_rows=self.sample_rows,
                only=self.only,
            )
            return found, statements
        finally:
            conn.close()


# (the Discovery, the statements the worker ran if asked)
Found = tuple[Discovery, list[str]]


@contextmanager
def discovering(
    conn: sqlite3.Connection,
    registry: Registry,
    targets: Sequence[Target],
    ignore: Sequence[tuple[str, str]] = (),
    workers: int = 1,
) -> Iterator[Callable[[], Discovery]]:
    """Discovery of ``conn``'s file in ``workers`` worker processes while the
    caller works with ``conn``; the yielded function waits for them (plan,
    verify)."""
    with discovering_shared(conn, registry, targets, ignore, workers) as found:
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
            started.append((share, None if job is None else start_worker(job)))

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
                end_worker(proc)


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


def _collect(proc: subprocess.Popen[bytes]) -> Found | None:
    """The worker's answer; None if it died or answered nonsense."""
    answer = collect_answer(proc)
    if (
        isinstance(answer, tuple)
        and len(answer) == 2
        and isinstance(answer[0], Discovery)
        and isinstance(answer[1], list)
    ):
        return answer[0], [str(q) for q in answer[1]]
    return None
