"""The backup apply and revert take before their first write (SPEC §4).

One owner for how a backup is made and when it may carry its name. The copy
goes through SQLite's backup API into a private ``.tmp-*.db`` file beside
its final name (journal_mode OFF, so it never has a -journal or -wal of its
own), is fsynced, checked with ``PRAGMA quick_check``, then hard-linked to
its name (which fails rather than overwrite anything, a symlink included)
and the directory fsynced. A file under a backup's name is therefore always
a complete, checked copy, whenever the process dies; on any failure the
temporary file is removed.

``backing_up`` runs the copy's check in the background (``background.py``)
while the caller archives and writes inside its still-uncommitted
transaction, and publishes the backup only when the check passed: nothing is
committed before the backup exists under its name.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from atocore_identity.background import Background, in_background
from atocore_identity.database import immutable_uri, quick_check_problems, sqlite_uri, watch
from atocore_identity.errors import Refused


def create_private_file(path: Path) -> None:
    """Create an empty file readable by its owner only; never follow or reuse a path.

    O_EXCL refuses an existing file and also a symlink planted at the path.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise _exists(path) from None
    except OSError as exc:
        raise Refused(
            f"cannot create {path}: {exc.strerror}",
            "check that --report-dir is writable",
        ) from None
    os.close(fd)


def _exists(path: Path) -> Refused:
    return Refused(
        f"{path} already exists; refusing to overwrite or follow it",
        "move it away or choose another --report-dir",
    )


def _failed(target: Path, exc: BaseException) -> Refused:
    what = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return Refused(
        f"backup to {target} failed: {what}; nothing was changed",
        "free space in --report-dir or pass --no-backup if you have your own",
    )


class PendingBackup:
    """A copy made and fsynced under its temporary name, its check running."""

    def __init__(self, target: Path, tmp: Path, check: Background[None]) -> None:
        self.target = target
        self._tmp = tmp
        self._check = check

    def publish(self) -> int:
        """Wait for the copy's check, then give the copy its name; its size in bytes."""
        try:
            self._check.result()
        except (sqlite3.Error, OSError) as exc:
            raise _failed(self.target, exc) from None
        try:
            _link(self._tmp, self.target)
        except OSError as exc:
            raise _failed(self.target, exc) from None
        return self.target.stat().st_size


@contextmanager
def backing_up(db: Path, target: Path) -> Iterator[PendingBackup]:
    """Copy ``db`` now and check the copy in the background; the block
    publishes it (``PendingBackup.publish``) before it commits anything. On
    any exit the temporary file and the check are gone."""
    tmp = _copy(db, target)
    try:
        with in_background(
            lambda stop: _check_connection(tmp, stop),
            lambda conn: _check(conn, tmp),
            "backup-check",
        ) as bg:
            yield PendingBackup(target, tmp, bg)
    finally:
        _discard(tmp)


def backup_to(db: Path, target: Path) -> int:
    """The backup, made and published in one step; its size in bytes."""
    with backing_up(db, target) as pending:
        return pending.publish()


def _copy(db: Path, target: Path) -> Path:
    """The copy of ``db`` in a private temporary file beside ``target``, fsynced."""
    if target.exists() or target.is_symlink():
        raise _exists(target)
    tmp = target.parent / f".tmp-{secrets.token_hex(8)}.db"
    try:
        # created inside the try: a signal right after the open still removes it
        create_private_file(tmp)
        _copy_into(db, tmp)
        _fsync_path(tmp, os.O_RDONLY)
    except (sqlite3.Error, OSError) as exc:
        _discard(tmp)
        raise _failed(target, exc) from None
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def _copy_into(db: Path, tmp: Path) -> None:
    """Copy ``db`` into the empty file ``tmp`` through the backup API.

    The copy is read through a second, read-only connection: SQLite refuses
    to back up from a connection that holds a write transaction, and while
    the caller holds the write lock nobody else can commit, so the second
    connection sees exactly the state the plan was built from.
    """
    source = sqlite3.connect(sqlite_uri(db, "ro"), uri=True)
    try:
        watch(source)
        dest = sqlite3.connect(sqlite_uri(tmp, "rw"), uri=True, isolation_level=None)
        try:
            # No rollback journal or WAL for the copy: if the process dies the
            # whole temporary file is debris anyway, and nothing named after it
            # may be left beside it.
            dest.execute("PRAGMA journal_mode = OFF")
            source.backup(dest, pages=0)
        finally:
            dest.close()
    finally:
        source.close()


def _check_connection(tmp: Path, stop: threading.Event) -> sqlite3.Connection:
    # Nobody else knows the private temporary file: it is read as immutable,
    # so the copy of a WAL database gets no side files.
    conn = sqlite3.connect(immutable_uri(tmp), uri=True)
    watch(conn, stop)
    return conn


def _check(conn: sqlite3.Connection, path: Path) -> None:
    """The copy must pass quick_check and have no side file."""
    found = quick_check_problems(conn)
    if found:
        raise sqlite3.DatabaseError("the copy fails quick_check: " + "; ".join(found))
    for suffix in ("-journal", "-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists():
            raise sqlite3.DatabaseError(f"the copy left {side.name} behind")


def _link(tmp: Path, target: Path) -> None:
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise _exists(target) from None
    tmp.unlink()
    _fsync_path(target.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _discard(tmp: Path) -> None:
    """Remove a temporary copy and any side file SQLite gave it."""
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)


def _fsync_path(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
