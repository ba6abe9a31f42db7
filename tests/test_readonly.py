"""inspect, plan, resolve and verify never change the database (SPEC §5):
not its bytes, not its mtime, and no journal, WAL or shm file left behind."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from atocore_identity.database import open_database
from atocore_identity.planner import build_plan
from atocore_identity.registry import load_registry
from atocore_identity.targets import resolve_targets
from conftest import DEFAULT_REGISTRY, build_db, file_digest, run_cli, write_registry

P05 = "p05-interferometer"
SIDE_FILES = ("-journal", "-wal", "-shm")

PROJECTS = [("c", P05), ("s1", "p05"), ("s2", "interferometer")]
STATE = [
    ("a-c", "c", "cfg", "coating", "silver", "active", "2025-01-01"),
    ("a-1", "s1", "cfg", "coating", "gold", "active", "2025-02-01"),
    ("b-1", "s2", "cfg", "other", "x", "superseded", "2025-01-01"),
]
MEMORIES = [
    ("m1", "fact", "x", "p05", "active", "2025-01-01"),
    ("m2", "fact", "x", P05, "active", "2025-01-02"),
]
INTERACTIONS = [("i1", "P05")]


def _build(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return build_db(directory / "atocore.db", PROJECTS, STATE, MEMORIES, INTERACTIONS)


def _snapshot(db: Path) -> tuple[str, int, list[str]]:
    return (
        file_digest(db),
        os.stat(db).st_mtime_ns,
        sorted(p.name for p in db.parent.iterdir()),
    )


def _read_commands(db: Path, registry: Path, reports: Path) -> Iterator[tuple[str, list[str]]]:
    common = ["--db", str(db), "--registry", str(registry), "--report-dir", str(reports)]
    yield "inspect", ["inspect", *common]
    yield "inspect --sql", ["inspect", *common, "--sql"]
    yield "plan", ["plan", *common, "--format", "json"]
    yield "plan sql", ["plan", *common, "--format", "sql"]
    yield "resolve", ["resolve", *common, "--keep", "canonical", "--out", str(reports / "r.json")]
    yield "plan+res", ["plan", *common, "--resolutions", str(reports / "r.json")]
    yield "verify", ["verify", *common]


def _run_all_and_check(db: Path, registry: Path, reports: Path) -> None:
    before = _snapshot(db)
    for name, args in _read_commands(db, registry, reports):
        res = run_cli(*args)
        assert res.code in (0, 1), (name, res.stderr)  # verify fails on unmigrated data
        assert "Traceback" not in res.stderr
        assert _snapshot(db) == before, name
        for suffix in SIDE_FILES:
            assert not Path(str(db) + suffix).exists(), (name, suffix)


def test_read_commands_leave_database_untouched(tmp_path: Path) -> None:
    db = _build(tmp_path / "data")
    registry = write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY)
    _run_all_and_check(db, registry, tmp_path / "reports")


def test_read_commands_work_on_read_only_file(tmp_path: Path) -> None:
    db = _build(tmp_path / "data")
    registry = write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY)
    db.chmod(0o444)
    try:
        _run_all_and_check(db, registry, tmp_path / "reports")
        assert stat.S_IMODE(os.stat(db).st_mode) == 0o444
    finally:
        db.chmod(0o644)


def test_read_commands_work_in_read_only_directory(tmp_path: Path) -> None:
    # As root, permissions are bypassed: the point is then made by the next test,
    # which shows the tool's own connection cannot write.
    directory = tmp_path / "data"
    db = _build(directory)
    registry = write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY)
    db.chmod(0o444)
    directory.chmod(0o555)
    try:
        _run_all_and_check(db, registry, tmp_path / "reports")
    finally:
        directory.chmod(0o755)
        db.chmod(0o644)


def test_read_only_connection_refuses_writes(tmp_path: Path) -> None:
    db = _build(tmp_path / "data")
    before = file_digest(db)
    conn = open_database(db, readonly=True)
    try:
        # TEMP tables are allowed (the planner's decisions live there) ...
        registry = load_registry(write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY))
        targets, missing = resolve_targets(conn, [])
        plan = build_plan(conn, registry, targets, missing)
        assert plan.counts["shadow_rows_deleted"] == 2
        # ... but nothing in main, not even through the same connection.
        for sql in (
            "DELETE FROM projects",
            "UPDATE memories SET project = 'x'",
            "CREATE TABLE main.t (x)",
            "PRAGMA main.user_version = 7",
        ):
            with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only"):
                conn.execute(sql)
        with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only"):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO projects (id, name) VALUES ('z', 'z')")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
    assert file_digest(db) == before


def test_wal_database_left_as_found(tmp_path: Path) -> None:
    # AtoCore may run its database in WAL mode. Stopped cleanly, it leaves no
    # -wal/-shm; a read-only tool must not create them (SPEC: never change the
    # database, its mtime, or its journal).
    db = _build(tmp_path / "data")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode = WAL").fetchone() == ("wal",)
    conn.close()
    assert not Path(str(db) + "-wal").exists()
    registry = write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY)
    _run_all_and_check(db, registry, tmp_path / "reports")
