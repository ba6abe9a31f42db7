"""SQLite access: opening safely, introspection and SQL quoting.

Nothing here knows the migration's rules. It opens an existing database
(never creating one), read-only for the read commands, and turns every way a
file can be unusable into a DatabaseError with one clear line.

Test hook: when ``ATOCORE_IDENTITY_TEST_KILL_AFTER_STEPS`` is set to N > 0,
every connection opened here or in ``backup.py`` counts SQLite VM instructions in steps of
1000, summed over the process, and the process SIGKILLs itself at the N-th
step (tests/test_kill_random.py); N = 0 only counts (``vm_kilosteps``).
Unset, it costs nothing.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from atocore_identity.errors import BadInput, DatabaseError, DatabaseLocked

SQLITE_MAGIC = b"SQLite format 3\x00"


def quote_ident(name: str) -> str:
    """Quote an identifier for SQL ("a""b")."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: object) -> str:
    """Render a value as an SQL literal that the sqlite3 shell accepts as is."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, bytes):
        return "X'" + value.hex() + "'"
    text = str(value)
    if "\x00" in text:
        # A NUL cannot appear inside a quoted literal; keep the value's type.
        return "CAST(X'" + text.encode("utf-8").hex() + "' AS TEXT)"
    return "'" + text.replace("'", "''") + "'"


def file_kind(mode: int) -> str | None:
    """What a non-regular file is, for an error message; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def read_regular_file(
    path: Path,
    what: str,
    *,
    expected: str = "a regular file",
    error: type[BadInput] = BadInput,
    hint: str | None = None,
    missing_hint: str | None = None,
    limit: int = -1,
) -> bytes:
    """The bytes of an input file (the first ``limit`` only, if given), which
    must be a regular file; a symlink to one is fine.

    Anything else (a FIFO, a directory, a device, a socket) is refused with one
    line naming the file, as ``error`` ("WHAT PATH is a FIFO (named pipe), not
    EXPECTED"). The kind is checked with stat, following symlinks, before any
    open: opening a FIFO for reading blocks until a writer appears, that is
    forever. The file is then opened non-blocking and its kind checked again
    on the descriptor, so one swapped for a FIFO in between cannot hang either.
    """
    try:
        kind = file_kind(os.stat(path).st_mode)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist", missing_hint or hint) from None
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror}", hint) from None
    if kind is not None:
        raise error(f"{what} {path} is {kind}, not {expected}", hint)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror}", hint) from None
    try:
        kind = file_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise error(f"{what} {path} is {kind}, not {expected}", hint)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(limit)
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror}", hint) from None
    finally:
        os.close(fd)


def _check_file(path: Path) -> None:
    """Refuse anything but an existing regular file holding an SQLite header
    (read_regular_file: a FIFO must not hang the tool)."""
    header = read_regular_file(
        path,
        "database",
        expected="an SQLite file",
        error=DatabaseError,
        hint="check the --db path",
        missing_hint="pass --db with the path of AtoCore's SQLite file;"
        " this tool never creates one",
        limit=len(SQLITE_MAGIC),
    )
    if header != SQLITE_MAGIC:
        raise DatabaseError(
            f"database {path} is not an SQLite database",
            "check the --db path",
        )


def describe_sqlite_error(path: Path, exc: sqlite3.Error) -> DatabaseError:
    """Turn an sqlite3 error into a one-line DatabaseError for a person."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return DatabaseLocked(
            f"database {path} is locked by another process ({text})",
            "wait for the writer to finish or raise --busy-timeout",
        )
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return DatabaseError(
            f"database {path} is corrupt ({text})",
            "restore it from a backup; run `sqlite3 DB 'PRAGMA integrity_check'` to see more",
        )
    if "readonly" in text or "read-only" in text:
        return DatabaseError(
            f"database {path} needs recovery from an interrupted write or is read-only ({text})",
            "open it read-write once (e.g. `sqlite3 DB 'PRAGMA integrity_check'`) "
            "so SQLite can roll back its journal",
        )
    return DatabaseError(f"database {path}: {text}")


def sqlite_uri(path: Path, mode: str) -> str:
    return f"file:{quote(str(path.absolute()))}?mode={mode}"


def immutable_uri(path: Path) -> str:
    """Read-only and immutable, for a copy nobody writes (a backup): a copy of
    a WAL database is flagged WAL, and even a ``mode=ro`` connection to it
    would create -wal and -shm files beside it."""
    return f"{sqlite_uri(path, 'ro')}&immutable=1"


# Planning probes its TEMP tables (the twin ranking: every active memory looks
# up the rekeyed ones) far more than SQLite's default 2 MiB temp cache holds
# at a million rows; 8 MiB takes about a third off that statement.
# transaction.execute_writes gives the memory back before the writes.
TEMP_CACHE_KIB = 8192

TEST_KILL_ENV = "ATOCORE_IDENTITY_TEST_KILL_AFTER_STEPS"
_KILOSTEP = 1000
_kilosteps_seen = 0


def vm_kilosteps() -> int:
    """Thousands of VM instructions counted by the test hook in this process."""
    return _kilosteps_seen


def watch(conn: sqlite3.Connection, stop: threading.Event | None = None) -> None:
    """Install the connection's progress handler: the SIGKILL test hook (module
    docstring) when its variable is set, and ``stop``, which interrupts the
    statement in flight once set (a background job being cancelled). SQLite
    calls it between VM steps only: a B-tree walk such as quick_check's runs
    to its end first, so a cancel may wait for that."""
    raw = os.environ.get(TEST_KILL_ENV)
    limit: int | None = None
    if raw is not None:
        try:
            limit = int(raw)
        except ValueError:
            limit = -1
        if limit < 0:
            raise DatabaseError(f"{TEST_KILL_ENV} must be a whole number, got {raw!r}")
    if limit is None and stop is None:
        return

    def tick() -> int:
        global _kilosteps_seen
        if limit is not None:
            _kilosteps_seen += 1
            if limit and _kilosteps_seen >= limit:
                os.kill(os.getpid(), signal.SIGKILL)
        return 1 if stop is not None and stop.is_set() else 0

    conn.set_progress_handler(tick, _KILOSTEP)


def open_database(
    path: Path,
    *,
    readonly: bool,
    busy_timeout: float = 5.0,
    stop: threading.Event | None = None,
) -> sqlite3.Connection:
    """Open an existing AtoCore database; never create one.

    Read-only connections use ``mode=ro`` so neither the file, its mtime nor
    its journal can change. Read-write connections (apply) use ``mode=rw``,
    which also refuses to create a file.
    """
    _check_file(path)
    try:
        conn = sqlite3.connect(
            sqlite_uri(path, "ro" if readonly else "rw"),
            uri=True,
            timeout=busy_timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise describe_sqlite_error(path, exc) from None
    try:
        watch(conn, stop)
        conn.execute("PRAGMA temp_store = FILE")
        conn.execute(f"PRAGMA temp.cache_size = {-TEMP_CACHE_KIB}")
        if not table_exists(conn, "projects"):
            raise DatabaseError(
                f"database {path} has no `projects` table",
                "is this AtoCore's database? check the --db path",
            )
    except sqlite3.Error as exc:
        conn.close()
        raise describe_sqlite_error(path, exc) from None
    except BaseException:
        conn.close()
        raise
    return conn


def _is_wal(path: Path) -> bool:
    # Header bytes 18 and 19 are the read and write format versions: 2 means WAL.
    with path.open("rb") as handle:
        header = handle.read(20)
    return len(header) == 20 and header[18] == 2


@contextmanager
def read_only(path: Path, busy_timeout: float = 5.0) -> Iterator[sqlite3.Connection]:
    """A read-only connection that leaves the database's directory as it found it.

    SQLite gives any reader of a WAL database its -wal and -shm side files and
    a read-only connection cannot remove them. When they did not exist before,
    a brief read-write connection lets SQLite itself remove them on close: it
    does so only when no other process has the database open, and it writes
    nothing to an empty WAL, so the database's bytes and mtime stay unchanged.
    """
    _check_file(path)
    side = [Path(str(path) + suffix) for suffix in ("-wal", "-shm")]
    tidy = _is_wal(path) and not any(p.exists() for p in side)
    conn = open_database(path, readonly=True, busy_timeout=busy_timeout)
    try:
        yield conn
    finally:
        conn.close()
        if tidy and any(p.exists() for p in side):
            _tidy_wal(path)


def _tidy_wal(path: Path) -> None:
    try:
        conn = sqlite3.connect(sqlite_uri(path, "rw"), uri=True, timeout=0)
        try:
            conn.execute("SELECT COUNT(*) FROM main.sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        pass  # read-only file or directory, or another process has it open


def main_file(conn: sqlite3.Connection) -> Path | None:
    """The file behind ``conn``'s main schema; None for a database in memory."""
    for _, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return Path(file) if file else None
    return None


def busy_timeout_of(conn: sqlite3.Connection) -> float:
    """``conn``'s busy timeout in seconds, for a second connection to wait as long."""
    (ms,) = conn.execute("PRAGMA busy_timeout").fetchone()
    return int(ms) / 1000


def quick_check_problems(conn: sqlite3.Connection) -> list[str]:
    """What ``PRAGMA quick_check`` finds wrong with ``conn``'s file (the first
    five); empty when it says ok."""
    found = [str(r[0]) for r in conn.execute("PRAGMA main.quick_check(5)")]
    return [] if found == ["ok"] else found


def quick_check(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse to migrate a damaged file: PRAGMA quick_check must say ok."""
    found = quick_check_problems(conn)
    if found:
        raise DatabaseError(
            f"database {path} is corrupt ({'; '.join(found)})",
            "restore it from a backup; `sqlite3 DB 'PRAGMA integrity_check'` shows more",
        )


def table_exists(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None


def table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    """Column names of a table, in declaration order; [] if it does not exist."""
    rows = conn.execute(f"PRAGMA main.table_info({quote_ident(table)})").fetchall()
    return [str(r[1]) for r in rows]


def text_columns(conn: sqlite3.Connection) -> list[str]:
    """Every TABLE.COLUMN whose declared type has TEXT affinity (for completion)."""
    out: list[str] = []
    tables = conn.execute(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    for (table,) in tables:
        for row in conn.execute(f"PRAGMA main.table_info({quote_ident(table)})"):
            declared = str(row[2]).upper()
            if "CHAR" in declared or "CLOB" in declared or "TEXT" in declared:
                out.append(f"{table}.{row[1]}")
    return out


def all_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " ORDER BY name"
    ).fetchall()
    return [str(r[0]) for r in rows]


def tables_referencing(conn: sqlite3.Connection, target: str) -> list[tuple[str, str, str]]:
    """(table, child column, parent column) for every foreign key that points at
    ``target`` (the parent column is "id" when the key names no column)."""
    refs: list[tuple[str, str, str]] = []
    for table in all_tables(conn):
        for row in conn.execute(f"PRAGMA main.foreign_key_list({quote_ident(table)})"):
            if str(row[2]).lower() == target.lower():
                refs.append((table, str(row[3]), "id" if row[4] is None else str(row[4])))
    return refs


@contextmanager
def traced(conn: sqlite3.Connection, sink: Callable[[str], None]) -> Iterator[None]:
    """Send every statement the connection runs to ``sink`` while the block runs."""
    conn.set_trace_callback(sink)
    try:
        yield
    finally:
        conn.set_trace_callback(None)
