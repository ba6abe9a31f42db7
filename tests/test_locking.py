"""apply against a live writer: BEGIN IMMEDIATE and --busy-timeout (SPEC §5 apply).

Another connection holds the write lock; apply runs as a real process.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import Env, content_digest, legacy_tables, rows


def apply_process(env: Env, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atocore_identity", "apply", *env.args(), "--yes", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@contextmanager
def write_lock(db: Path) -> Iterator[sqlite3.Connection]:
    """A second connection that holds BEGIN IMMEDIATE (a RESERVED lock) on ``db``."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def test_apply_gives_up_cleanly_when_the_lock_is_held(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    before = content_digest(env.db)
    with write_lock(env.db):
        done = apply_process(env, "--busy-timeout", "1")
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error: ")
    assert "busy" in lines[0] or "lock" in lines[0]
    assert "Traceback" not in done.stderr
    assert content_digest(env.db) == before
    assert list(env.reports.glob("backup-*.db")) == []


def test_apply_gives_up_cleanly_when_an_exclusive_lock_is_held(make_env: Any) -> None:
    """A writer in the middle of its COMMIT holds an EXCLUSIVE lock (rollback journal):
    even reads wait. Timing out is the same refusal as with a RESERVED lock: exit 3."""
    env = make_env(**legacy_tables())
    before = content_digest(env.db)
    holder = sqlite3.connect(env.db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        done = apply_process(env, "--busy-timeout", "1")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    assert "busy" in lines[0] or "lock" in lines[0]
    assert content_digest(env.db) == before
    assert done.returncode == 3, done.stderr


def test_apply_waits_for_the_lock_and_then_succeeds(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    before = content_digest(env.db)
    with write_lock(env.db) as holder:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "atocore_identity", "apply", *env.args()),
                *("--yes", "--busy-timeout", "10", "--verbose"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # --verbose: one line per phase
            seen.append(line)
            if "waiting for the write lock" in line:
                break
        # apply now waits on BEGIN IMMEDIATE; the live writer finishes half a second later
        release = threading.Timer(0.5, lambda: holder.execute("ROLLBACK"))
        release.start()
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            release.cancel()
            release.join()
    assert proc.returncode == 0, "".join(seen) + err
    assert any("waiting for the write lock" in line for line in seen), seen
    assert content_digest(env.db) != before
    assert rows(
        env.db, "SELECT COUNT(*) FROM projects WHERE name IN ('p05', 'interferometer')"
    ) == [(0,)]
    assert len(list(env.reports.glob("backup-*.db"))) == 1


def test_lock_held_by_a_writer_with_pending_changes_is_not_overridden(make_env: Any) -> None:
    """The writer holding the lock has uncommitted changes; apply gives up, and the
    writer's commit afterwards is the only change to the database."""
    env = make_env(**legacy_tables())
    with write_lock(env.db) as holder:
        holder.execute("UPDATE memories SET content = 'edited' WHERE id = 'm5'")
        done = apply_process(env, "--busy-timeout", "0.5")
        assert done.returncode == 3, done.stderr
        holder.execute("COMMIT")
    assert rows(env.db, "SELECT content FROM memories WHERE id = 'm5'") == [("edited",)]
    assert rows(env.db, "SELECT COUNT(*) FROM projects") == [(7,)]
