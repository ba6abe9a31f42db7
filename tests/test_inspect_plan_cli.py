"""inspect and plan through the CLI: machine output on stdout only, the SQL
they print runs as printed, and plan --detailed-exitcode."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conftest import DEFAULT_REGISTRY, Env, content_digest, file_digest, rows

P05 = "p05-interferometer"
P06 = "p06-polisher"

# A database with changes and no collision: shadows, history, duplicates,
# a group without canonical row, memories to de-duplicate, unregistered names.
PROJECTS = [
    ("c", P05),
    ("s1", "p05"),
    ("s2", "Interferometer"),
    ("q1", "polisher"),
    ("u", "p99"),
]
STATE = [
    ("a-c", "c", "cfg", "coating", "silver", "active", "2025-01-01"),
    ("a-1", "s1", "cfg", "coating", "silver", "active", "2025-02-01"),
    ("a-2", "s2", "cfg", "coating", "bronze", "superseded", "2025-03-01"),
    ("b-1", "s1", "cfg", "it's", "quote'd", "active", "2025-01-01"),
    ("b-2", "c", "cfg", "it's", "quote'd", "superseded", "2025-05-01"),
    ("d-1", "q1", "cfg", "k", "v", "active", "2025-01-01"),
    ("u-1", "u", "cfg", "k", "v", "active", "2025-01-01"),
]
MEMORIES = [
    ("m1", "fact", "same", P05, "active", "2025-01-01"),
    ("m2", "fact", "same", "p05", "active", "2025-02-01"),
    ("m3", "fact", "other", " P05-Interferometer", "candidate", "2025-01-01"),
    ("m4", "fact", "x", "polisher", "active", "2025-01-01"),
    ("m5", "fact", "x", "p99", "active", "2025-01-01"),
]
INTERACTIONS = [("i1", "P05"), ("i2", "nobody"), ("i3", P05), ("i4", "interferometer")]


def _env(make_env: Any) -> Env:
    env: Env = make_env(
        projects=PROJECTS, state=STATE, memories=MEMORIES, interactions=INTERACTIONS
    )
    return env


def _quoted_env(make_env: Any) -> Env:
    """The same data plus names that need quoting in SQL literals."""
    env: Env = make_env(
        registry=[*DEFAULT_REGISTRY, {"id": "p08-o'brien", "aliases": ["o'brien", "Ñandú"]}],
        projects=[*PROJECTS, ("ob", "O'Brien"), ("nd", "ñANDÚ")],
        state=[
            *STATE,
            ("o-1", "ob", "cfg", "k", "v", "active", "2025-01-01"),
            ("o-2", "nd", "cfg", "k", "v", "active", "2025-02-01"),
        ],
        memories=[*MEMORIES, ("mq", "fact", "it's", "O'BRIEN", "active", "2025-01-01")],
        interactions=[*INTERACTIONS, ("iq", "ÑANDÚ"), ("iq2", "P08-O'BRIEN")],
    )
    return env


def _collision_env(make_env: Any) -> Env:
    env: Env = make_env(
        projects=[("c", P05), ("s1", "p05")],
        state=[
            ("a-c", "c", "cfg", "k", "one", "active", "2025-01-01"),
            ("a-1", "s1", "cfg", "k", "two", "active", "2025-01-01"),
        ],
    )
    return env


# -- --format json ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["inspect", "plan"])
@pytest.mark.parametrize("verbosity", [[], ["--verbose"]])
def test_json_stdout_is_only_json(make_env: Any, command: str, verbosity: list[str]) -> None:
    env = _env(make_env)
    res = env.run(command, "--format", "json", *verbosity)
    assert res.code == 0, res.stderr
    doc = json.loads(res.stdout)  # the whole of stdout, nothing before or after
    assert isinstance(doc, dict)
    assert doc["kind"] == command
    assert doc["report_version"] == 1
    assert "fingerprint" in doc and "counts" in doc
    if verbosity:
        assert "atocore-identity:" in res.stderr  # progress went to stderr
        assert "atocore-identity:" not in res.stdout


def test_json_on_collision_is_still_only_json(make_env: Any) -> None:
    env = _collision_env(make_env)
    res = env.run("plan", "--format", "json", "--detailed-exitcode")
    assert res.code == 3
    doc = json.loads(res.stdout)
    assert doc["collisions"] and doc["applicable"] is False


def test_plan_json_matches_written_report(make_env: Any, tmp_path: Path) -> None:
    env = _env(make_env)
    out = tmp_path / "my-plan.json"
    res = env.run("plan", "--format", "json", "--out", out)
    assert res.code == 0, res.stderr
    printed, written = res.json(), json.loads(out.read_text("utf-8"))
    assert printed["fingerprint"] == written["fingerprint"]
    assert printed["counts"] == written["counts"]
    assert written["kind"] == "plan"
    assert written["database"] == str(env.db)


def test_plan_fingerprint_stable_and_sensitive(make_env: Any) -> None:
    env = _env(make_env)
    first = env.run("plan", "--format", "json").json()["fingerprint"]
    assert env.run("plan", "--format", "json").json()["fingerprint"] == first
    conn = sqlite3.connect(env.db)
    conn.execute("UPDATE project_state SET updated_at = '2025-01-02' WHERE id = 'a-2'")
    conn.commit()
    conn.close()
    assert env.run("plan", "--format", "json").json()["fingerprint"] != first


# -- inspect -----------------------------------------------------------------------


def test_inspect_json_blast_radius(make_env: Any) -> None:
    env = _env(make_env)
    doc = env.run("inspect", "--format", "json").json()
    assert doc["registry_summary"]["projects"] == 4
    roles = {r["id"]: r["role"] for r in doc["project_rows"]}
    assert roles == {"c": "canonical", "s1": "shadow", "s2": "shadow", "q1": "shadow"}
    by_row = {r["id"]: r["state_by_status"] for r in doc["project_rows"]}
    assert by_row["s1"] == {"active": 2}
    assert by_row["s2"] == {"superseded": 1}
    assert doc["unregistered_project_rows"] == 1
    # names are reported per folded name; the raw spellings are in "examples"
    names = {(n["table"], n["name"]): n for n in doc["names"]}
    assert names[("memories", "p05")]["kind"] == "alias"
    assert names[("memories", "p05")]["by_status"] == {"active": 1}
    assert names[("memories", "p05-interferometer")]["kind"] == "variant"
    assert names[("memories", "p05-interferometer")]["examples"] == [" P05-Interferometer"]
    assert names[("memories", "p99")]["kind"] == "unregistered"
    assert names[("memories", "p99")]["rows"] == 1
    assert names[("interactions", "nobody")]["kind"] == "unregistered"
    assert names[("interactions", "p05")]["rows"] == 1
    assert names[("interactions", "p05")]["examples"] == ["P05"]
    counts = doc["counts"]
    assert counts["shadow_project_rows"] == 3
    assert counts["shadow_state_rows"] == 4
    assert counts["alias_keyed_rows"] == 4  # m2, m4, i1, i4
    assert counts["variant_spelled_rows"] == 1  # m3
    assert counts["unregistered_rows"] == 2  # m5, i2


def test_inspect_reports_missing_default_table(make_env: Any) -> None:
    env = _env(make_env)
    conn = sqlite3.connect(env.db)
    conn.execute("DROP TABLE interactions")
    conn.commit()
    conn.close()
    res = env.run("inspect", "--format", "json")
    assert res.code == 0, res.stderr
    assert res.json()["missing_targets"] == [
        {"target": "interactions.project", "reason": "no such table"}
    ]


def test_inspect_text_names_unregistered(make_env: Any) -> None:
    env = _env(make_env)
    res = env.run("inspect")
    assert res.code == 0, res.stderr
    for name in ("p05", "p99", "nobody", "P05-Interferometer"):
        assert name in res.stdout


def test_inspect_sql_runs_as_printed(make_env: Any) -> None:
    env = _quoted_env(make_env)
    before = file_digest(env.db)
    res = env.run("inspect", "--sql")
    assert res.code == 0, res.stderr
    statements = [s for s in res.stdout.strip().split(";\n") if s.strip()]
    assert len(statements) >= 3
    assert any("O''BRIEN" in sql for sql in statements)  # quoted as a literal
    conn = sqlite3.connect(f"file:{env.db}?mode=ro", uri=True)
    try:
        for sql in statements:
            sql = sql.rstrip(";")
            assert sql.lstrip().upper().startswith("SELECT"), sql
            conn.execute(sql).fetchall()
    finally:
        conn.close()
    assert file_digest(env.db) == before


def test_inspect_sql_counts_agree_with_json(make_env: Any) -> None:
    env = _env(make_env)
    statements = [
        s.rstrip(";") for s in env.run("inspect", "--sql").stdout.strip().split(";\n") if s
    ]
    conn = sqlite3.connect(f"file:{env.db}?mode=ro", uri=True)
    try:
        grouped = [
            conn.execute(s).fetchall() for s in statements if 'FROM main."memories" GROUP BY' in s
        ]
    finally:
        conn.close()
    assert len(grouped) == 1
    assert dict(grouped[0])["p99"] == 1
    assert dict(grouped[0])["p05"] == 1


# -- plan --format sql ----------------------------------------------------------------


def _final(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "project_state": rows(db, "SELECT * FROM project_state ORDER BY id"),
        "memories": rows(db, "SELECT * FROM memories ORDER BY id"),
        "interactions": rows(db, "SELECT * FROM interactions ORDER BY id"),
        "projects": rows(db, "SELECT id, name FROM projects ORDER BY id"),
    }


def test_plan_sql_script_matches_apply(make_env: Any, tmp_path: Path) -> None:
    env = _quoted_env(make_env)
    res = env.run("plan", "--format", "sql")
    assert res.code == 0, res.stderr
    script = res.stdout
    assert script.lstrip().startswith("--")
    assert "BEGIN IMMEDIATE;" in script and script.rstrip().endswith("COMMIT;")

    by_script = tmp_path / "by-script.db"
    shutil.copyfile(env.db, by_script)
    conn = sqlite3.connect(by_script)
    conn.executescript(script)
    conn.close()

    original = tmp_path / "original.db"
    shutil.copyfile(env.db, original)
    applied = env.run("apply", "--yes")  # apply works on env.db, another copy
    assert applied.code == 0, applied.stderr

    assert _final(by_script) == _final(env.db)
    # ... and both differ from the original: the script did migrate.
    assert _final(original) != _final(env.db)
    assert content_digest(by_script) != content_digest(original)


def test_plan_sql_is_only_sql_on_stdout(make_env: Any) -> None:
    env = _env(make_env)
    res = env.run("plan", "--format", "sql", "--verbose")
    assert res.code == 0
    assert "atocore-identity:" not in res.stdout
    assert sqlite3.complete_statement(res.stdout)


# -- plan --detailed-exitcode -----------------------------------------------------------


def test_detailed_exitcode_clean(make_env: Any) -> None:
    env: Env = make_env(
        projects=[("c", P05), ("u", "p99")],
        state=[("a", "c", "cfg", "k", "v", "active", "2025-01-01")],
        memories=[("m", "fact", "x", P05, "active", "2025-01-01")],
        interactions=[("i", "p99")],
    )
    res = env.run("plan", "--detailed-exitcode")
    assert res.code == 0, res.stderr
    assert env.run("plan").code == 0


def test_detailed_exitcode_changes_pending(make_env: Any) -> None:
    env = _env(make_env)
    res = env.run("plan", "--detailed-exitcode")
    assert res.code == 4, res.stderr
    assert env.run("plan").code == 0  # without the flag, success
    assert env.run("apply", "--yes").code == 0
    assert env.run("plan", "--detailed-exitcode").code == 0


def test_detailed_exitcode_memory_only_change(make_env: Any) -> None:
    env: Env = make_env(
        projects=[("c", P05)], memories=[("m", "fact", "x", "p05", "active", "2025-01-01")]
    )
    assert env.run("plan", "--detailed-exitcode").code == 4


def test_detailed_exitcode_collision(make_env: Any) -> None:
    env = _collision_env(make_env)
    res = env.run("plan", "--detailed-exitcode")
    assert res.code == 3, res.stderr
    assert env.run("plan").code == 0  # without the flag, the plan itself succeeded


def test_detailed_exitcode_collision_resolved(make_env: Any, tmp_path: Path) -> None:
    env = _collision_env(make_env)
    out = tmp_path / "res.json"
    assert env.run("resolve", "--keep", "canonical", "--out", out).code == 0
    res = env.run("plan", "--detailed-exitcode", "--resolutions", out)
    assert res.code == 4, res.stderr
