"""revert --report APPLY_REPORT (SPEC §7): the inverse of an apply, computed
from its archive and from the database as it is now.

Every test runs the real CLI in-process on real SQLite files built from the
packaged schema (conftest), and judges the result by the database's content:
a canonical dump of every table, column by name, row by row, compared with
the apply's backup, with the same edits applied to a copy of the backup when
rows were written since the apply. Rows written since are kept; rows changed
since refuse (exit 3) or, with --skip-changed, are left and recorded;
restores that would clash with the database now are conflicts (exit 3).
"""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import atocore_identity.database as database
from conftest import (
    Env,
    Result,
    build_db,
    file_digest,
    legacy_tables,
    rows,
    run_cli,
    write_registry,
)

Dump = dict[str, list[tuple[Any, ...]]]

# Real databases carry more than the reference schema: columns the migration
# does not own on the tables it writes, and a project-keyed table of its own.
EXTRAS = """
ALTER TABLE projects ADD COLUMN owner TEXT;
ALTER TABLE project_state ADD COLUMN owner TEXT;
UPDATE projects SET owner = 'owner of ' || id;
UPDATE project_state SET owner = 'owner of ' || id;
CREATE TABLE conflicts (id TEXT PRIMARY KEY, project TEXT, summary TEXT);
INSERT INTO conflicts VALUES ('cf1', 'p05', 'one'), ('cf2', ' Polisher', 'two'),
    ('cf3', 'scratch', 'three'), ('cf4', 'p05-interferometer', 'four');
"""


def dump(db: Path) -> Dump:
    """Every table (and the schema), each row as sorted (column, value) pairs,
    rows sorted: equal dumps mean equal content, whatever the page layout."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out: Dump = {
            "sqlite_master": sorted(
                conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"), key=repr
            )
        }
        for (table,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ):
            cur = conn.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cur.description]
            out[table] = sorted((tuple(sorted(zip(names, r, strict=True))) for r in cur), key=repr)
        return out
    finally:
        conn.close()


def execute(db: Path, script: str, foreign_keys: bool = True) -> None:
    """A write by the service, committed, between the apply and the revert."""
    conn = sqlite3.connect(db)
    try:
        conn.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        conn.executescript(f"BEGIN; {script}; COMMIT;")  # one transaction, one fsync
    finally:
        conn.close()


def one_line_error(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def healthy(db: Path) -> None:
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert rows(db, "PRAGMA foreign_key_check") == []


@dataclass
class Applied:
    """A database after a real apply, its report and the apply's backup."""

    env: Env
    report: Path
    backup: Path
    scratch: Path

    def revert(self, *extra: str | Path) -> Result:
        return self.env.run("revert", "--report", self.report, *extra)

    def listed(self, *extra: str) -> dict[str, str]:
        """key -> state of every row a dry run lists (changed or conflict)."""
        result = self.revert("--dry-run", "--format", "json", *extra)
        assert result.code == 0, result.stderr
        return {str(x["key"]): x["state"] for x in result.json()["listed"]}

    def expected(self, script: str = "", foreign_keys: bool = True) -> Dump:
        """The backup's content with ``script`` run on a copy of it: what a
        revert must leave when ``script`` ran on the database since the apply."""
        copy = self.scratch / f"expected-{len(list(self.scratch.iterdir()))}.db"
        shutil.copyfile(self.backup, copy)
        if script:
            execute(copy, script, foreign_keys)
        return dump(copy)

    def revert_reports(self) -> list[dict[str, Any]]:
        return [
            json.loads(p.read_text("utf-8")) for p in sorted(self.env.reports.glob("revert-*.json"))
        ]


def apply_env(env: Env, *extra: str | Path) -> Applied:
    result = env.run("apply", "--yes", *extra)
    assert result.code == 0, result.stderr
    [report] = sorted(env.reports.glob("apply-*.json"))
    [backup] = sorted(env.reports.glob("backup-*.db"))
    scratch = env.root / "scratch"
    scratch.mkdir()
    return Applied(env, report, backup, scratch)


def legacy(make_env: Any) -> Applied:
    """conftest.legacy_tables (every outcome) plus EXTRAS, applied with
    --column conflicts.project."""
    env = make_env(**legacy_tables())
    execute(env.db, EXTRAS)
    return apply_env(env, "--column", "conflicts.project")


def demo(tmp_path: Path) -> Applied:
    """`atocore-identity demo` (an extra column on projects, a conflicts table)
    plus an extra column on project_state, resolved and applied."""
    root = tmp_path / "demo"
    made = run_cli("demo", root)
    assert made.code == 0, made.stderr
    env = Env(root, root / "atocore.db", root / "registry.json", root / "reports")
    execute(
        env.db,
        "ALTER TABLE project_state ADD COLUMN owner TEXT;"
        " UPDATE project_state SET owner = 'owner of ' || id;"
        " UPDATE projects SET owner = 'owner of ' || id;",
    )
    resolved = env.run("resolve", "--keep", "canonical", "--out", root / "res.json")
    assert resolved.code == 0, resolved.stderr
    return apply_env(env, "--resolutions", root / "res.json", "--column", "conflicts.project")


def revert_records(report: dict[str, Any], reports: Path) -> list[dict[str, Any]]:
    with gzip.open(reports / report["companion"], "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# -- round trip ------------------------------------------------------------------


@pytest.mark.parametrize("source", ["demo", "legacy"])
def test_round_trip_restores_every_table_and_a_second_revert_finds_nothing(
    source: str, make_env: Any, tmp_path: Path
) -> None:
    a = demo(tmp_path) if source == "demo" else legacy(make_env)
    migrated = dump(a.env.db)
    assert migrated != dump(a.backup)
    assert rows(a.env.db, "SELECT COUNT(*) FROM conflicts WHERE project = 'p05'") == [(0,)]

    result = a.revert("--yes", "--format", "json")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["kind"] == "revert" and doc["status"] == "reverted"
    assert doc["counts"]["to_revert"] > 0
    assert doc["counts"]["changed_since"] == doc["counts"]["conflicts"] == 0
    assert all(c["ok"] for c in doc["postconditions"]), doc["postconditions"]
    # every table, row for row and column for column, as the apply's backup
    assert dump(a.env.db) == dump(a.backup)
    healthy(a.env.db)
    # revert's own backup holds the database as the apply left it
    revert_backup = a.env.reports / doc["backup"]["path"]
    assert revert_backup != a.backup and dump(revert_backup) == migrated
    # its companion records every reverted row, none skipped
    records = revert_records(doc, a.env.reports)
    assert {r["record"] for r in records} == {"revert"}
    assert {r["action"] for r in records} == {"reverted"}
    assert len(records) == doc["counts"]["to_revert"]
    # the registry still maps the aliases: revert says so
    assert doc["aliases_still_mapped"]

    sha = file_digest(a.env.db)
    backups = sorted(a.env.reports.glob("backup-*.db"))
    again = a.revert("--yes")
    assert again.code == 0, again.stderr
    assert "nothing to revert" in again.stdout
    assert file_digest(a.env.db) == sha
    assert sorted(a.env.reports.glob("backup-*.db")) == backups
    assert a.revert_reports()[-1]["status"] == "empty"


def test_text_output_says_the_registry_still_maps_the_aliases(make_env: Any) -> None:
    a = legacy(make_env)
    result = a.revert("--yes")
    assert result.code == 0, result.stderr
    assert "still maps" in result.stdout and "'p05'" in result.stdout
    assert dump(a.env.db) == dump(a.backup)


# -- writes since the apply --------------------------------------------------------

WRITTEN_SINCE = """
INSERT INTO memories (id, memory_type, content, project, status, created_at, updated_at)
    VALUES ('m-new', 'fact', 'written since', 'p05-interferometer', 'active', '2025-09-01',
    '2025-09-01');
INSERT INTO project_state (id, project_id, category, key, value, status, created_at,
    updated_at, owner)
    VALUES ('s-new', 'pc05', 'cfg', 'new', 'fresh', 'active', '2025-09-01', '2025-09-01', 'svc');
INSERT INTO interactions (id, prompt, project, created_at)
    VALUES ('i-new', 'q', 'p06-polisher', '2025-09-01');
INSERT INTO conflicts VALUES ('cf-new', 'p05-interferometer', 'since');
UPDATE memories SET content = 'alpha, edited since', updated_at = '2025-09-02' WHERE id = 'm1';
UPDATE memories SET confidence = 0.25 WHERE id = 'm2';
UPDATE project_state SET value = 'only, edited since', owner = 'svc' WHERE id = 's3';
UPDATE project_state SET status = 'superseded' WHERE id = 's9';
UPDATE projects SET description = 'edited since', owner = 'svc' WHERE id = 'ps06';
UPDATE interactions SET response = 'answered since' WHERE id = 'i1';
UPDATE conflicts SET summary = 'edited since' WHERE id = 'cf1';
"""


def test_rows_written_and_columns_edited_since_the_apply_are_kept(make_env: Any) -> None:
    a = legacy(make_env)
    execute(a.env.db, WRITTEN_SINCE)
    result = a.revert("--yes")
    assert result.code == 0, result.stderr
    # the backup with the same writes: new rows stay where they were written,
    # an edited moved row goes back to its shadow with its new value
    assert dump(a.env.db) == a.expected(WRITTEN_SINCE)
    assert rows(a.env.db, "SELECT project_id, value FROM project_state WHERE id = 's3'") == [
        ("ps05", "only, edited since")
    ]
    assert rows(a.env.db, "SELECT project, content FROM memories WHERE id = 'm1'") == [
        ("p05", "alpha, edited since")
    ]
    assert rows(a.env.db, "SELECT project FROM memories WHERE id = 'm-new'") == [
        ("p05-interferometer",)
    ]
    assert rows(a.env.db, "SELECT project_id FROM project_state WHERE id = 's-new'") == [("pc05",)]
    healthy(a.env.db)


# -- changed since -----------------------------------------------------------------

CHANGED = {
    "rekeyed memory re-projected": (
        "UPDATE memories SET project = 'p04-gigabit' WHERE id = 'm1'", "m1"),
    "rekeyed memory respelled": ("UPDATE memories SET project = 'P05' WHERE id = 'm3'", "m3"),
    "moved state row moved on": (
        "UPDATE project_state SET project_id = 'pc04' WHERE id = 's3'", "s3"),
    "moved state row deleted": ("DELETE FROM project_state WHERE id = 's3'", "s3"),
    "superseded memory invalidated": (
        "UPDATE memories SET status = 'invalid' WHERE id = 'm2'", "m2"),
    "renamed shadow renamed again": (
        "UPDATE projects SET name = 'polisher-2' WHERE id = 'ps06'", "ps06"),
    "rekeyed interaction deleted": ("DELETE FROM interactions WHERE id = 'i1'", "i1"),
    "rekeyed extra column edited": (
        "UPDATE conflicts SET project = 'scratch' WHERE id = 'cf1'", "cf1"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CHANGED))
def test_a_row_changed_since_refuses_and_skip_changed_leaves_and_records_it(
    case: str, make_env: Any
) -> None:
    script, key = CHANGED[case]
    a = legacy(make_env)
    execute(a.env.db, script)
    sha = file_digest(a.env.db)

    refused = a.revert("--yes")
    assert refused.code == 3, refused.stderr
    line = one_line_error(refused)
    assert "changed since" in line and repr(key) in line
    assert file_digest(a.env.db) == sha
    assert a.listed() == {key: "changed"}
    assert list(a.env.reports.glob("refused-revert-*.json"))

    skipped = a.revert("--yes", "--skip-changed")
    assert skipped.code == 0, skipped.stderr
    # the changed row keeps what was written since, everything else is reverted
    assert dump(a.env.db) == a.expected(script)
    healthy(a.env.db)
    [report] = [r for r in a.revert_reports() if r["status"] == "reverted"]
    assert report["counts"]["changed_since"] == 1 and report["skip_changed"] is True
    assert [(x["key"], x["state"]) for x in report["listed"]] == [(key, "changed")]
    records = revert_records(report, a.env.reports)
    skipped_records = [r for r in records if r["action"] == "skipped"]
    assert [(r["record"], r["key"]) for r in skipped_records] == [("revert", key)]
    assert len(records) - 1 == report["counts"]["to_revert"]

    # the skipped row stays skipped: a second revert has nothing left but it
    again = a.revert("--yes", "--skip-changed")
    assert again.code == 0 and "nothing to revert" in again.stdout, again.stderr


def test_an_archived_rows_id_reused_since_is_never_overwritten(make_env: Any) -> None:
    """s2 was archived (deleted) by the apply; the service wrote a new row
    under the same id. SPEC §7: changed since (present, not as before) or a
    conflict (the restore would clash): never restored over it."""
    a = legacy(make_env)
    reuse = (
        "INSERT INTO project_state (id, project_id, category, key, value, status, created_at,"
        " updated_at) VALUES ('s2', 'pc05', 'cfg', 'zz', 'new fact', 'active', '2025-09-01',"
        " '2025-09-01')"
    )
    execute(a.env.db, reuse)
    sha = file_digest(a.env.db)
    refused = a.revert("--yes")
    assert refused.code == 3
    assert "'s2'" in one_line_error(refused)
    assert file_digest(a.env.db) == sha
    listed = a.listed()
    assert set(listed) == {"s2"} and listed["s2"] in ("changed", "conflict")

    skipped = a.revert("--yes", "--skip-changed")
    if listed["s2"] == "conflict":
        assert skipped.code == 3 and file_digest(a.env.db) == sha
        return
    assert skipped.code == 0, skipped.stderr
    # the new row keeps its id and content; the archived s2 is not restored
    assert dump(a.env.db) == a.expected("DELETE FROM project_state WHERE id = 's2'; " + reuse)


# -- conflicts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shadow"),
    [("p05", "ps05"), ("P05", "ps05"), (" Interferometer ", "ps05b"), ("P06", "ps06")],
)
def test_a_projects_row_named_like_a_shadow_is_a_conflict(
    name: str, shadow: str, make_env: Any
) -> None:
    """A deleted shadow cannot come back, nor a renamed one take its old name
    back, while another row holds that name (folded: 'P05' clashes with 'p05')."""
    a = legacy(make_env)
    execute(a.env.db, f"INSERT INTO projects (id, name) VALUES ('new-row', '{name}')")
    sha = file_digest(a.env.db)
    for extra in ((), ("--skip-changed",)):
        refused = a.revert("--yes", *extra)
        assert refused.code == 3, refused.stderr
        line = one_line_error(refused)
        assert "conflict" in line and repr(shadow) in line
        assert file_digest(a.env.db) == sha
    # its state rows, left without their project row, are listed too
    assert a.listed()[shadow] == "conflict"


def test_a_projects_row_with_a_deleted_shadows_id_is_a_conflict(make_env: Any) -> None:
    """SPEC §7: 'a projects row with the shadow's name or id exists again' is a
    conflict, refused even with --skip-changed."""
    a = legacy(make_env)
    execute(a.env.db, "INSERT INTO projects (id, name) VALUES ('ps05', 'brand-new')")
    sha = file_digest(a.env.db)
    assert a.revert("--yes").code == 3
    assert a.listed().get("ps05") == "conflict"
    skipped = a.revert("--yes", "--skip-changed")
    assert skipped.code == 3, "state rows moved under 'brand-new'"
    assert file_digest(a.env.db) == sha


def test_a_state_row_at_an_archived_rows_triple_is_a_conflict(make_env: Any) -> None:
    """s6 (pc05, cfg, d) was archived as history of s7, moved under pc05. The
    service replaced s7 by a new row at the same triple: restoring s6 would
    clash with UNIQUE(project_id, category, key)."""
    a = legacy(make_env)
    execute(
        a.env.db,
        "DELETE FROM project_state WHERE id = 's7';"
        " INSERT INTO project_state (id, project_id, category, key, value, status, updated_at)"
        " VALUES ('s-new', 'pc05', 'cfg', 'd', 'v2', 'active', '2025-09-01');",
    )
    sha = file_digest(a.env.db)
    for extra in ((), ("--skip-changed",)):
        refused = a.revert("--yes", *extra)
        assert refused.code == 3, refused.stderr
        assert "conflict" in one_line_error(refused)
        assert file_digest(a.env.db) == sha
    assert a.listed() == {"s6": "conflict", "s7": "changed"}


def test_a_state_row_at_a_moved_rows_shadow_triple_is_a_conflict(make_env: Any) -> None:
    """A writer without foreign keys left a row under the deleted shadow ps05
    at (cfg, b), where the moved s3 returns."""
    a = legacy(make_env)
    execute(
        a.env.db,
        "INSERT INTO project_state (id, project_id, category, key, value, status, updated_at)"
        " VALUES ('s-orphan', 'ps05', 'cfg', 'b', 'orphan', 'active', '2025-09-01')",
        foreign_keys=False,
    )
    sha = file_digest(a.env.db)
    refused = a.revert("--yes", "--skip-changed")
    assert refused.code == 3, refused.stderr
    line = one_line_error(refused)
    assert "conflict" in line and "'s3'" in line
    assert file_digest(a.env.db) == sha
    assert a.listed() == {"s3": "conflict"}


def test_two_restored_state_rows_at_one_triple_are_a_conflict(make_env: Any) -> None:
    """Since the apply, the service deleted s1 (pc05, cfg, a) and moved the fact
    to s3 by editing its key (an unowned column) to a: s3 now goes back to
    (ps05, cfg, a), where the archived s2 comes back too."""
    a = legacy(make_env)
    execute(
        a.env.db,
        "DELETE FROM project_state WHERE id = 's1';"
        " UPDATE project_state SET key = 'a' WHERE id = 's3';",
    )
    sha = file_digest(a.env.db)
    listed = a.listed()
    assert "conflict" in {listed.get("s2"), listed.get("s3")}, listed
    refused = a.revert("--yes")
    assert refused.code == 3
    assert "conflict" in one_line_error(refused)
    assert file_digest(a.env.db) == sha


def test_no_backup_reverts_without_a_backup(make_env: Any) -> None:
    a = legacy(make_env)
    result = a.revert("--yes", "--no-backup", "--format", "json")
    assert result.code == 0, result.stderr
    assert result.json()["backup"]["path"] is None
    assert sorted(a.env.reports.glob("backup-*.db")) == [a.backup]
    assert dump(a.env.db) == dump(a.backup)


def test_a_renamed_shadow_with_state_written_since_is_a_conflict(make_env: Any) -> None:
    """ps06 was renamed into p06-polisher; a state row written under it since
    would end under the alias name again: refused, even with --skip-changed;
    the other group can still be reverted on its own."""
    a = legacy(make_env)
    execute(
        a.env.db,
        "INSERT INTO project_state (id, project_id, category, key, value, status, updated_at)"
        " VALUES ('s-new', 'ps06', 'cfg', 'new', 'fresh', 'active', '2025-09-01')",
    )
    sha = file_digest(a.env.db)
    for extra in ((), ("--skip-changed",)):
        refused = a.revert("--yes", *extra)
        assert refused.code == 3, refused.stderr
        line = one_line_error(refused)
        assert "conflict" in line and "'ps06'" in line
        assert file_digest(a.env.db) == sha
    assert a.listed() == {"ps06": "conflict"}

    only = a.revert("--yes", "--project", "p05-interferometer")
    assert only.code == 0, only.stderr
    assert rows(a.env.db, "SELECT name FROM projects WHERE id = 'ps06'") == [("p06-polisher",)]
    assert rows(a.env.db, "SELECT id FROM projects WHERE id IN ('ps05', 'ps05b')") == [
        ("ps05",),
        ("ps05b",),
    ]


# -- --project -------------------------------------------------------------------


def test_project_reverts_only_that_groups_rows(make_env: Any) -> None:
    a = legacy(make_env)
    result = a.revert("--yes", "--project", "p05-interferometer")
    assert result.code == 0, result.stderr
    db = a.env.db
    # p05-interferometer: back as before the apply
    assert rows(db, "SELECT id, name FROM projects WHERE id IN ('ps05', 'ps05b') ORDER BY id") == [
        ("ps05", "p05"),
        ("ps05b", "interferometer"),
    ]
    assert rows(
        db,
        "SELECT id, project_id FROM project_state WHERE id IN ('s2', 's3', 's4', 's6', 's7')"
        " ORDER BY id",
    ) == [("s2", "ps05"), ("s3", "ps05"), ("s4", "ps05b"), ("s6", "pc05"), ("s7", "ps05")]
    assert rows(
        db, "SELECT id, project, status FROM memories WHERE id IN ('m1', 'm2', 'm3', 'm4')"
    ) == [
        ("m1", "p05", "active"),
        ("m2", "p05-interferometer", "active"),
        ("m3", "interferometer", "candidate"),
        ("m4", "P05-Interferometer", "active"),
    ]
    assert rows(db, "SELECT project FROM interactions WHERE id = 'i1'") == [("p05",)]
    assert rows(db, "SELECT project FROM conflicts WHERE id = 'cf1'") == [("p05",)]
    # the others: still as the apply left them
    assert rows(db, "SELECT name FROM projects WHERE id = 'ps06'") == [("p06-polisher",)]
    assert rows(db, "SELECT COUNT(*) FROM projects WHERE id = 'ps06b'") == [(0,)]
    assert rows(db, "SELECT COUNT(*) FROM project_state WHERE id = 's8'") == [(0,)]
    assert rows(db, "SELECT project_id FROM project_state WHERE id IN ('s9', 's10')") == [
        ("ps06",),
        ("ps06",),
    ]
    assert rows(db, "SELECT project FROM interactions WHERE id = 'i2'") == [("p06-polisher",)]
    assert rows(db, "SELECT project FROM conflicts WHERE id = 'cf2'") == [("p06-polisher",)]
    assert rows(db, "SELECT project FROM memories WHERE id = 'm7'") == [("p07-étalon",)]
    healthy(db)
    [report] = a.revert_reports()
    assert report["projects"] == ["p05-interferometer"]

    # the rest, later, completes the round trip
    rest = a.revert("--yes")
    assert rest.code == 0, rest.stderr
    assert dump(db) == dump(a.backup)


def test_an_unknown_project_is_bad_input_listing_the_valid_ids(make_env: Any) -> None:
    a = legacy(make_env)
    sha = file_digest(a.env.db)
    result = a.revert("--yes", "--project", "p99-nowhere")
    assert result.code == 2
    line = one_line_error(result)
    assert "p99-nowhere" in line and "p05-interferometer" in line and "p06-polisher" in line
    assert file_digest(a.env.db) == sha


def test_project_of_a_project_with_only_rekeyed_rows(make_env: Any) -> None:
    a = legacy(make_env)
    result = a.revert("--yes", "--project", "p07-étalon")
    assert result.code == 0, result.stderr
    assert rows(a.env.db, "SELECT project FROM memories WHERE id = 'm7'") == [("Étalon",)]
    assert rows(a.env.db, "SELECT name FROM projects WHERE id = 'ps06'") == [("p06-polisher",)]


# -- dry run, SQL, committing ------------------------------------------------------


def test_dry_run_and_format_sql_change_nothing(make_env: Any) -> None:
    a = legacy(make_env)
    sha = file_digest(a.env.db)
    files = sorted(p.name for p in a.env.reports.iterdir())

    text = a.revert("--dry-run")
    assert text.code == 0, text.stderr
    assert "to revert" in text.stdout and "dry run" in text.stdout
    as_json = a.revert("--dry-run", "--format", "json")
    assert as_json.code == 0, as_json.stderr
    doc = as_json.json()
    assert doc["status"] == "dry-run"
    # 3 deleted + 1 renamed shadow, 4 moved, 4 archived, m1 m3 m4 m7 i1 i2
    # cf1 cf2 rekeyed, m2 superseded
    assert doc["counts"]["to_revert"] == 21, doc["counts"]
    assert doc["by_kind"]["archived"] == {"left": 4}
    sql = a.revert("--format", "sql")  # sql implies a dry run, no --yes needed
    assert sql.code == 0, sql.stderr
    script = sql.stdout
    for needle in (
        "BEGIN IMMEDIATE;",
        "CREATE TEMP TABLE rv_rec",
        "UPDATE temp.rv_rec",  # the classification
        'INSERT INTO main."projects"',  # the writes
        'UPDATE main."projects" SET "name"',
        'UPDATE main."project_state" SET "project_id"',
        'INSERT INTO main."project_state"',
        'UPDATE main."memories" SET "project"',
        'UPDATE main."conflicts" SET "project"',
        'UPDATE main."memories" SET "status" = \'active\'',
        "COMMIT;",
    ):
        assert needle in script, needle
    assert file_digest(a.env.db) == sha
    assert not [p for p in a.env.reports.iterdir() if p.name.startswith(("backup-", "revert-"))
                and p.name not in files]  # fmt: skip


def test_a_committing_report_of_an_apply_that_never_committed_finds_nothing(
    make_env: Any,
) -> None:
    """The apply died at COMMIT and the database is as before it (its backup's
    content, in the same file): every row is 'as before', nothing to do."""
    a = legacy(make_env)
    doc = json.loads(a.report.read_text("utf-8"))
    doc["status"] = "committing"
    a.report.write_text(json.dumps(doc), "utf-8")
    shutil.copyfile(a.backup, a.env.db)
    sha = file_digest(a.env.db)
    result = a.revert("--yes")
    assert result.code == 0, result.stderr
    assert "nothing to revert" in result.stdout
    assert file_digest(a.env.db) == sha


def test_a_committing_report_of_an_apply_that_committed_is_reverted(make_env: Any) -> None:
    a = legacy(make_env)
    doc = json.loads(a.report.read_text("utf-8"))
    doc["status"] = "committing"
    a.report.write_text(json.dumps(doc), "utf-8")
    result = a.revert("--yes")
    assert result.code == 0, result.stderr
    assert dump(a.env.db) == dump(a.backup)


def test_verify_checks_a_revert_report(make_env: Any) -> None:
    a = legacy(make_env)
    assert a.revert("--yes").code == 0
    [report] = sorted(a.env.reports.glob("revert-*.json"))
    result = a.env.run("verify", "--format", "json", "--report", report)
    assert result.code in (0, 1), result.stderr  # shadows are back: verify's own checks fail
    checks = [c for c in result.json()["checks"] if "revert" in c["check"]]
    assert checks and all(c["ok"] for c in checks), result.stdout


def test_a_row_written_since_in_a_rowid_table_is_never_touched(make_env: Any) -> None:
    """``notes`` has no id column: its rows are keyed by rowid. The rekeyed
    row (rowid 2, the largest) is deleted since, and SQLite gives the next
    insert rowid 2 again: that row was written since the apply."""
    env = make_env(**legacy_tables())
    execute(
        env.db,
        "CREATE TABLE notes (project TEXT, body TEXT);"
        " INSERT INTO notes VALUES ('scratch', 'a'), ('p05', 'old note');",
    )
    a = apply_env(env, "--column", "notes.project")
    assert rows(env.db, "SELECT rowid, project FROM notes") == [
        (1, "scratch"),
        (2, "p05-interferometer"),
    ]
    since = (
        "DELETE FROM notes WHERE body = 'old note';"
        " INSERT INTO notes VALUES ('p05-interferometer', 'written since');"
    )
    execute(env.db, since)
    assert rows(env.db, "SELECT rowid FROM notes WHERE body = 'written since'") == [(2,)]
    result = a.revert("--yes", "--skip-changed")
    assert rows(env.db, "SELECT project FROM notes WHERE body = 'written since'") == [
        ("p05-interferometer",)
    ], result.stderr
    assert result.code == 0, result.stderr
    assert dump(env.db) == a.expected(since)


# -- a bounded number of statements ------------------------------------------------

SC_REGISTRY = [
    {"id": "p04-gigabit", "aliases": ["p04", "gigabit"]},
    {"id": "p05-interferometer", "aliases": ["p05", "interferometer"]},
    {"id": "p06-polisher", "aliases": ["p06", "polisher"]},
]
SC_PROJECTS = [
    ("c05", "p05-interferometer"),
    ("s05a", "p05"),
    ("s05b", "Interferometer"),
    ("c04", "P04-Gigabit"),
    ("s04", "gigabit"),
    ("s06", "p06"),  # no canonical row: renamed into it
    ("s06b", "polisher"),
    ("u1", "scratch"),
]
SC_NAMES = ["p05", " P05", "interferometer", "P05-Interferometer ", "GIGABIT", "p04-gigabit",
            "p06", "polisher\t", "scratch", "p05-interferometer"]  # fmt: skip
RV_INSERT = "INSERT INTO temp.rv_rec"


def sc_dataset(scale: int) -> dict[str, list[tuple[Any, ...]]]:
    """The same shape at every scale, ``scale`` times the rows: every kind of
    record (deleted and renamed shadows, moved, archived and kept state rows,
    rekeys in three columns, superseded memories)."""
    ts = "2025-01-{:02d}"
    state: list[tuple[Any, ...]] = []
    for k in range(10 * scale):
        cat, key, v = ("spec", "decision")[k % 2], f"k{k}", f"v{k}"
        state += [
            (f"st{k}a", "c05", cat, key, v, "active", ts.format(1 + k % 9)),
            (f"st{k}b", "s05a", cat, key, v, "active", ts.format(10)),  # duplicate
            (f"st{k}c", "s05b", cat, key, f"old{k}", "superseded", ts.format(11)),  # history
            (f"st{k}d", "s04", cat, key, v, "active", ts.format(12)),  # moves
            (f"st{k}e", "s06", cat, key, v, "invalid", ts.format(13)),  # history
            (f"st{k}f", "s06b", cat, key, v, "active", ts.format(14)),  # moves to s06
            (f"st{k}g", "s06", "own", key, v, "active", ts.format(15)),  # stays
        ]
    memories: list[tuple[Any, ...]] = []
    interactions: list[tuple[Any, ...]] = []
    for i in range(200 * scale):
        name = SC_NAMES[i % len(SC_NAMES)]
        status = ("active", "active", "candidate", "superseded", "invalid")[i % 5]
        content = f"note {i}"
        if i % 20 == 0:  # an alias-keyed twin of a canonical memory: one is superseded
            name, status, content = "p05", "active", f"twin {i}"
            memories.append(
                (f"m{i}t", "fact", content, "p05-interferometer", "active", ts.format(28))
            )
        memories.append((f"m{i}", "fact", content, name, status, ts.format(1 + i % 27)))
        interactions.append((f"i{i}", name))
    return {"state": state, "memories": memories, "interactions": interactions}


def traced_revert(
    root: Path, scale: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], dict[str, Any], Applied]:
    """Apply (untraced), then revert with every statement of every connection
    opened through database.open_database traced by SQLite's own hook."""
    root.mkdir()
    db = build_db(root / "atocore.db", projects=SC_PROJECTS, **sc_dataset(scale))
    conn = sqlite3.connect(db)
    try:
        conn.execute("CREATE TABLE notes (id TEXT PRIMARY KEY, project TEXT)")
        conn.executemany(
            "INSERT INTO notes VALUES (?, ?)",
            ((f"n{i}", SC_NAMES[i % len(SC_NAMES)].strip()) for i in range(50 * scale)),
        )
        conn.commit()
    finally:
        conn.close()
    env = Env(root, db, write_registry(root / "registry.json", SC_REGISTRY), root / "reports")
    a = apply_env(env, "--column", "notes.project")
    seen: list[str] = []
    real = database.open_database

    def traced_open(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real(*args, **kwargs)
        conn.set_trace_callback(seen.append)
        return conn

    with monkeypatch.context() as mp:
        for module in list(sys.modules.values()):
            if module is not None and getattr(module, "open_database", None) is real:
                mp.setattr(module, "open_database", traced_open)
        result = a.revert("--yes", "--format", "json")
    assert result.code == 0, result.stderr
    assert dump(db) == dump(a.backup)
    return seen, result.json(), a


def test_revert_statement_count_is_independent_of_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small, s_doc, _ = traced_revert(tmp_path / "small", 1, monkeypatch)
    large, l_doc, _ = traced_revert(tmp_path / "large", 40, monkeypatch)
    assert small, "the trace saw no statement: the counting is broken"

    # the large revert really did 40 times the work (more than a 5,000-row chunk)
    s_kinds, l_kinds = s_doc["by_kind"], l_doc["by_kind"]
    for kind in ("moves", "archived", "rekey", "supersede"):
        assert l_kinds[kind]["left"] == 40 * s_kinds[kind]["left"] > 0, kind
    assert l_doc["counts"]["to_revert"] > 5000

    # the archive goes into temp.rv_rec by an executemany of rows and, for a
    # rekey record, one INSERT ... FROM json_each of its (id, old) pairs:
    # SQLite traces each execution (expanded), so they count as one text
    def texts(seen: list[str]) -> set[str]:
        return {RV_INSERT if s.startswith(RV_INSERT) else s for s in seen}

    def others(seen: list[str]) -> list[str]:
        return [s for s in seen if not s.startswith(RV_INSERT)]

    def rows_loaded(trace: str) -> int:
        return trace.count("], [") + 1 if "json_each" in trace else 1

    loads = [s for s in large if s.startswith(RV_INSERT)]
    assert any("json_each" in s for s in loads), "rekey records are not loaded as chunks"
    loaded = sum(rows_loaded(s) for s in loads)
    assert loaded >= l_doc["counts"]["to_revert"], "the archive is not loaded by that INSERT"
    assert len(texts(large)) == len(texts(small)), sorted(texts(large) ^ texts(small))[:5]
    assert len(others(large)) == len(others(small)), _first_difference(others(small), others(large))


def _first_difference(small: list[str], large: list[str]) -> str:
    for i, (a, b) in enumerate(zip(small, large, strict=False)):
        if a != b:
            return f"statement #{i} differs:\n  small: {a[:300]}\n  large: {b[:300]}"
    return f"{len(small)} statements vs {len(large)}"
