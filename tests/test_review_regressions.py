"""Regressions for defects found in review: cascades into tables the plan does
not own, NOCASE columns, odd schemas, a failed COMMIT, bad --out paths."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import TS, content_digest, rows, run_cli

REG = [{"id": "p05-interferometer", "aliases": ["p05", "interferometer"]}]
SHADOWED = {
    "registry": REG,
    "projects": [("c", "p05-interferometer"), ("s", "p05")],
    "state": [
        ("s1", "c", "k", "x", "v", "active", TS),
        ("s2", "s", "k", "x", "v", "superseded", "2024-01-01"),
    ],
    "memories": [("m1", "fact", "a", "p05", "active", TS)],
}


def _cli_args(tmp_path: Path, db: Path) -> list[str | Path]:
    """--db DB, a registry of REG and a report dir in ``tmp_path``."""
    reg = tmp_path / "reg.json"
    reg.write_text(json.dumps({"projects": REG}))
    return ["--db", db, "--registry", reg, "--report-dir", tmp_path / "r"]


def _sql(db: Path, script: str) -> None:
    conn = sqlite3.connect(db)
    conn.executescript(script)
    conn.close()


def test_rows_referencing_an_archived_state_row_block_apply(make_env: Any) -> None:
    env = make_env(**SHADOWED)
    _sql(
        env.db,
        "CREATE TABLE state_notes (id INTEGER PRIMARY KEY, state_id TEXT"
        " REFERENCES project_state(id) ON DELETE CASCADE, note TEXT);"
        "INSERT INTO state_notes (state_id, note) VALUES ('s2', 'keep me');",
    )
    before = content_digest(env.db)
    result = env.run("apply", "--yes")
    assert result.code == 3, result.stderr
    assert "state_notes.state_id" in result.stderr
    assert content_digest(env.db) == before


def test_rows_referencing_a_shadow_by_name_block_apply(make_env: Any) -> None:
    env = make_env(**SHADOWED)
    _sql(
        env.db,
        "CREATE TABLE project_links (id INTEGER PRIMARY KEY, project_name TEXT"
        " REFERENCES projects(name) ON DELETE CASCADE, url TEXT);"
        "INSERT INTO project_links (project_name, url) VALUES ('p05', 'keep');",
    )
    before = content_digest(env.db)
    result = env.run("apply", "--yes")
    assert result.code == 3, result.stderr
    assert "project_links.project_name" in result.stderr
    assert content_digest(env.db) == before


def test_variant_spellings_in_a_nocase_column_are_migrated(tmp_path: Path) -> None:
    db = tmp_path / "nocase.db"
    _sql(
        db,
        "CREATE TABLE projects (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
        "CREATE TABLE memories (id TEXT PRIMARY KEY, memory_type TEXT, content TEXT,"
        " project TEXT COLLATE NOCASE, status TEXT, updated_at TEXT);"
        "CREATE INDEX idx_memories_project ON memories(project);"
        "INSERT INTO memories VALUES ('m1', 'fact', 'a', 'p05-interferometer', 'active', 'x'),"
        " ('m2', 'fact', 'b', 'P05-Interferometer', 'active', 'x');",
    )
    common = _cli_args(tmp_path, db)
    planned = run_cli("plan", *common, "--detailed-exitcode", "--format", "json")
    assert planned.code == 4, planned.stderr
    assert planned.json()["counts"]["memories_rekeyed"] == 1
    assert run_cli("apply", *common, "--yes").code == 0
    assert rows(db, "SELECT id, project FROM memories ORDER BY id") == [
        ("m1", "p05-interferometer"),
        ("m2", "p05-interferometer"),
    ]


def test_twins_in_nocase_columns_are_matched_exactly(tmp_path: Path) -> None:
    # The twin search compares content, type and project byte for byte
    # whatever collation the columns declare: 'Note' is no twin of 'note'.
    db = tmp_path / "nocase-twins.db"
    _sql(
        db,
        "CREATE TABLE projects (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
        "CREATE TABLE memories (id TEXT PRIMARY KEY, memory_type TEXT COLLATE NOCASE,"
        " content TEXT COLLATE NOCASE, project TEXT COLLATE NOCASE, status TEXT,"
        " updated_at TEXT);"
        "CREATE INDEX idx_memories_project ON memories(project);"
        "INSERT INTO memories VALUES"
        " ('c1', 'fact', 'Note', 'p05-interferometer', 'active', '2024-01-01'),"
        " ('a1', 'fact', 'note', 'p05', 'active', '2024-02-01'),"
        " ('c2', 'fact', 'same', 'p05-interferometer', 'active', '2024-01-01'),"
        " ('a2', 'fact', 'same', 'p05', 'active', '2024-02-01'),"
        " ('c3', 'Fact', 'kind', 'p05-interferometer', 'active', '2024-01-01'),"
        " ('a3', 'fact', 'kind', 'p05', 'active', '2024-02-01'),"
        # two canonical twins the migration does not touch: a rekeyed 'word'
        # matched to them without case would rank them and supersede one
        " ('c4', 'fact', 'Word', 'p05-interferometer', 'active', '2024-01-01'),"
        " ('c5', 'fact', 'Word', 'p05-interferometer', 'active', '2024-03-01'),"
        " ('a4', 'fact', 'word', 'p05', 'active', '2024-02-01');",
    )
    common = _cli_args(tmp_path, db)
    planned = run_cli("plan", *common, "--format", "json")
    assert planned.code == 0, planned.stderr
    assert planned.json()["counts"]["memories_superseded"] == 1
    assert run_cli("apply", *common, "--yes").code == 0
    assert rows(db, "SELECT id, status FROM memories ORDER BY id") == [
        ("a1", "active"),
        ("a2", "active"),
        ("a3", "active"),
        ("a4", "active"),
        ("c1", "active"),
        ("c2", "superseded"),
        ("c3", "active"),
        ("c4", "active"),
        ("c5", "active"),
    ]


def test_plan_works_without_a_project_state_table(tmp_path: Path) -> None:
    db = tmp_path / "nostate.db"
    _sql(
        db,
        "CREATE TABLE projects (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE);"
        "INSERT INTO projects VALUES ('c', 'p05-interferometer'), ('s', 'p05');",
    )
    result = run_cli("plan", *_cli_args(tmp_path, db), "--format", "json")
    assert result.code == 0, result.stderr
    assert result.json()["counts"]["shadow_rows_deleted"] == 1


def test_a_failed_commit_leaves_no_report_claiming_it_committed(make_env: Any) -> None:
    env = make_env(**SHADOWED)
    before = content_digest(env.db)
    reader = sqlite3.connect(env.db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM projects").fetchone()  # holds SHARED until COMMIT
    try:
        result = env.run("apply", "--yes", "--busy-timeout", "0.2")
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert result.code == 3, result.stderr
    assert content_digest(env.db) == before
    statuses = sorted(json.loads(p.read_text())["status"] for p in env.reports.glob("apply-*.json"))
    assert "committing" not in statuses and "applied" not in statuses
    assert "rolled-back" in statuses


def test_column_names_match_as_sqlite_matches_them(make_env: Any) -> None:
    env = make_env(**SHADOWED)
    owned = env.run("plan", "--column", "PROJECTS.Name")
    assert owned.code == 2 and "owned by the migration" in owned.stderr
    same = env.run("plan", "--column", "MEMORIES.Project", "--format", "json")
    assert same.code == 0, same.stderr
    assert same.json()["targets"] == ["memories.project", "interactions.project"]


def test_projects_without_a_name_column_is_bad_input(tmp_path: Path) -> None:
    db = tmp_path / "odd.db"
    _sql(
        db,
        "CREATE TABLE projects (id TEXT PRIMARY KEY, title TEXT);"
        "INSERT INTO projects VALUES ('s', 'p05');",
    )
    result = run_cli("inspect", *_cli_args(tmp_path, db))
    assert result.code == 2
    assert result.stderr.startswith("Error:") and "name" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_plan_out_into_a_missing_directory_is_one_clear_line(make_env: Any) -> None:
    env = make_env(**SHADOWED)
    result = env.run("plan", "--out", env.root / "nope" / "plan.json")
    assert result.code == 2
    assert "does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_commands_run_with_stderr_closed(make_env: Any) -> None:
    # fd 2 closed (a cron job, `2>&-`): Python's sys.stderr is None; progress
    # and chatter have nowhere to go, the command still does its work
    env = make_env(**SHADOWED)
    closed = ["bash", "-c", 'exec "$@" 2>&-', "_", sys.executable, "-m", "atocore_identity"]
    planned = subprocess.run(
        [*closed, "plan", *env.args(), "--format", "json"],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        timeout=120,
    )
    assert planned.returncode == 0
    assert json.loads(planned.stdout)["counts"]["shadow_rows_deleted"] == 1
    applied = subprocess.run(
        [*closed, "apply", *env.args(), "--yes"],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        timeout=120,
    )
    assert applied.returncode == 0, applied.stdout
    assert rows(env.db, "SELECT id, name FROM projects") == [("c", "p05-interferometer")]
