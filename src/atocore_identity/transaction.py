"""The write transaction that apply and revert share, and its safety rails.

One owner for: opening the database read-write, ``BEGIN IMMEDIATE`` within
``--busy-timeout``, the pre-write ``quick_check`` (alongside planning) and
backup (its check alongside the writes), row counts for
the conservation checks, and a COMMIT whose failure names its real cause.
Any exception before COMMIT rolls back: the database is either untouched or
completely changed.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import Field, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from atocore_identity.background import Background, in_background
from atocore_identity.backup import PendingBackup, backing_up
from atocore_identity.checks import Check
from atocore_identity.database import (
    all_tables,
    describe_sqlite_error,
    open_database,
    quick_check,
    quote_ident,
)
from atocore_identity.errors import DatabaseError, DatabaseLocked, InterruptedAfterCommit, Refused
from atocore_identity.reports import unique_path

# The rekey UPDATEs rewrite index pages all over the file; SQLite's default
# 2 MiB page cache spills to the journal again and again. 12 MiB halves the
# write phase at a million rows (16 MiB was no faster) and keeps peak RSS
# under budget with the background checks' connections beside it.
WRITE_CACHE_KIB = 12288
DEFAULT_CACHE = -2000  # SQLite's default cache_size (KiB, negative)


def busy(db: Path, busy_timeout: float, detail: str) -> Refused:
    """A lock held past --busy-timeout, at any point of a write, is a refusal."""
    return Refused(
        f"database {db} is busy: another process held its lock for more than"
        f" {busy_timeout:g}s ({detail})",
        "stop AtoCore's writers or raise --busy-timeout, then run again",
    )


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open: SQLITE_FULL and friends end it themselves."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


@contextmanager
def write_connection(db: Path, busy_timeout: float) -> Iterator[sqlite3.Connection]:
    """A read-write connection with foreign keys on; sqlite3 errors become typed errors."""
    try:
        conn = open_database(db, readonly=False, busy_timeout=busy_timeout)
    except DatabaseLocked as exc:
        raise busy(db, busy_timeout, exc.message) from None
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        yield conn
    except sqlite3.Error as exc:
        error = describe_sqlite_error(db, exc)
        if isinstance(error, DatabaseLocked):
            raise busy(db, busy_timeout, str(exc)) from None
        raise error from None
    finally:
        rollback_quietly(conn)
        conn.close()


def rollback_quietly(conn: sqlite3.Connection) -> None:
    # a failing ROLLBACK leaves nothing to do: SQLite rolls back on close anyway
    with contextlib.suppress(sqlite3.Error):
        rollback(conn)


def begin_immediate(conn: sqlite3.Connection, db: Path, busy_timeout: float) -> float:
    """Take the write lock; return how long it took."""
    started = time.perf_counter()
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise busy(db, busy_timeout, str(exc)) from None
    waited = time.perf_counter() - started
    # Prove the file writable before the backup and archive are written: a
    # read-only file or mount otherwise fails only at the first UPDATE.
    # Rewriting user_version with its own value changes nothing on rollback.
    (version,) = conn.execute("PRAGMA main.user_version").fetchone()
    try:
        conn.execute(f"PRAGMA main.user_version = {int(version)}")
    except sqlite3.OperationalError as exc:
        rollback_quietly(conn)
        raise Refused(
            f"database {db} cannot be written ({exc}); nothing was changed",
            "check the file's permissions and its directory's (the journal lives there)",
        ) from None
    return waited


@contextmanager
def checking_file(db: Path, busy_timeout: float) -> Iterator[Background[None]]:
    """``PRAGMA quick_check`` of the committed file on a second, read-only
    connection, started right after BEGIN IMMEDIATE: it runs while the caller
    plans under the write lock (nobody can commit meanwhile, and the caller
    writes nothing before ``backed_up`` has waited for it)."""

    def connect(stop: threading.Event) -> sqlite3.Connection:
        return open_database(db, readonly=True, busy_timeout=busy_timeout, stop=stop)

    with in_background(connect, lambda conn: quick_check(conn, db), "quick_check") as bg:
        yield bg


@dataclass
class BackupStep:
    """The backup of one write, published by ``publish`` before postconditions run."""

    pending: PendingBackup | None  # None: --no-backup
    timings: dict[str, float]

    def publish(self) -> tuple[Path | None, int]:
        """Wait for the copy's check, give the backup its name; (path, bytes)."""
        if self.pending is None:
            return None, 0
        started = time.perf_counter()
        size = self.pending.publish()
        self.timings["backup_check_wait"] = time.perf_counter() - started
        return self.pending.target, size


@contextmanager
def backed_up(
    db: Path,
    file_check: Background[None],
    report_dir: Path | None,
    timings: dict[str, float],
    say: Callable[[str], None],
) -> Iterator[BackupStep]:
    """Before the first write: wait for the file's quick_check, then copy the
    database into ``report_dir`` (None: --no-backup). The copy is checked
    while the block writes; the block calls ``publish`` before it commits.
    Times into ``timings``: the wait for quick_check, the copy, the wait for
    the copy's check."""
    say("checking the file (PRAGMA quick_check)")
    started = time.perf_counter()
    file_check.result()
    timings["quick_check"] = time.perf_counter() - started
    if report_dir is None:
        yield BackupStep(None, timings)
        return
    say("backing up")
    started = time.perf_counter()
    path, _ = unique_path(report_dir, "backup", ".db")
    with backing_up(db, path) as pending:
        timings["backup"] = time.perf_counter() - started
        yield BackupStep(pending, timings)


def row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per table, for every table: the postconditions compare them all, so
    a cascade or trigger touching a table the plan does not own rolls back."""
    out: dict[str, int] = {}
    for table in all_tables(conn):
        (out[table],) = conn.execute(f"SELECT COUNT(*) FROM main.{quote_ident(table)}").fetchone()
    return out


class CommitFailed(Exception):
    """COMMIT failed and the transaction was rolled back; ``hint`` says what to do."""

    def __init__(self, error: str, hint: str) -> None:
        super().__init__(error)
        self.error = error
        self.hint = hint


def commit(conn: sqlite3.Connection, db: Path, busy_timeout: float) -> None:
    """COMMIT, or roll back and raise CommitFailed naming the SQLite error."""
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        rollback_quietly(conn)
        text = str(exc)
        code = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        if "locked" in text or "busy" in text:
            hint = f"a reader held the database past --busy-timeout ({busy_timeout:g}s); run again"
        else:
            hint = (
                "if a journal file is left beside the database, open it read-write once"
                f" to recover it (`sqlite3 {db} 'PRAGMA integrity_check'`), then run again"
            )
        raise CommitFailed(f"COMMIT failed: {code}: {text}", hint) from None


def execute_writes(
    conn: sqlite3.Connection,
    db: Path,
    statements: Sequence[str],
    what: str,
    timings: dict[str, float],
) -> None:
    """Run the write statements in order, timed into ``timings["write"]``; on
    an SQLite error roll back and raise the error for a person (a corrupt
    file, a full disk, a refusal)."""
    started = time.perf_counter()
    try:
        # The TEMP tables are built: their cache goes back to SQLite's default
        # and the database's grows for the writes, so peak memory is the
        # larger of the two, not their sum.
        conn.execute(f"PRAGMA temp.cache_size = {DEFAULT_CACHE}")
        conn.execute(f"PRAGMA main.cache_size = {-WRITE_CACHE_KIB}")
        for sql in statements:
            conn.execute(sql)
    except sqlite3.Error as exc:
        rollback(conn)
        raise _write_failed(db, exc, what) from None
    timings["write"] = time.perf_counter() - started


def _write_failed(db: Path, exc: sqlite3.Error, what: str) -> DatabaseError | Refused:
    """A statement of the write phase failed; the caller has rolled back."""
    error = describe_sqlite_error(db, exc)
    if "corrupt" in error.message:
        return DatabaseError(f"{error.message}; {what} rolled back, nothing changed", error.hint)
    hint = "see docs/runbook.md"
    if "full" in str(exc):
        hint = "free disk space beside the database (its journal needs room), then run again"
    return Refused(f"{what} failed and was rolled back, nothing changed: {exc}", hint)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while COMMIT and its report update run.

    Blocking them in this thread is not enough: another thread (rich's
    progress bar refresh) may take a process-directed signal, and Python then
    runs the handler here at once. So for the block the handlers only note the
    signal, and the mask keeps one aimed at this thread pending. If the block
    finishes, the write is committed and reported: a signal that came
    meanwhile is raised as InterruptedAfterCommit, which says so instead of
    "rolled back". If the block raises, its own error (the rollback) goes on.
    """
    held = (signal.SIGINT, signal.SIGTERM)
    arrived: list[int] = []

    def note(signum: int, _frame: object) -> None:
        arrived.append(signum)

    handlers = {s: signal.signal(s, note) for s in held}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        for signum in sorted(signal.sigpending() & set(held)):
            if signal.sigtimedwait([signum], 0) is not None:
                arrived.append(signum)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        for signum, handler in handlers.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
    if arrived:
        raise InterruptedAfterCommit(arrived[0])


R = TypeVar("R")


class Outcome(Protocol):
    """apply's and revert's results: frozen dataclasses with a status, row
    counts after the write, timings and an error."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    @property
    def timings(self) -> dict[str, float]: ...


W = TypeVar("W", bound=Outcome)


def finished(status: str) -> Callable[[W, float], W]:
    """How a committed write reports itself: ``status``, and COMMIT's seconds."""

    def done(result: W, seconds: float) -> W:
        return replace(result, status=status, timings={**result.timings, "commit": seconds})

    return done


def rolled_back(before: dict[str, int]) -> Callable[[W, str], W]:
    """How a rolled-back write reports itself: nothing changed, so after = before."""
    return lambda result, error: replace(result, status="rolled-back", after=before, error=error)


class RolledBack(Refused, Generic[R]):
    """A postcondition or the COMMIT failed and the transaction rolled back;
    ``result`` is the run's result, for the report that says so."""

    def __init__(self, what: str, result: R, error: str, hint: str | None = None) -> None:
        super().__init__(
            f"{what} rolled back, nothing changed: {error}",
            hint or "this is a bug in atocore-identity; keep the reports and open an issue",
        )
        self.result = result


def refuse_failed_checks(
    conn: sqlite3.Connection,
    what: str,
    pending: R,
    found: Sequence[Check],
    failed: Callable[[R, str], R],
) -> None:
    """Before COMMIT: any failed postcondition rolls back and raises RolledBack
    with ``failed(pending, error)`` for the report that says so."""
    bad = [c for c in found if not c.ok]
    if bad:
        rollback(conn)
        error = "postcondition failed: " + bad[0].name
        raise RolledBack(what, failed(pending, error), error)


def commit_reported(
    conn: sqlite3.Connection,
    db: Path,
    busy_timeout: float,
    pending: R,
    *,
    what: str,
    committed: Callable[[R, float], R],
    failed: Callable[[R, str], R],
    before_commit: Callable[[R], None] | None = None,
    after_commit: Callable[[R], None] | None = None,
) -> R:
    """COMMIT between two report writes, signals held back until both ran.

    ``before_commit`` gets ``pending`` (its report says ``committing``), then
    COMMIT; ``committed(pending, seconds)`` or ``failed(pending, error)`` gives
    the final result; ``after_commit`` gets it. A failed COMMIT raises
    RolledBack naming the SQLite error.
    """
    with signals_deferred():
        if before_commit is not None:
            before_commit(pending)
        started = time.perf_counter()
        try:
            commit(conn, db, busy_timeout)
        except CommitFailed as exc:
            raise RolledBack(what, failed(pending, exc.error), exc.error, exc.hint) from None
        done = committed(pending, time.perf_counter() - started)
        if after_commit is not None:
            after_commit(done)
    return done
