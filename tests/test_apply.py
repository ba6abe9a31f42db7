"""apply: its refusals (exit 3, nothing changed, no backup) and what a successful
apply leaves behind (SPEC §3, §5 apply)."""

from __future__ import annotations

import gzip
import json
import sqlite3
import stat
from pathlib import Path
from typing import Any

from conftest import Env, content_digest, legacy_tables, rows, run_cli


def backups(env: Env) -> list[Path]:
    return sorted(env.reports.glob("backup-*.db")) if env.reports.is_dir() else []


def apply_reports(env: Env, status: str | None = None) -> list[dict[str, Any]]:
    out = []
    for path in sorted(env.reports.glob("apply-*.json")) if env.reports.is_dir() else []:
        doc = json.loads(path.read_text("utf-8"))
        if status is None or doc.get("status") == status:
            out.append(doc)
    return out


def assert_refused(env: Env, result: Any, before: str, *, text: str | None = None) -> None:
    assert result.code == 3, (result.code, result.stderr)
    assert content_digest(env.db) == before
    assert backups(env) == []
    assert not apply_reports(env, "applied")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    if text is not None:
        assert text in result.stderr, result.stderr


def execute(db: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    conn = sqlite3.connect(db)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


# --------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------


def test_integrity_error_two_canonical_rows_by_case_refuses(make_env: Any) -> None:
    env = make_env(
        projects=[("a", "p05-interferometer"), ("b", "P05-INTERFEROMETER"), ("c", "p05")],
        state=[("s1", "c", "cfg", "k", "v", "active", "2025-01-01")],
        memories=[("m1", "fact", "x", "p05", "active", "2025-01-01")],
    )
    before = content_digest(env.db)
    result = env.run("apply", "--yes")
    assert_refused(env, result, before, text="canonical rows")


def test_unresolved_collision_refuses(make_env: Any) -> None:
    env = make_env(
        projects=[("pc", "p05-interferometer"), ("ps", "p05")],
        state=[
            ("s1", "pc", "cfg", "k", "silver", "active", "2025-01-01"),
            ("s2", "ps", "cfg", "k", "gold", "active", "2025-02-01"),
        ],
    )
    before = content_digest(env.db)
    result = env.run("apply", "--yes")
    assert_refused(env, result, before, text="unresolved collision")


def test_stale_plan_refuses(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    plan_file = env.root / "plan.json"
    assert env.run("plan", "--out", plan_file).code == 0
    execute(
        env.db,
        "INSERT INTO memories (id, memory_type, content, project, status, updated_at)"
        " VALUES ('late', 'fact', 'late', 'p05', 'active', '2025-09-09')",
    )
    before = content_digest(env.db)
    result = env.run("apply", "--plan", plan_file, "--yes")
    assert_refused(env, result, before, text="plan is stale")


def test_plan_is_stale_after_a_state_value_changes(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    plan_file = env.root / "plan.json"
    assert env.run("plan", "--out", plan_file).code == 0
    # s2 was a duplicate of s1; with another value it becomes history
    execute(env.db, "UPDATE project_state SET value = 'x2' WHERE id = 's2'")
    before = content_digest(env.db)
    result = env.run("apply", "--plan", plan_file, "--yes")
    assert_refused(env, result, before, text="plan is stale")


def test_plan_is_stale_after_the_registry_changes(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    plan_file = env.root / "plan.json"
    assert env.run("plan", "--out", plan_file).code == 0
    registry = json.loads(env.registry.read_text("utf-8"))
    registry["projects"][0]["aliases"].append("gb")
    env.registry.write_text(json.dumps(registry), "utf-8")
    before = content_digest(env.db)
    result = env.run("apply", "--plan", plan_file, "--yes")
    assert_refused(env, result, before, text="plan is stale")


def test_fresh_plan_is_accepted(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    plan_file = env.root / "plan.json"
    assert env.run("plan", "--out", plan_file).code == 0
    result = env.run("apply", "--plan", plan_file, "--yes", "--format", "json")
    assert result.code == 0, result.stderr
    plan_fp = json.loads(plan_file.read_text("utf-8"))["fingerprint"]
    assert result.json()["fingerprint"] == plan_fp


def test_stale_resolution_refuses(make_env: Any) -> None:
    env = make_env(
        projects=[("pc", "p05-interferometer"), ("ps", "p05")],
        state=[
            ("s1", "pc", "cfg", "k", "silver", "active", "2025-01-01"),
            ("s2", "ps", "cfg", "k", "gold", "active", "2025-02-01"),
        ],
    )
    res = env.root / "res.json"
    assert env.run("resolve", "--keep", "shadow", "--out", res).code == 0
    execute(env.db, "UPDATE project_state SET value = 'platinum' WHERE id = 's2'")
    before = content_digest(env.db)
    result = env.run("apply", "--resolutions", res, "--yes")
    assert_refused(env, result, before, text="stale")


def test_empty_plan_refuses_without_allow_empty(make_env: Any) -> None:
    env = make_env(
        projects=[("pc", "p05-interferometer"), ("pu", "elsewhere")],
        state=[("s1", "pc", "cfg", "k", "v", "active", "2025-01-01")],
        memories=[("m1", "fact", "x", "p05-interferometer", "active", "2025-01-01")],
        interactions=[("i1", "elsewhere")],
    )
    before = content_digest(env.db)
    result = env.run("apply", "--yes")
    assert_refused(env, result, before, text="nothing to migrate")

    allowed = env.run("apply", "--yes", "--allow-empty", "--format", "json")
    assert allowed.code == 0, allowed.stderr
    assert content_digest(env.db) == before
    assert backups(env) == []
    assert allowed.json()["status"] == "empty"


def test_no_terminal_and_no_yes_refuses(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    before = content_digest(env.db)
    result = env.run("apply")
    assert_refused(env, result, before, text="--yes")


def test_unwritable_report_dir_refuses_before_any_write(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    blocker = env.root / "a-file"
    blocker.write_text("not a directory")
    report_dir = blocker / "reports"
    before = content_digest(env.db)
    entries = sorted(p.name for p in env.root.iterdir())
    result = run_cli(
        "apply", "--db", env.db, "--registry", env.registry, "--report-dir", report_dir, "--yes"
    )
    assert_refused(env, result, before, text="report dir")
    assert sorted(p.name for p in env.root.iterdir()) == entries
    assert not Path(str(env.db) + "-journal").exists()


def test_cascade_into_unowned_table_refuses(make_env: Any) -> None:
    """A table the migration does not own references a shadow with ON DELETE CASCADE:
    deleting the shadow would silently lose its rows, so apply refuses."""
    env = make_env(**legacy_tables())
    conn = sqlite3.connect(env.db)
    conn.execute(
        "CREATE TABLE notes (id TEXT PRIMARY KEY,"
        " project_id TEXT REFERENCES projects(id) ON DELETE CASCADE)"
    )
    conn.execute("INSERT INTO notes VALUES ('n1', 'ps05')")
    conn.commit()
    conn.close()
    before = content_digest(env.db)
    result = env.run("apply", "--yes")
    assert_refused(env, result, before, text="notes")
    assert rows(env.db, "SELECT id, project_id FROM notes") == [("n1", "ps05")]


# --------------------------------------------------------------------------
# success
# --------------------------------------------------------------------------


def applied(env: Env, *extra: str) -> dict[str, Any]:
    result = env.run("apply", "--yes", "--format", "json", *extra)
    assert result.code == 0, result.stderr
    return result.json()  # type: ignore[no-any-return]


def test_backup_is_private_and_equal_to_the_pre_apply_database(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    before = content_digest(env.db)
    report = applied(env)
    [backup] = backups(env)
    assert report["backup"]["path"] == backup.name
    assert report["backup"]["bytes"] == backup.stat().st_size
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    conn = sqlite3.connect(f"file:{backup}?mode=ro", uri=True)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    assert content_digest(backup) == before
    assert content_digest(env.db) != before


def test_no_backup_writes_none(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    report = applied(env, "--no-backup")
    assert backups(env) == []
    assert report["backup"]["path"] is None
    assert report["status"] == "applied"


def test_apply_report_fields(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    plan_file = env.root / "plan.json"
    assert env.run("plan", "--out", plan_file).code == 0
    fingerprint = json.loads(plan_file.read_text("utf-8"))["fingerprint"]
    stdout_report = applied(env)
    [on_disk] = apply_reports(env)
    for report in (stdout_report, on_disk):
        assert report["kind"] == "apply"
        assert report["status"] == "applied"
        assert report["fingerprint"] == fingerprint
        counts = report["counts"]
        assert counts["shadow_rows_deleted"] == 3
        assert counts["shadow_rows_renamed"] == 1
        assert counts["state_moved"] == 4
        assert counts["state_archived_duplicate"] == 3
        assert counts["state_archived_history"] == 1
        assert counts["memories_rekeyed"] == 4
        assert counts["memories_superseded"] == 1
        assert counts["interactions_rekeyed"] == 2
        assert report["rows_before"] == {
            "projects": 7,
            "project_state": 11,
            "memories": 7,
            "interactions": 4,
        }
        assert report["rows_after"] == {
            "projects": 4,
            "project_state": 7,
            "memories": 7,
            "interactions": 4,
        }
        assert report["archived_state_rows"] == 4
        assert (env.reports / report["companion"]).is_file()
        assert (env.reports / report["backup"]["path"]).is_file()
        assert not Path(report["companion"]).is_absolute()


def test_archived_state_rows_in_full_in_the_companion(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    conn = sqlite3.connect(env.db)
    conn.row_factory = sqlite3.Row
    full = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM project_state")}
    conn.close()
    report = applied(env)
    with gzip.open(env.reports / report["companion"], "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    assert {r["record"] for r in records} <= {"project", "state", "rekey", "supersede"}
    archived = {
        r["row"]["id"]: r for r in records if r["record"] == "state" and r["outcome"] != "moves"
    }
    assert set(archived) == {"s2", "s4", "s6", "s8"}
    assert archived["s4"]["outcome"] == "history"
    assert {archived[i]["outcome"] for i in ("s2", "s6", "s8")} == {"duplicate"}
    for row_id, rec in archived.items():
        assert rec["row"] == full[row_id]  # every column, every value
    remaining = {r[0] for r in rows(env.db, "SELECT id FROM project_state")}
    assert remaining.isdisjoint(archived)
    supersede = [r for r in records if r["record"] == "supersede"]
    assert [(r["id"], r["keeper_id"]) for r in supersede] == [("m2", "m1")]
    rekeyed = {i for r in records if r["record"] == "rekey" for i in r["ids"]}
    assert rekeyed == {"m1", "m3", "m4", "m7", "i1", "i2"}


def test_rows_conserved_and_state_in_place(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    report = applied(env)
    before, after = report["rows_before"], report["rows_after"]
    archived = (
        report["counts"]["state_archived_duplicate"] + (report["counts"]["state_archived_history"])
    )
    assert before["project_state"] == after["project_state"] + archived
    assert after["memories"] == before["memories"] == 7
    assert after["interactions"] == before["interactions"] == 4
    assert rows(env.db, "SELECT COUNT(*) FROM memories") == [(7,)]
    assert rows(env.db, "SELECT COUNT(*) FROM interactions") == [(4,)]
    # no ON DELETE CASCADE loss: every kept state row is still there, under its target
    assert sorted(rows(env.db, "SELECT id, project_id, value, status FROM project_state")) == [
        ("s1", "pc05", "x", "active"),
        ("s10", "ps06", "f", "active"),
        ("s3", "pc05", "only", "active"),
        ("s5", "pc05", "new", "active"),
        ("s7", "pc05", "v", "active"),
        ("s9", "ps06", "e1", "active"),
        ("su", "pu", "z", "active"),
    ]
    # shadows deleted; the missing canonical row is the renamed shadow, id kept
    assert sorted(rows(env.db, "SELECT id, name FROM projects")) == [
        ("pc04", "p04-gigabit"),
        ("pc05", "p05-interferometer"),
        ("ps06", "p06-polisher"),
        ("pu", "unregistered-x"),
    ]
    assert sorted(rows(env.db, "SELECT id, project, status FROM memories")) == [
        ("m1", "p05-interferometer", "active"),
        ("m2", "p05-interferometer", "superseded"),
        ("m3", "p05-interferometer", "candidate"),
        ("m4", "p05-interferometer", "active"),
        ("m5", "p04-gigabit", "active"),
        ("m6", "unregistered-x", "active"),
        ("m7", "p07-étalon", "active"),
    ]
    assert sorted(rows(env.db, "SELECT id, project FROM interactions")) == [
        ("i1", "p05-interferometer"),
        ("i2", "p06-polisher"),
        ("i3", "p04-gigabit"),
        ("i4", "other"),
    ]
    conn = sqlite3.connect(env.db)
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()


def test_renamed_shadow_keeps_its_other_columns(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    execute(
        env.db,
        "UPDATE projects SET description = 'lens polisher', created_at = '2020-01-01',"
        " updated_at = '2021-01-01' WHERE id = 'ps06'",
    )
    applied(env)
    assert rows(env.db, "SELECT * FROM projects WHERE id = 'ps06'") == [
        ("ps06", "p06-polisher", "lens polisher", "2020-01-01", "2021-01-01")
    ]


def test_unowned_table_referencing_the_renamed_shadow_is_kept(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    conn = sqlite3.connect(env.db)
    conn.execute(
        "CREATE TABLE notes (id TEXT PRIMARY KEY,"
        " project_id TEXT REFERENCES projects(id) ON DELETE CASCADE)"
    )
    conn.execute("INSERT INTO notes VALUES ('n1', 'ps06')")  # ps06 is renamed, not deleted
    conn.commit()
    conn.close()
    applied(env)
    assert rows(env.db, "SELECT id, project_id FROM notes") == [("n1", "ps06")]


def test_second_apply_finds_nothing(make_env: Any) -> None:
    env = make_env(**legacy_tables())
    applied(env)
    after = content_digest(env.db)
    again = env.run("apply", "--yes")
    assert again.code == 3
    assert "nothing to migrate" in again.stderr
    assert content_digest(env.db) == after
    assert len(backups(env)) == 1
    allowed = env.run("apply", "--yes", "--allow-empty")
    assert allowed.code == 0, allowed.stderr
    assert content_digest(env.db) == after
    assert len(backups(env)) == 1
