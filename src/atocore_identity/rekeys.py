"""The rows a rekey moves: read, hashed for the fingerprint, written as records.

For every target (a project-keyed column) the rows whose value is an alias
or a variant spelling are read once into their TEMP table
(``statements.rekey_statements``); their identity and version are hashed
into a ``RekeySum`` that the fingerprint takes, and when a command writes a
companion (plan, apply) they become its ``rekey`` records. That last part is
most of a companion and needs only the spellings, not the plan's decisions,
so ``rekeys_beside`` does it all in a worker process (``workers.py``) while
the planning connection decides the rest (decision 44): the records go, as
JSON lines, to an unlinked temporary file in the report dir that the
companion writer takes into its gzip stream. The worker's sums must count
what the survey counted, or the planner reads the rows inline instead;
inline and beside give the same sums and records.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from atocore_identity import workers
from atocore_identity.companion import CompanionWriter, write_rekey_records
from atocore_identity.database import busy_timeout_of, main_file, open_database
from atocore_identity.plan_objects import RekeyRecords, RekeySum
from atocore_identity.statements import hash_rows, rekey_rows_sql, rekey_statements
from atocore_identity.targets import Target


def read_rekeys(
    conn: sqlite3.Connection,
    targets: Sequence[Target],
    made: frozenset[str] = frozenset(),
    writer: CompanionWriter | None = None,
) -> list[RekeySum]:
    """Each target's rows to rekey, hashed (and written to ``writer``). The
    TEMP table of a target whose label is in ``made`` is already filled."""
    sums: list[RekeySum] = []
    for target in targets:
        if target.label not in made:
            for sql in rekey_statements(target):
                conn.execute(sql)
        h = hashlib.sha256()
        rows = hash_rows(h, conn.execute(rekey_rows_sql(target)))
        sums.append(RekeySum(target.label, rows, h.hexdigest()))
        if writer is not None:
            write_rekey_records(writer, conn, target)
    return sums


@dataclass(frozen=True)
class Job:
    """The worker's job: the spellings, the targets, where the records go."""

    db: Path
    busy_timeout: float
    setup: tuple[str, ...]  # the statements that fill temp.ident_names
    targets: tuple[Target, ...]
    fd: int  # the parent's unlinked temporary file, passed to the worker

    def run(self) -> tuple[list[RekeySum], int]:
        conn = open_database(self.db, readonly=True, busy_timeout=self.busy_timeout)
        try:
            for sql in self.setup:
                conn.execute(sql)
            with os.fdopen(self.fd, "wb", closefd=False) as raw:
                writer = CompanionWriter(raw, compressed=False)
                sums = read_rekeys(conn, self.targets, writer=writer)
                writer.end()
            return sums, writer.records
        finally:
            conn.close()


Beside = Callable[[], tuple[list[RekeySum], RekeyRecords] | None]


@contextmanager
def rekeys_beside(
    conn: sqlite3.Connection, setup: Sequence[str], targets: Sequence[Target], directory: Path
) -> Iterator[Beside]:
    """Read, hash and write the rekeys of ``conn``'s file in a worker process,
    the records to a temporary file in ``directory``; the yielded function
    waits for it: the sums and the records, or None when the worker could
    not do it (the caller reads inline). The records' file belongs to the
    caller once collected; on any other exit it is closed here."""
    path = main_file(conn)
    # pass_fds is POSIX; elsewhere (and for a database in memory) read inline
    if path is None or not targets or os.name != "posix":
        yield lambda: None
        return
    try:
        # no `with`: once collected, the file is the caller's (RekeyRecords)
        tmp: BinaryIO | None = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115
    except OSError:
        tmp = None  # no room for it: the plan reads inline
    if tmp is None:
        yield lambda: None
        return
    proc = None
    handed = False

    def collect() -> tuple[list[RekeySum], RekeyRecords] | None:
        nonlocal handed
        answer = None if proc is None else workers.collect(proc)
        got = _well_formed(answer, targets)
        if got is None:
            return None
        handed = True
        return got[0], RekeyRecords(tmp, got[1])

    try:
        job = Job(path, busy_timeout_of(conn), tuple(setup), tuple(targets), tmp.fileno())
        proc = workers.start(job, pass_fds=[tmp.fileno()])
        yield collect
    finally:
        if proc is not None:
            workers.end(proc)
        if not handed:
            tmp.close()


def _well_formed(answer: object, targets: Sequence[Target]) -> tuple[list[RekeySum], int] | None:
    """The worker's (sums, record count), or None for anything else."""
    if not (isinstance(answer, tuple) and len(answer) == 2):
        return None
    sums, records = answer
    if not (isinstance(records, int) and isinstance(sums, list)):
        return None
    checked = [s for s in sums if isinstance(s, RekeySum)]
    if [s.label for s in checked] != [t.label for t in targets] or len(checked) != len(sums):
        return None
    return checked, records
