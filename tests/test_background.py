"""background.in_background (a job on its own connection, collected or
cancelled) and discovery.discovering (discovery in a worker process).

Real SQLite files; the job's statement that never ends on its own (a
recursive count to 10^12) shows that leaving the block interrupts it through
the connection's progress handler (database.watch) and joins its thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from atocore_identity.background import in_background
from atocore_identity.database import main_file, open_database
from atocore_identity.discovery import discovering, discovering_shared
from atocore_identity.errors import DatabaseError
from atocore_identity.planner import build_plan
from atocore_identity.registry import Registry, load_registry
from atocore_identity.survey import discover_columns
from atocore_identity.targets import resolve_targets
from conftest import DEFAULT_REGISTRY, build_db, legacy_tables, run_cli, write_registry

ENDLESS = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000000)"
    " SELECT count(*) FROM c"
)


def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "atocore.db"
    build_db(path, **legacy_tables())
    return path


def with_tables(tmp_path: Path, script: str) -> tuple[Path, Registry]:
    """db_file plus the tables and rows of ``script``, and the default registry."""
    path = db_file(tmp_path)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(script)
    finally:
        conn.close()
    return path, load_registry(write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY))


def connector(path: Path) -> Callable[[threading.Event], sqlite3.Connection]:
    def connect(stop: threading.Event) -> sqlite3.Connection:
        return open_database(path, readonly=True, stop=stop)

    return connect


def test_a_job_returns_what_its_own_connection_read(tmp_path: Path) -> None:
    path = db_file(tmp_path)
    with in_background(
        connector(path), lambda c: c.execute("SELECT COUNT(*) FROM projects").fetchone()[0], "t"
    ) as bg:
        assert bg.result() == len(legacy_tables()["projects"])


def test_a_job_error_is_raised_where_the_result_is_collected(tmp_path: Path) -> None:
    path = db_file(tmp_path)
    with (
        in_background(connector(path), lambda c: c.execute("SELECT * FROM nope"), "t") as bg,
        pytest.raises(sqlite3.OperationalError, match="no such table: nope"),
    ):
        bg.result()


def test_leaving_the_block_early_interrupts_the_job_and_ends_its_thread(tmp_path: Path) -> None:
    path = db_file(tmp_path)
    started = threading.Event()

    def job(conn: sqlite3.Connection) -> int:
        started.set()
        return int(conn.execute(ENDLESS).fetchone()[0])

    with pytest.raises(KeyError), in_background(connector(path), job, "endless") as bg:
        assert started.wait(30)
        raise KeyError("the caller failed while the job ran")
    assert not bg._thread.is_alive()
    with pytest.raises(sqlite3.OperationalError, match="interrupted"):
        bg.result()


def test_plan_discovers_in_a_worker_process_and_reports_the_same(tmp_path: Path) -> None:
    """build_plan's discovery (discovery.discovering, a worker process) finds
    what discovery on the plan's own connection finds."""

    path, registry = with_tables(
        tmp_path,
        "CREATE TABLE conflicts (id INTEGER PRIMARY KEY, project TEXT);"
        " INSERT INTO conflicts (project) VALUES ('p05'), ('P05 '), ('x');",
    )
    main = open_database(path, readonly=True)
    try:
        assert main_file(main) == path.resolve()
        targets, missing = resolve_targets(main, [])
        plan = build_plan(main, registry, targets, missing, discover=True)
        inline = discover_columns(main, registry, targets)
    finally:
        main.close()
    assert plan.survey.discovery == inline
    [found] = inline.columns
    assert (found.table, found.column) == ("conflicts", "project")
    assert sum(n.count for n in found.names) == 2


def test_a_worker_that_cannot_open_the_database_is_one_clear_error(tmp_path: Path) -> None:
    """The worker opens the file by its path: gone since the plan's connection
    opened it, the worker's typed error comes back as itself (exit 2)."""

    path = db_file(tmp_path)
    registry = load_registry(write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY))
    main = open_database(path, readonly=True)
    try:
        targets, missing = resolve_targets(main, [])
        path.unlink()  # the open connection still reads the file
        with pytest.raises(DatabaseError) as caught:
            build_plan(main, registry, targets, missing, discover=True)
    finally:
        main.close()
    assert caught.value.exit_code == 2
    assert str(path) in caught.value.message and "\n" not in caught.value.message


@pytest.mark.parametrize("executable", ["", "/nonexistent/python", "/bin/false"])
def test_a_worker_that_cannot_run_is_replaced_by_discovery_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executable: str
) -> None:
    """No interpreter to start, one that cannot be started, one that dies at
    once: plan still discovers, inline, and finds the same columns."""

    path, registry = with_tables(
        tmp_path,
        "CREATE TABLE conflicts (id INTEGER PRIMARY KEY, project TEXT);"
        " INSERT INTO conflicts (project) VALUES ('p05');",
    )
    main = open_database(path, readonly=True)
    try:
        targets, _ = resolve_targets(main, [])
        expected = discover_columns(main, registry, targets)
        monkeypatch.setattr("sys.executable", executable)
        with discovering(main, registry, targets) as found:
            got = found()
    finally:
        main.close()
    assert got == expected
    assert [(c.table, c.column) for c in got.columns] == [("conflicts", "project")]


def test_a_plan_that_fails_after_its_companion_leaves_no_companion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """plan writes its companion while discovery runs; if the plan then fails
    (here: the worker's file is gone), no companion is left that no report names."""

    assert run_cli("demo", tmp_path / "demo").code == 0
    db, registry = tmp_path / "demo" / "atocore.db", tmp_path / "demo" / "registry.json"
    reports = tmp_path / "reports"
    import atocore_identity.discovery as discovery_mod

    real = discovery_mod._collect

    def collect_after_the_file_is_gone(proc):  # type: ignore[no-untyped-def]
        # the companion exists by now; the worker's answer is a typed error
        assert list(reports.glob("plan-*.rows.jsonl.gz"))

        raise DatabaseError("database gone", "restore it")

    monkeypatch.setattr(discovery_mod, "_collect", collect_after_the_file_is_gone)
    done = run_cli("plan", "--db", db, "--registry", registry, "--report-dir", reports)
    monkeypatch.setattr(discovery_mod, "_collect", real)
    assert done.code == 2, done.stderr
    assert "database gone" in done.stderr
    assert sorted(p.name for p in reports.iterdir()) == []


def test_two_workers_share_the_columns_and_find_what_one_pass_finds(tmp_path: Path) -> None:
    """inspect's discovery: the columns shared out between two workers, the
    results merged in discovery's own order, the statements sent back."""

    path, registry = with_tables(
        tmp_path,
        "CREATE TABLE conflicts (id INTEGER PRIMARY KEY, project TEXT, note TEXT);"
        " CREATE TABLE tags (label TEXT PRIMARY KEY, owner TEXT) WITHOUT ROWID;"
        " WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)"
        " INSERT INTO conflicts (project, note) SELECT v.p, v.q FROM n, (SELECT 'p05' AS p,"
        " 'x' AS q UNION ALL SELECT 'P06 ', 'p04' UNION ALL SELECT 'free text', 'y') AS v;"
        " INSERT INTO tags VALUES ('p05', 'me'), ('other', 'gigabit');",
    )
    main = open_database(path, readonly=True)
    try:
        targets, _ = resolve_targets(main, [])
        inline = discover_columns(main, registry, targets)
        with discovering_shared(main, registry, targets, workers=2, trace=True) as found:
            shared, statements = found()
    finally:
        main.close()
    assert shared == inline
    flagged = {(c.table, c.column) for c in shared.columns}
    assert {("conflicts", "project"), ("conflicts", "note"), ("tags", "label")} <= flagged
    grouped = [q for q in statements if " GROUP BY " in q]
    assert len(grouped) == len(inline.read)  # every column read once, by one worker
