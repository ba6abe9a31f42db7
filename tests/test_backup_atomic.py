"""apply's backup is published atomically, and input files must be regular files.

A file under a final ``backup-*.db`` name is always a complete copy: the copy
is made in a private ``.tmp-*.db`` file beside it and only linked to its name
once finished, checked and fsynced (backup.backup_to). The faults are real:
the kernel kills the copying process mid-write (RLIMIT_FSIZE with SIGXFSZ at
its default action), or the process SIGKILLs itself between the copy and the
publication (database.py's VM-step test hook). The runbook's restore,
``sqlite3 DB ".restore 'BACKUP'"``, of a final backup gives back the
pre-apply database.

The last tests are about the tool's inputs (issue 13, item 6): a FIFO, a
directory or a device given as --db or --registry is bad input (exit 2, one
line naming the file), never a process that hangs on open().
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from atocore_identity import database
from atocore_identity.backup import backup_to
from atocore_identity.errors import Refused
from conftest import (
    DEFAULT_REGISTRY,
    build_db,
    content_digest,
    legacy_tables,
    run_cli,
    write_registry,
)

PY = sys.executable


def legacy_db(path: Path, mode: str = "DELETE", extra: int = 5000) -> Path:
    """conftest.legacy_tables plus ``extra`` memories: a few hundred KB."""
    tables = legacy_tables()
    tables["memories"] = tables["memories"] + [
        (f"x{i:05d}", "fact", f"filler {i} " * 8, "p05" if i % 3 else "p04", "active", "2025-01-01")
        for i in range(extra)
    ]
    build_db(path, **tables)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute(f"PRAGMA journal_mode = {mode}").fetchone()[0] == mode.lower()
    finally:
        conn.close()
    return path


def integrity(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


BACKUP_CHILD = r"""
import resource, signal, sys
from pathlib import Path
from atocore_identity.backup import backup_to
limit = int(sys.argv[3])
if limit:
    # The kernel kills the process when a write passes the limit: a hard
    # stop in the middle of the copy, like a SIGKILL, at a deterministic byte.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
print(backup_to(Path(sys.argv[1]), Path(sys.argv[2])))
"""


def backup_child(
    db: Path, target: Path, limit: int = 0, kill_after_steps: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop(database.TEST_KILL_ENV, None)
    if kill_after_steps is not None:
        env[database.TEST_KILL_ENV] = str(kill_after_steps)
    return subprocess.run(
        [PY, "-c", BACKUP_CHILD, str(db), str(target), str(limit)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.mark.parametrize("mode", ["DELETE", "WAL"])
def test_killed_in_the_middle_of_the_copy_no_final_name_exists(tmp_path: Path, mode: str) -> None:
    db = legacy_db(tmp_path / "atocore.db", mode)
    size = db.stat().st_size
    reports = tmp_path / "reports"
    reports.mkdir()
    target = reports / "backup-20250101T000000.000000Z.db"
    done = backup_child(db, target, limit=size // 2)
    assert done.returncode == -signal.SIGXFSZ, (done.returncode, done.stderr)
    assert not target.exists()  # before this fix: a half-written backup under this name
    names = sorted(p.name for p in reports.iterdir())
    [tmp] = [n for n in names if n.startswith(".tmp-") and n.endswith(".db")]
    assert names == [tmp], names  # no -journal or -wal of the copy either
    assert (reports / tmp).stat().st_size <= size // 2
    assert not list(reports.glob("backup-*"))


@pytest.mark.parametrize("mode", ["DELETE", "WAL"])
def test_killed_after_the_copy_before_publication_no_final_name_exists(
    tmp_path: Path, mode: str
) -> None:
    """The hook kills at the first thousand VM steps, which are the copy's own
    quick_check: the copy is complete and yet, unchecked, not published."""
    db = legacy_db(tmp_path / "atocore.db", mode)
    reports = tmp_path / "reports"
    reports.mkdir()
    target = reports / "backup-20250101T000000.000000Z.db"
    done = backup_child(db, target, kill_after_steps=1)
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr)
    assert not target.exists()
    names = sorted(p.name for p in reports.iterdir())
    [tmp] = [n for n in names if n.startswith(".tmp-") and n.endswith(".db")]
    assert names == [tmp], names
    assert stat.S_IMODE((reports / tmp).stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", ["DELETE", "WAL"])
def test_a_finished_backup_is_complete_private_and_alone(tmp_path: Path, mode: str) -> None:
    db = legacy_db(tmp_path / "atocore.db", mode)
    before = content_digest(db)
    reports = tmp_path / "reports"
    reports.mkdir()
    target = reports / "backup-20250101T000000.000000Z.db"
    done = backup_child(db, target)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == target.stat().st_size
    assert sorted(p.name for p in reports.iterdir()) == [target.name]  # no temp, no side file
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert integrity(target) == ["ok"]
    assert content_digest(target) == before


def not_null_broken(path: Path) -> Path:
    """A database whose file is sound but which fails quick_check: a NULL in a
    column its schema (rewritten afterwards) declares NOT NULL. The backup API
    copies pages as they are, so the copy fails quick_check as well."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE projects (id TEXT PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO projects VALUES ('1', NULL)")
        conn.commit()
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute(
            "UPDATE sqlite_master SET sql = 'CREATE TABLE projects (id TEXT PRIMARY KEY,"
            " name TEXT NOT NULL)' WHERE name = 'projects'"
        )
        conn.commit()
    finally:
        conn.close()
    return path


def test_a_copy_that_fails_its_check_is_refused_and_never_published(
    tmp_path: Path, reliability: Callable[[str, str], None]
) -> None:
    """The copy's quick_check runs in the background (backup.backing_up); a copy
    that fails it is refused and removed, and nothing carries the backup's name."""
    db = not_null_broken(tmp_path / "atocore.db")
    before = db.read_bytes()
    reports = tmp_path / "reports"
    reports.mkdir()
    target = reports / "backup-20250101T000000.000000Z.db"
    with pytest.raises(Refused) as caught:
        backup_to(db, target)
    assert "fails quick_check" in caught.value.message
    assert "NULL value in projects.name" in caught.value.message
    assert list(reports.iterdir()) == []  # no backup, no temporary copy
    assert db.read_bytes() == before
    reliability(
        "the copy fails quick_check (a NULL under NOT NULL, copied as is)",
        f"refused ({caught.value.message.split(';')[0]}); report dir empty",
    )


@pytest.mark.parametrize("what", ["regular file", "symlink", "dangling symlink"])
def test_backup_never_overwrites_or_follows_a_planted_final_name(tmp_path: Path, what: str) -> None:
    db = legacy_db(tmp_path / "atocore.db", extra=0)
    reports = tmp_path / "reports"
    reports.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = reports / "backup-20250101T000000.000000Z.db"
    if what == "regular file":
        target.write_text("an earlier file")
    else:
        target.symlink_to(victim)
        if what == "dangling symlink":
            victim.unlink()
    with pytest.raises(Refused, match="already exists"):
        backup_to(db, target)
    assert sorted(p.name for p in reports.iterdir()) == [target.name]  # no temp left
    if what == "regular file":
        assert target.read_text() == "an earlier file"
    elif what == "symlink":
        assert victim.read_text() == "precious"


def restore(db: Path, backup: Path) -> None:
    """The runbook's restore: sqlite3's .restore, or the same backup API from Python."""
    sqlite3_cli = shutil.which("sqlite3")
    if sqlite3_cli is not None:
        quoted = str(backup).replace("'", "''")
        subprocess.run([sqlite3_cli, str(db), f".restore '{quoted}'"], check=True, timeout=60)
        return
    source = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    dest = sqlite3.connect(db)
    try:
        source.backup(dest)
    finally:
        dest.close()
        source.close()


@pytest.mark.parametrize("mode", ["DELETE", "WAL"])
def test_the_runbook_restore_of_an_apply_backup_gives_the_pre_apply_database(
    tmp_path: Path, mode: str
) -> None:
    db = legacy_db(tmp_path / "atocore.db", mode)
    registry = write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY)
    reports = tmp_path / "reports"
    before = content_digest(db)
    applied = run_cli(
        "apply", "--db", db, "--registry", registry, "--report-dir", reports, "--yes"
    )  # fmt: skip
    assert applied.code == 0, applied.stderr
    assert content_digest(db) != before
    assert not list(reports.glob(".tmp-*"))
    [backup] = list(reports.glob("backup-*.db"))
    copy = tmp_path / "copy.db"
    shutil.copyfile(db, copy)  # the migrated database, closed: no -wal to carry
    restore(copy, backup)
    assert integrity(copy) == ["ok"]
    assert content_digest(copy) == before


# --------------------------------------------------------------------------
# Inputs that are not regular files
# --------------------------------------------------------------------------


def inspect_child(db: Path, registry: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI in a child: a hang fails this test after 20 s, not CI after hours."""
    return subprocess.run(
        [PY, "-m", "atocore_identity", "inspect", "--db", str(db), "--registry", str(registry)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=20,
        cwd=db.parent,
    )


def one_line(stderr: str) -> bool:
    return stderr.startswith("Error: ") and stderr.count("\n") == 1 and "Traceback" not in stderr


@pytest.mark.parametrize("kind", ["FIFO", "directory", "character device", "socket"])
@pytest.mark.parametrize("which", ["--db", "--registry"])
def test_a_non_regular_input_file_is_bad_input_not_a_hang(
    tmp_path: Path, which: str, kind: str
) -> None:
    db = legacy_db(tmp_path / "atocore.db", extra=0)
    registry = write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY)
    odd = tmp_path / ("odd.db" if which == "--db" else "odd.json")
    if kind == "FIFO":
        os.mkfifo(odd)
    elif kind == "directory":
        odd.mkdir()
    elif kind == "character device":
        odd.symlink_to("/dev/null")  # a symlink is followed: this is /dev/null
    else:
        import socket

        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(str(odd))
        except OSError as exc:  # e.g. a path too long for sun_path
            pytest.skip(f"cannot bind a unix socket here: {exc}")
        sock.close()
    done = inspect_child(odd, registry) if which == "--db" else inspect_child(db, odd)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert one_line(done.stderr), done.stderr
    assert str(odd) in done.stderr
    assert {"FIFO": "FIFO", "directory": "directory", "character device": "device"}.get(
        kind, "socket"
    ) in done.stderr
    assert not list(tmp_path.glob("*-journal"))


def test_a_symlink_to_a_regular_file_is_fine(tmp_path: Path) -> None:
    db = legacy_db(tmp_path / "atocore.db", extra=0)
    registry = write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY)
    (tmp_path / "link.db").symlink_to(db)
    (tmp_path / "link.json").symlink_to(registry)
    done = inspect_child(tmp_path / "link.db", tmp_path / "link.json")
    assert done.returncode == 0, done.stderr
