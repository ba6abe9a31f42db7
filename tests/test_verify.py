"""verify: the postconditions as a checklist, with --report and --backup (SPEC §5)."""

from __future__ import annotations

import gzip
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import Env, file_digest, legacy_tables


@dataclass
class Applied:
    env: Env
    report: Path
    backup: Path


def applied_env(make_env: Any) -> Applied:
    env = make_env(**legacy_tables())
    result = env.run("apply", "--yes")
    assert result.code == 0, result.stderr
    [report] = list(env.reports.glob("apply-*.json"))
    [backup] = list(env.reports.glob("backup-*.db"))
    return Applied(env, report, backup)


def execute(db: Path, sql: str) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(sql)
    conn.commit()
    conn.close()


def failed_checks(env: Env, *extra: str | Path) -> tuple[int, list[str]]:
    result = env.run("verify", "--format", "json", *extra)
    doc = json.loads(result.stdout)
    return result.code, [c["check"] for c in doc["checks"] if not c["ok"]]


def test_verify_passes_after_apply(make_env: Any) -> None:
    a = applied_env(make_env)
    before = file_digest(a.env.db)
    result = a.env.run("verify", "--report", a.report, "--backup", a.backup)
    assert result.code == 0, result.stdout + result.stderr
    code, failed = failed_checks(a.env, "--report", a.report, "--backup", a.backup)
    assert (code, failed) == (0, [])
    assert file_digest(a.env.db) == before  # read-only


def test_verify_checks_the_report_and_the_backup_when_given(make_env: Any) -> None:
    a = applied_env(make_env)
    result = a.env.run("verify", "--format", "json", "--report", a.report, "--backup", a.backup)
    names = [c["check"] for c in result.json()["checks"]]
    assert any("apply report" in n for n in names), names
    assert any("backup" in n for n in names), names


def test_verify_fails_on_an_unmigrated_database(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    code, failed = failed_checks(env)
    assert code == 1
    assert "no shadow project rows" in failed


def test_alias_keyed_memory_inserted_afterwards_fails(make_env: Any) -> None:
    a = applied_env(make_env)
    execute(
        a.env.db,
        "INSERT INTO memories (id, memory_type, content, project, status, updated_at)"
        " VALUES ('late', 'fact', 'late', 'p05', 'active', '2025-09-09')",
    )
    result = a.env.run("verify")
    assert result.code == 1
    code, failed = failed_checks(a.env)
    assert code == 1
    assert failed == ["no alias or variant names in memories.project"]


def test_variant_spelled_interaction_inserted_afterwards_fails(make_env: Any) -> None:
    a = applied_env(make_env)
    execute(a.env.db, "INSERT INTO interactions (id, prompt, project) VALUES ('x', 'q', ' P06 ')")
    code, failed = failed_checks(a.env)
    assert code == 1
    assert failed == ["no alias or variant names in interactions.project"]


def test_backup_catches_a_memory_deleted_by_hand(make_env: Any) -> None:
    a = applied_env(make_env)
    execute(a.env.db, "DELETE FROM memories WHERE id = 'm5'")
    assert a.env.run("verify").code == 0  # without the backup nothing shows
    result = a.env.run("verify", "--backup", a.backup)
    assert result.code == 1, result.stdout
    code, failed = failed_checks(a.env, "--backup", a.backup)
    assert code == 1
    assert failed == ["every backup row is in the database or the archive"]


def test_backup_catches_a_kept_state_row_deleted_by_hand(make_env: Any) -> None:
    a = applied_env(make_env)
    execute(a.env.db, "DELETE FROM project_state WHERE id = 's3'")
    code, failed = failed_checks(a.env, "--report", a.report, "--backup", a.backup)
    assert code == 1
    assert "every backup row is in the database or the archive" in failed


def test_report_catches_a_moved_state_row_changed_by_hand(make_env: Any) -> None:
    a = applied_env(make_env)
    # s3 moved from shadow ps05 to pc05; someone moves it to another project
    execute(a.env.db, "UPDATE project_state SET project_id = 'pc04' WHERE id = 's3'")
    assert a.env.run("verify").code == 0  # the general checks cannot see it
    result = a.env.run("verify", "--report", a.report)
    assert result.code == 1, result.stdout
    code, failed = failed_checks(a.env, "--report", a.report)
    assert code == 1
    assert failed == ["project and state rows are where the apply report says"]


def test_report_catches_a_superseded_memory_reactivated(make_env: Any) -> None:
    a = applied_env(make_env)
    execute(a.env.db, "UPDATE memories SET status = 'active' WHERE id = 'm2'")
    code, failed = failed_checks(a.env, "--report", a.report)
    assert code == 1
    assert failed == ["project and state rows are where the apply report says"]


def test_verify_json_is_only_json(make_env: Any) -> None:
    a = applied_env(make_env)
    for extra, want_ok in (((), True), (("--backup", a.backup), True)):
        result = a.env.run("verify", "--format", "json", *extra)
        doc = json.loads(result.stdout)  # the whole of stdout parses
        assert doc["kind"] == "verify"
        assert doc["ok"] is want_ok
        assert result.code == 0
    execute(a.env.db, "DELETE FROM memories WHERE id = 'm5'")
    result = a.env.run("verify", "--format", "json", "--backup", a.backup)
    assert result.code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert doc["counts"]["failed"] == 1


def test_report_with_a_replaced_companion_is_refused(make_env: Any) -> None:
    """A companion that is whole gzip but not the one its report hashed (the
    same records compressed again): verify cannot trust its rows, exit 2."""
    a = applied_env(make_env)
    companion = a.report.parent / json.loads(a.report.read_text("utf-8"))["companion"]
    records = gzip.decompress(companion.read_bytes())
    companion.write_bytes(gzip.compress(records, compresslevel=9, mtime=0))
    result = a.env.run("verify", "--report", a.report)
    assert result.code == 2, result.stdout + result.stderr
    assert "does not match its report" in result.stderr and "sha256" in result.stderr
    assert "Traceback" not in result.stderr
