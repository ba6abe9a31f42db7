"""Discovery (SPEC §3): a project-keyed column nobody configured must never look
clean. inspect lists it with the --column to add, plan warns that apply would
leave it, verify fails while it holds alias-keyed or variant-spelled values,
and --ignore-column acknowledges a column that legitimately names aliases."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atocore_identity import survey as survey_mod
from atocore_identity.checks import DISCOVERY_CHECK, DISCOVERY_SKIPPED
from atocore_identity.database import open_database
from atocore_identity.registry import fold, load_registry
from atocore_identity.survey import (
    ASCII_BLANK,
    LOWER_GROWTH,
    NO_CASE_FROM,
    PADDING,
    WHITESPACE,
    discover_columns,
    name_shape,
    survey,
)
from atocore_identity.targets import resolve_targets
from conftest import DEFAULT_REGISTRY, Env, Result, rows, run_cli, write_registry
from test_statement_count import build_sized_db

P05 = "p05-interferometer"
PROJECTS = [("c05", P05), ("c06", "p06-polisher")]


# -- helpers -------------------------------------------------------------------------


def demo_env(tmp_path: Path) -> Env:
    assert run_cli("demo", tmp_path / "demo").code == 0
    d = tmp_path / "demo"
    return Env(tmp_path, d / "atocore.db", d / "registry.json", tmp_path / "reports")


def execute(db: Path, *sql: str, params: tuple[Any, ...] = ()) -> None:
    conn = sqlite3.connect(db)
    try:
        for statement in sql:
            conn.execute(statement, params if "?" in statement else ())
        conn.commit()
    finally:
        conn.close()


def as_json(result: Result) -> dict[str, Any]:
    assert result.code in (0, 1), result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def discovered(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{c['table']}.{c['column']}": c for c in doc["discovered"]}


def check(doc: dict[str, Any], name: str) -> dict[str, Any] | None:
    found = [c for c in doc["checks"] if c["check"] == name]
    return found[0] if found else None


def applied_demo(tmp_path: Path, *columns: str) -> Env:
    """The demo migrated by the runbook (collision kept canonical), with ``columns``."""
    env = demo_env(tmp_path)
    res = tmp_path / "res.json"
    assert env.run("resolve", *columns, "--keep", "canonical", "--out", res).code == 0
    applied = env.run("apply", *columns, "--resolutions", res, "--yes")
    assert applied.code == 0, applied.stderr
    return env


def text_values(db: Path) -> list[tuple[str, str, str]]:
    """(table, column, value) for every text value of every table."""
    out = []
    for (table,) in rows(db, "SELECT name FROM sqlite_master WHERE type = 'table'"):
        for col in [r[1] for r in rows(db, f'PRAGMA table_info("{table}")')]:
            for (value,) in rows(db, f'SELECT "{col}" FROM "{table}"'):
                if isinstance(value, str):
                    out.append((table, col, value))
    return out


# -- the demo: conflicts.project, the false all clear of issue 11 ------------------------


def test_inspect_lists_the_demo_conflicts_column_with_the_option_to_add(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    doc = as_json(env.run("inspect", "--format", "json"))
    found = discovered(doc)
    assert list(found) == ["conflicts.project"]
    col = found["conflicts.project"]
    assert col["hint"] == "--column conflicts.project"
    assert col["rows"] == 1 and col["sampled"] is False
    assert col["names"] == [
        {
            "name": "p05",
            "kind": "alias",
            "canonical_id": P05,
            "rows": 1,
            "spellings": 1,
            "examples": ["p05"],
        }
    ]
    assert doc["counts"]["discovered_columns"] == 1 and doc["counts"]["discovered_rows"] == 1
    assert doc["discovery"]["ran"] is True
    assert "conflicts.project" in doc["discovery"]["columns_read"]
    # never read: the migration's own columns and the configured targets
    for owned in ("projects.name", "projects.owner", "project_state.project_id"):
        assert owned not in doc["discovery"]["columns_read"]
    assert "memories.project" not in doc["discovery"]["columns_read"]

    text = env.run("inspect")
    assert text.code == 0
    assert "conflicts.project" in text.stdout and "--column conflicts.project" in text.stdout


def test_inspect_sql_prints_the_discovery_select_and_it_runs_as_printed(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    printed = env.run("inspect", "--sql")
    assert printed.code == 0
    statements = [s for s in printed.stdout.split(";\n") if s.strip()]
    (select,) = [
        s for s in statements if s.startswith('SELECT "project", COUNT(*) FROM main."conflicts"')
    ]
    assert "typeof(\"project\") = 'text'" in select
    # SQLite's lower() folds ASCII only: it is applied only behind the test that
    # the value is all ASCII (as many bytes as characters)
    guard = 'length(CAST("project" AS BLOB)) <> length("project") OR lower('
    assert select.count("lower(") == select.count(guard) == 1
    # SQL keeps what could fold to a name; Python's fold decides (p06-polisher is exact)
    assert rows(env.db, select) == [("p05", 1), ("p06-polisher", 1)]
    # the JSON report carries the same statements
    doc = as_json(env.run("inspect", "--format", "json"))
    assert select.strip() in [s.strip() for s in doc["sql"]]


def test_verify_after_a_default_apply_fails_naming_the_forgotten_column(tmp_path: Path) -> None:
    env = applied_demo(tmp_path)
    result = env.run("verify", "--format", "json")
    assert result.code == 1
    doc = json.loads(result.stdout)
    failed = [c for c in doc["checks"] if not c["ok"]]
    assert [c["check"] for c in failed] == [DISCOVERY_CHECK]
    assert "conflicts.project" in failed[0]["detail"]
    assert "--column conflicts.project" in failed[0]["detail"]
    assert "--ignore-column conflicts.project" in failed[0]["detail"]
    assert list(discovered(doc)) == ["conflicts.project"]
    text = env.run("verify")
    assert text.code == 1 and "--column conflicts.project" in text.stdout
    assert "all checks pass" not in text.stdout


def test_plan_warns_that_apply_would_leave_the_column_without_blocking(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    res = tmp_path / "res.json"
    assert env.run("resolve", "--keep", "canonical", "--out", res).code == 0
    planned = env.run("plan", "--resolutions", res, "--format", "json", "--detailed-exitcode")
    assert planned.code == 4  # changes pending and applicable: the warning is no blocker
    doc = json.loads(planned.stdout)
    assert doc["applicable"] is True and doc["blockers"] == []
    (warning,) = doc["warnings"]
    assert warning.startswith("apply would leave 1 alias-keyed row in conflicts.project")
    assert "--column conflicts.project" in warning and "--ignore-column" in warning
    assert list(discovered(doc)) == ["conflicts.project"]
    text = env.run("plan", "--resolutions", res)
    assert "warning: apply would leave 1 alias-keyed row in conflicts.project" in text.stdout

    # once the configured columns are clean, plan says there is nothing to do
    # there, never that the database is clean
    assert env.run("apply", "--resolutions", res, "--yes").code == 0
    empty = env.run("plan", "--detailed-exitcode")
    assert empty.code == 0
    assert "clean" not in empty.stdout
    assert "apply would leave 1 alias-keyed row in conflicts.project" in empty.stdout


def test_the_runbook_with_the_column_leaves_no_alias_in_any_text_column(tmp_path: Path) -> None:
    env = applied_demo(tmp_path, "--column", "conflicts.project")
    result = env.run("verify", "--column", "conflicts.project", "--format", "json")
    assert result.code == 0, result.stdout
    doc = json.loads(result.stdout)
    assert doc["discovered"] == []
    ok = check(doc, DISCOVERY_CHECK)
    assert ok is not None and ok["ok"]
    assert rows(env.db, "SELECT project FROM conflicts WHERE id = 'cf-01'") == [(P05,)]
    registry = load_registry(env.registry)
    for table, column, value in text_values(env.db):
        hit = registry.classify(value)
        assert hit is None or hit[0] != "alias", (table, column, value)
        if hit is not None and hit[0] == "variant":
            # the canonical row keeps its own spelling (docs/decisions.md 2)
            assert (table, column) == ("projects", "name"), (table, column, value)


def test_ignore_column_acknowledges_it_and_it_is_never_read(tmp_path: Path) -> None:
    env = applied_demo(tmp_path)
    args = ("--ignore-column", "conflicts.project")
    result = env.run("verify", *args, "--format", "json")
    assert result.code == 0, result.stdout
    doc = json.loads(result.stdout)
    assert doc["discovered"] == []
    assert doc["discovery"]["ignored"] == ["conflicts.project"]
    assert "conflicts.project" not in doc["discovery"]["columns_read"]
    assert "conflicts.summary" in doc["discovery"]["columns_read"]
    ok = check(doc, DISCOVERY_CHECK)
    assert ok is not None and "ignored: conflicts.project" in ok["detail"]
    sql = as_json(env.run("inspect", *args, "--format", "json"))["sql"]
    assert not [s for s in sql if s.startswith('SELECT "project", COUNT(*) FROM main."conflicts"')]


# -- what counts as a discovered value -------------------------------------------------


def test_a_state_value_naming_an_alias_is_flagged_then_acknowledged_in_the_config(
    make_env: Any,
) -> None:
    env: Env = make_env(
        projects=PROJECTS,
        state=[("s1", "c05", "cfg", "sister", "p06", "active", "2025-01-01")],
    )
    doc = as_json(env.run("verify", "--format", "json"))
    assert list(discovered(doc)) == ["project_state.value"]
    assert env.run("verify").code == 1
    config = env.root / "identity.toml"
    config.write_text('ignore = ["project_state.value"]\n', "utf-8")
    result = env.run("verify", "--config", config, "--format", "json")
    assert result.code == 0, result.stdout
    assert json.loads(result.stdout)["discovery"]["ignored"] == ["project_state.value"]


def test_a_variant_spelling_is_flagged_and_the_exact_canonical_id_is_not(make_env: Any) -> None:
    env: Env = make_env(projects=PROJECTS)
    execute(
        env.db,
        "CREATE TABLE tickets (id TEXT PRIMARY KEY, project TEXT, title TEXT)",
        "INSERT INTO tickets VALUES ('t1', ' P05-Interferometer ', 'x'),"
        " ('t2', 'p05-interferometer', 'p06-polisher'), ('t3', 'p05-interferometer', 'y')",
    )
    doc = as_json(env.run("inspect", "--format", "json"))
    found = discovered(doc)
    assert list(found) == ["tickets.project"]  # tickets.title holds only an exact id
    assert found["tickets.project"]["rows"] == 1
    (name,) = found["tickets.project"]["names"]
    assert (name["kind"], name["name"], name["examples"]) == (
        "variant",
        P05,
        [" P05-Interferometer "],
    )


def test_unicode_folds_are_found_where_sqlite_lower_would_miss_them(make_env: Any) -> None:
    registry = [*DEFAULT_REGISTRY, {"id": "p09-izmir", "aliases": ["İzmir", "k-line"]}]
    env: Env = make_env(registry=registry, projects=PROJECTS)
    values = [
        ("n1", "ÉTALON"),  # alias Étalon: SQLite's lower() leaves the É
        ("n2", "İZMIR"),  # 5 characters, folds to 6 ('i̇zmir')
        ("n3", "\u212a-LINE"),  # KELVIN SIGN folds to an ASCII 'k'
        ("n4", "\u3000p05\u2003"),  # ideographic and em spaces: fold strips them
        ("n5", "P07-ÉTALON"),  # a variant spelling of p07-étalon
    ]
    execute(env.db, "CREATE TABLE notes (id TEXT PRIMARY KEY, project TEXT)")
    conn = sqlite3.connect(env.db)
    conn.executemany("INSERT INTO notes VALUES (?, ?)", values)
    conn.commit()
    for _, value in values:  # SQLite alone would not have matched a single one
        (lowered,) = conn.execute("SELECT lower(trim(?))", (value,)).fetchone()
        assert lowered != fold(value)
    conn.close()
    doc = as_json(env.run("inspect", "--format", "json"))
    col = discovered(doc)["notes.project"]
    assert col["rows"] == 5
    assert {n["name"]: n["canonical_id"] for n in col["names"]} == {
        "étalon": "p07-étalon",
        "i̇zmir": "p09-izmir",
        "k-line": "p09-izmir",
        "p05": P05,
        "p07-étalon": "p07-étalon",
    }


def test_a_column_of_an_unexpected_table_is_found(make_env: Any) -> None:
    env: Env = make_env(projects=PROJECTS)
    execute(
        env.db,
        "CREATE TABLE mirror_regeneration_failures"
        " (id INTEGER PRIMARY KEY, project TEXT, error TEXT, at DATETIME)",
        "INSERT INTO mirror_regeneration_failures (project, error, at) VALUES"
        " ('interferometer', 'timeout', '2025-01-01'), ('Interferometer', 'disk', 'p06'),"
        " (NULL, 'x', 5), ('unknown-project', 'y', NULL)",
    )
    doc = as_json(env.run("verify", "--format", "json"))
    found = discovered(doc)
    assert set(found) == {
        "mirror_regeneration_failures.project",
        "mirror_regeneration_failures.at",  # a DATETIME column holds text too
    }
    col = found["mirror_regeneration_failures.project"]
    assert col["hint"] == "--column mirror_regeneration_failures.project"
    assert col["rows"] == 2 and col["names"][0]["spellings"] == 2
    failed = check(doc, DISCOVERY_CHECK)
    assert failed is not None and not failed["ok"]
    assert "--column mirror_regeneration_failures.project" in failed["detail"]
    # with the column configured it is migrated, and the rest stays flagged
    fixed = env.run("apply", "--column", "mirror_regeneration_failures.project", "--yes")
    assert fixed.code == 0, fixed.stderr
    after = as_json(
        env.run("verify", "--column", "mirror_regeneration_failures.project", "--format", "json")
    )
    assert list(discovered(after)) == ["mirror_regeneration_failures.at"]


def test_without_rowid_and_untyped_tables_are_read_and_sampled(make_env: Any) -> None:
    env: Env = make_env(projects=PROJECTS)
    execute(
        env.db,
        "CREATE TABLE tags (name TEXT PRIMARY KEY, project TEXT) WITHOUT ROWID",
        "CREATE TABLE kv (k, v, PRIMARY KEY (k)) WITHOUT ROWID",
        "INSERT INTO tags VALUES ('a', 'x'), ('b', 'P05'), ('c', 'y'), ('d', 'p06')",
        "INSERT INTO kv VALUES ('proj', 'polisher'), (2, 3)",
    )
    doc = as_json(env.run("inspect", "--format", "json"))
    found = discovered(doc)
    assert set(found) == {"tags.project", "kv.v"}
    assert found["tags.project"]["rows"] == 2
    # sampled: the first rows by primary key, and said so
    registry = load_registry(env.registry)
    conn = open_database(env.db, readonly=True)
    try:
        targets, _ = resolve_targets(conn, [])
        result = discover_columns(conn, registry, targets, sample_rows=2)
    finally:
        conn.close()
    (tags,) = [c for c in result.columns if c.table == "tags"]
    assert (tags.rows, tags.rows_read, tags.table_rows, tags.sampled) == (1, 2, 4, True)
    assert "sampled: first 2 rows of 4 in tags" in "\n".join(result.warnings())
    # the planner cannot key a WITHOUT ROWID table with no id: a clear error, not SQL
    refused = env.run("plan", "--column", "tags.project")
    assert refused.code == 2
    assert "WITHOUT ROWID" in refused.stderr and "--ignore-column tags.project" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_columns_that_cannot_hold_text_are_not_read(make_env: Any) -> None:
    env: Env = make_env(projects=PROJECTS)
    execute(
        env.db,
        "CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER, label TEXT) STRICT",
        "CREATE TABLE loose (id INTEGER PRIMARY KEY, n INTEGER)",
        "INSERT INTO counters VALUES (1, 2, 'p05')",
        "INSERT INTO loose VALUES (1, 'p05')",  # a non-STRICT INTEGER column keeps text
        # SQLite's quirk: INTEGER PRIMARY KEY DESC is no rowid, and keeps text too
        "CREATE TABLE quirk (id INTEGER PRIMARY KEY DESC, n)",
        "INSERT INTO quirk VALUES ('P06', 1)",
    )
    doc = as_json(env.run("inspect", "--format", "json"))
    read = doc["discovery"]["columns_read"]
    assert {"counters.label", "loose.n", "quirk.id", "quirk.n"} <= set(read)
    for never in ("counters.id", "counters.n", "loose.id"):
        assert never not in read
    assert set(discovered(doc)) == {"counters.label", "loose.n", "quirk.id"}


def test_text_that_is_not_utf8_does_not_stop_discovery(make_env: Any) -> None:
    env: Env = make_env(projects=PROJECTS)
    execute(
        env.db,
        "CREATE TABLE raw (id INTEGER PRIMARY KEY, project TEXT)",
        "INSERT INTO raw (project) VALUES (CAST(X'7030ff' AS TEXT)), ('p05')",
    )
    doc = as_json(env.run("verify", "--format", "json"))
    assert discovered(doc)["raw.project"]["rows"] == 1


# -- sampling, --no-discover, --ignore-column errors -------------------------------------


def test_a_sampled_table_is_said_everywhere(make_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    env: Env = make_env(projects=PROJECTS)
    execute(env.db, "CREATE TABLE big (id INTEGER PRIMARY KEY, project TEXT)")
    conn = sqlite3.connect(env.db)
    conn.executemany(
        "INSERT INTO big (id, project) VALUES (?, ?)",
        [(i, "p05" if i in (3, 40) else f"row {i}") for i in range(1, 51)],
    )
    conn.commit()
    conn.close()
    monkeypatch.setattr(survey_mod, "SAMPLE_ROWS", 10)
    doc = as_json(env.run("verify", "--format", "json"))
    col = discovered(doc)["big.project"]
    assert (col["rows"], col["rows_read"], col["table_rows"], col["sampled"]) == (1, 10, 50, True)
    assert doc["discovery"]["sampled"] == [{"table": "big", "rows_read": 10, "table_rows": 50}]
    failed = check(doc, DISCOVERY_CHECK)
    assert failed is not None and "sampled: first 10 rows of 50 in big" in failed["detail"]
    assert any("first 10 of 50 in big" in s for s in doc["skipped"])
    inspected = env.run("inspect")
    assert "sampled: first 10 rows of 50 in big" in inspected.stdout
    assert "(of the first 10)" in inspected.stdout
    plan = as_json(env.run("plan", "--format", "json"))
    assert any("sampled: first 10 rows of 50 in big" in w for w in plan["warnings"])
    sql = as_json(env.run("inspect", "--format", "json"))["sql"]
    assert any("ORDER BY rowid LIMIT 10)" in s for s in sql)


def test_no_discover_says_discovery_was_skipped(tmp_path: Path) -> None:
    env = applied_demo(tmp_path)
    result = env.run("verify", "--no-discover", "--format", "json")
    assert result.code == 0  # the forgotten column is not searched, and that is said
    doc = json.loads(result.stdout)
    assert DISCOVERY_SKIPPED in doc["skipped"]
    assert check(doc, DISCOVERY_CHECK) is None
    assert doc["discovery"]["ran"] is False and doc["discovered"] == []
    text = env.run("verify", "--no-discover")
    assert f"not checked: {DISCOVERY_SKIPPED}" in text.stdout
    inspected = env.run("inspect", "--no-discover")
    assert "discovery skipped (--no-discover)" in inspected.stdout
    sql = as_json(env.run("inspect", "--no-discover", "--format", "json"))["sql"]
    assert not [s for s in sql if "typeof(" in s]
    planned = env.run("plan", "--no-discover")
    assert "discovery skipped (--no-discover)" in planned.stdout


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("nosuch.project", "--ignore-column nosuch.project: no such table"),
        ("conflicts.nosuch", "--ignore-column conflicts.nosuch: no such column"),
        ("conflicts", "is not TABLE.COLUMN"),
        ("projects.name", "owned by the migration"),
        ("memories.project", "also a project-keyed column"),
    ],
)
def test_a_bad_ignore_column_is_bad_input(tmp_path: Path, spec: str, words: str) -> None:
    env = demo_env(tmp_path)
    for command in ("inspect", "plan", "verify"):
        result = env.run(command, "--ignore-column", spec)
        assert result.code == 2, (command, result.stdout)
        assert words in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr


def test_configured_and_ignored_at_once_is_bad_input(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    both = ("--column", "conflicts.project", "--ignore-column", "CONFLICTS.Project")
    result = env.run("verify", *both)
    assert result.code == 2 and "cannot be both migrated and ignored" in result.stderr


# -- cost: set-based, one statement per column read --------------------------------------


def test_discovery_statements_do_not_grow_with_rows(tmp_path: Path) -> None:
    registry = tmp_path / "registry.json"
    registry.write_text(json.dumps({"projects": DEFAULT_REGISTRY}), "utf-8")

    def inspect_sql(db: Path, *extra: str) -> tuple[list[str], dict[str, Any]]:
        execute(
            db,
            "CREATE TABLE conflicts (id TEXT PRIMARY KEY, project TEXT, summary TEXT)",
            "INSERT INTO conflicts VALUES ('cf', 'p05', 's')",
        )
        result = run_cli(
            "inspect", "--db", db, "--registry", registry, "--report-dir", tmp_path / "r",
            "--format", "json", *extra,
        )  # fmt: skip
        doc = json.loads(result.stdout)
        return doc["sql"], doc

    small_sql, small = inspect_sql(build_sized_db(tmp_path / "small.db", 1_000))
    large_sql, large = inspect_sql(build_sized_db(tmp_path / "large.db", 20_000))
    assert discovered(small)["conflicts.project"]["rows"] == 1
    assert discovered(large)["conflicts.project"]["rows"] == 1
    assert len(large_sql) == len(small_sql)

    skipped_sql, _ = inspect_sql(build_sized_db(tmp_path / "none.db", 1_000), "--no-discover")
    read = small["discovery"]["columns_read"]
    tables = {c.split(".")[0] for c in read}
    discovery_sql = [q for q in small_sql if q not in skipped_sql]
    # one GROUP BY per column read; otherwise only per-table row counts: the
    # parent's estimate to share the columns between inspect's two workers
    # (max(rowid)) and each worker's COUNT(*) of the tables in its share
    grouped = [q for q in discovery_sql if " GROUP BY " in q]
    per_table = [q for q in discovery_sql if " GROUP BY " not in q]
    assert len(grouped) == len(read)
    assert all(
        q.startswith(("SELECT COUNT(*) FROM ", "SELECT max(rowid) FROM ")) for q in per_table
    )
    assert len(per_table) <= len(tables) * 3
    assert len(read) < 30


def test_apply_and_the_planner_do_not_discover(tmp_path: Path) -> None:
    env = demo_env(tmp_path)
    conn = open_database(env.db, readonly=True)
    try:
        targets, missing = resolve_targets(conn, [])
        assert survey(conn, load_registry(env.registry), targets, missing).discovery is None
    finally:
        conn.close()


# -- the SQL prefilter never drops a value that folds to a registered name ---------------


def test_the_white_space_and_lower_tables_match_python() -> None:
    assert "".join(chr(c) for c in range(128) if chr(c).isspace()) == ASCII_BLANK
    assert list(WHITESPACE) == [c for c in range(0x110000) if chr(c).isspace()]
    growth = {c: len(chr(c).lower()) for c in range(0x110000)}
    assert min(growth.values()) == 1 and max(growth.values()) == LOWER_GROWTH
    assert [c for c in range(NO_CASE_FROM, 0x110000) if chr(c).lower() != chr(c)] == []


SHAPE_REGISTRY = [
    *DEFAULT_REGISTRY,
    {"id": "p09-izmir", "aliases": ["İzmir", "k-line", "σοφία"]},
]
BLANKS = st.text(alphabet=[chr(c) for c in WHITESPACE], max_size=PADDING // 2)


@st.composite
def spellings(draw: st.DrawFn) -> str:
    """A registered name with random case changes and white space around it."""
    names = [p["id"] for p in SHAPE_REGISTRY] + [a for p in SHAPE_REGISTRY for a in p["aliases"]]
    name = fold(draw(st.sampled_from(names)))
    swapped = "".join(ch.upper() if draw(st.booleans()) else ch for ch in name).replace(
        "K", draw(st.sampled_from(["K", "\u212a"]))
    )
    spelled = swapped if fold(swapped) == name else name
    return draw(BLANKS) + spelled + draw(BLANKS)


@settings(max_examples=200, deadline=None)
@given(st.lists(spellings(), min_size=1, max_size=8), st.lists(st.text(max_size=30), max_size=8))
def test_the_where_clause_keeps_every_registered_spelling(
    tmp_path_factory: pytest.TempPathFactory, names: list[str], noise: list[str]
) -> None:
    path = tmp_path_factory.mktemp("shape") / "registry.json"
    path.write_text(json.dumps({"projects": SHAPE_REGISTRY}), "utf-8")
    registry = load_registry(path)
    shape = name_shape(registry)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v)")
    conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in names + noise])
    kept = {
        r[0]
        for r in conn.execute(f'SELECT "v" FROM t WHERE {shape.where(chr(34) + "v" + chr(34))}')
    }
    for value in names + noise:
        hit = registry.classify(value)
        if hit is not None and hit[0] != "canonical":
            assert value in kept, (value, fold(value))
    # an ASCII value reaches Python only when it folds to a registered name
    for value in kept:
        if value.isascii():
            assert registry.classify(value) is not None, value


def test_the_where_clause_keeps_the_edge_cases(tmp_path: Path) -> None:
    """Every name bare, upper-cased, padded to the limit, and one step past it."""
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"projects": SHAPE_REGISTRY}), "utf-8")
    registry = load_registry(path)
    shape = name_shape(registry)
    names = [p["id"] for p in SHAPE_REGISTRY] + [a for p in SHAPE_REGISTRY for a in p["aliases"]]
    must = []
    for name in names:
        must += [name, name.upper(), name.lower(), " " + name, name + "\u3000"]
        must += ["\t" * PADDING + name, name + "\u2029" * PADDING]
    beyond = [" " * (PADDING + 1) + max(names, key=len)]
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v)")
    conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in must + beyond])
    kept = {
        r[0]
        for r in conn.execute(f'SELECT "v" FROM t WHERE {shape.where(chr(34) + "v" + chr(34))}')
    }
    assert [v for v in must if registry.classify(v) and v not in kept] == []
    assert kept.isdisjoint(beyond)  # the documented limit: PADDING characters of white space


def test_an_sqlite_without_table_list_reads_the_same_tables(
    make_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before SQLite 3.37 PRAGMA table_list silently returns nothing: discovery
    must not then read nothing and call the database clean."""
    env: Env = make_env(projects=PROJECTS)
    execute(
        env.db,
        "CREATE TABLE tags (name TEXT PRIMARY KEY, project TEXT) WITHOUT ROWID",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, project TEXT)",
        "INSERT INTO tags VALUES ('a', 'p05')",
        "INSERT INTO notes (project) VALUES ('P06')",
    )
    new = as_json(env.run("verify", "--format", "json"))
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    old = as_json(env.run("verify", "--format", "json"))
    assert set(discovered(old)) == set(discovered(new)) == {"tags.project", "notes.project"}
    assert old["discovery"]["columns_read"] == new["discovery"]["columns_read"]


def test_bytes_that_are_not_utf8_are_still_folded_by_python(tmp_path: Path) -> None:
    """SQLite counts a stray byte as one character, so 'p\\x805' looks ASCII by
    its byte count; discovery reads it as 'p\\ufffd5'. With such a name
    registered, the SQL fold is not used and Python finds the value."""
    path = tmp_path / "registry.json"
    weird = [*DEFAULT_REGISTRY, {"id": "x-proj", "aliases": ["p\ufffd5", "\ufffdq7"]}]
    path.write_text(json.dumps({"projects": weird}), "utf-8")
    registry = load_registry(path)
    shape = name_shape(registry)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v)")
    conn.execute("INSERT INTO t VALUES (CAST(X'708035' AS TEXT))")  # p, 0x80, 5
    conn.execute("INSERT INTO t VALUES (CAST(X'807137' AS TEXT))")  # 0x80 first: unicode() 128
    conn.execute("INSERT INTO t VALUES ('P05 ')")
    conn.text_factory = lambda b: b.decode("utf-8", "replace")
    kept = [
        r[0]
        for r in conn.execute(f'SELECT "v" FROM t WHERE {shape.where(chr(34) + "v" + chr(34))}')
    ]
    assert sorted(kept) == ["P05 ", "p\ufffd5", "\ufffdq7"]
    assert registry.classify("p\ufffd5") == ("alias", "x-proj")
    # without such a name, the ASCII fold in SQL is used again
    assert "lower(trim(" in name_shape(
        load_registry(write_registry(tmp_path / "r2.json", DEFAULT_REGISTRY))
    ).where("v")
