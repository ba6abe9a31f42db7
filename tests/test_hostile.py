"""Hostile input: names and values built to break quoting, parsing, one-line
errors and file handling; a registry of 10,000 projects; paths through
symlinks; planted files and symlinks where reports and backups go.

Every migration here is checked against the reference model in
``tests/model.py``. Each test records what it observed through the
``reliability`` fixture for docs/reliability.md; the last test fails when
that document no longer lists every test of this file and test_faults.py.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from atocore_identity.backup import create_private_file
from atocore_identity.reports import write_json_atomic
from conftest import build_db, content_digest, run_cli, write_registry
from model import expected, load

Recorder = Callable[[str, str], None]  # the reliability fixture
ROOT = Path(__file__).resolve().parent.parent
SQLITE3 = shutil.which("sqlite3")

LONG = "L" * 10_000
EVIL = "p05'; DROP TABLE memories;--"
HOSTILE = {
    "single quote": "o'brien",
    "double quote": 'say "cheese"',
    "SQL fragment": EVIL,
    "newline": "two\nlines",
    "10k chars": LONG,
    "non-ASCII": "Ünïcødé-ßπ-日本",
    "NUL": "nul\x00byte",
    "backslash and percent": "50%_off\\n",
}


def migrate_and_check(tmp: Path, registry: list[dict[str, Any]], **tables: Any) -> dict[str, Any]:
    """Apply through the CLI, compare with the model, verify; return observations."""
    db = build_db(tmp / "atocore.db", **tables)
    reg = write_registry(tmp / "registry.json", registry)
    common = ["--db", db, "--registry", reg, "--report-dir", tmp / "reports"]
    model = expected(db, registry)
    assert model.refusal is None, model.reasons

    inspected = run_cli("inspect", *common, "--sql")
    assert inspected.code == 0, inspected.stderr
    script = run_cli("plan", *common, "--format", "sql")
    assert script.code == 0, script.stderr
    applied = run_cli("apply", *common, "--yes")
    assert applied.code == 0, applied.stderr
    assert load(db) == model.tables
    backup = next((tmp / "reports").glob("backup-*.db"))
    # the hostile name is also written as plain text into these columns on purpose:
    # acknowledged, as an operator would, so discovery does not flag it
    ignored = ["memories.memory_type", "memories.content", "project_state.category"]
    ignored += ["project_state.key", "project_state.value"]
    acknowledged = [a for c in ignored for a in ("--ignore-column", c)]
    verified = run_cli("verify", *common, *acknowledged, "--backup", backup)
    assert verified.code == 0, verified.stdout
    assert {t: len(rows) for t, rows in load(db).items()}["memories"] == len(
        model.tables["memories"]
    )  # DROP TABLE memories did not run
    return {
        "db": db,
        "backup": backup,
        "inspect_sql": inspected.stdout,
        "plan_sql": script.stdout,
        "migrated": content_digest(db),
        "verify": verified.code,
    }


def run_in_sqlite3_shell(db: Path, sql: str, *flags: str) -> subprocess.CompletedProcess[str]:
    assert SQLITE3 is not None
    return subprocess.run(
        [SQLITE3, "-bail", *flags, str(db)], input=sql, capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(SQLITE3 is None, reason="needs the sqlite3 shell")
@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_strings_everywhere(tmp_path: Path, kind: str, reliability: Recorder) -> None:
    """The hostile string as an alias, in shadow project names, categories,
    keys, values and memory content; the migration is what the model says,
    verify passes, and the SQL that inspect --sql and plan --format sql print
    runs as it is in the sqlite3 shell (the plan's script giving the same
    database as apply)."""
    s = HOSTILE[kind]
    registry = [
        {"id": "p05-interferometer", "aliases": ["p05", s]},
        {"id": "p06-polisher", "aliases": [f"{s}-6"]},
    ]
    shouted = "".join(c.upper() if c.isascii() else c for c in s)  # folds back to s
    tables = {
        "projects": [("a", f" {shouted} "), ("b", "P05"), ("c", f"{s}-6"), ("d", s + "x")],
        "state": [
            ("s1", "a", s, s, s, "active", "2025-01-02"),
            ("s2", "b", s, s, s, "active", "2025-01-01"),
            ("s3", "a", "cat", s, "v", "superseded", None),
            ("s4", "c", s, "k", s + "!", "active", None),
            ("s5", "d", s, s, s, "active", None),
        ],
        "memories": [
            ("m1", "fact", s, s, "active", "2025-01-01"),
            ("m2", "fact", s, "p05-interferometer", "active", "2025-01-02"),
            ("m3", s, s, f"{s}-6 ", "candidate", None),
            ("m4", "fact", s, s + "x", "active", None),
        ],
        "interactions": [("i1", s), ("i2", shouted), ("i3", s + "x")],
    }
    got = migrate_and_check(tmp_path, registry, **tables)

    inspect_run = run_in_sqlite3_shell(got["backup"], got["inspect_sql"], "-readonly")
    copy = tmp_path / "by-script.db"
    shutil.copyfile(got["backup"], copy)
    script_run = run_in_sqlite3_shell(copy, got["plan_sql"])
    same = script_run.returncode == 0 and content_digest(copy) == got["migrated"]
    reliability(
        f"{kind} ({s[:24]!r}{'…' if len(s) > 24 else ''}) in alias, names, category, key,"
        " value, memory content",
        f"migrated as the model says; verify exit {got['verify']}; inspect --sql in sqlite3"
        f" exit {inspect_run.returncode}; plan --format sql in sqlite3 exit"
        f" {script_run.returncode}, {'same' if same else 'DIFFERENT'} database as apply",
    )
    assert inspect_run.returncode == 0, inspect_run.stderr
    assert script_run.returncode == 0, script_run.stderr
    assert same


@pytest.mark.parametrize("where", ["category", "key", "project name"])
def test_errors_stay_one_line_with_newlines_in_names(
    tmp_path: Path,
    where: str,
    reliability: Recorder,
) -> None:
    """A refusal that quotes a hostile name must still be one line on stderr."""
    registry = [{"id": "p05-interferometer", "aliases": ["p05"]}]
    name = "evil\nError: forged second line"
    if where == "project name":  # two canonical rows: an integrity error naming both
        tables: dict[str, Any] = {
            "projects": [("a", "p05-interferometer"), ("b", "P05-Interferometer\n"), ("c", "p05")]
        }
    else:
        cat, key = (name, "k") if where == "category" else ("c", name)
        tables = {
            "projects": [("a", "p05-interferometer"), ("b", "p05")],
            "state": [
                ("s1", "a", cat, key, "one", "active", None),
                ("s2", "b", cat, key, "two", "active", None),
            ],
        }
    db = build_db(tmp_path / "atocore.db", **tables)
    reg = write_registry(tmp_path / "registry.json", registry)
    before = content_digest(db)
    res = run_cli("apply", "--db", db, "--registry", reg, "--report-dir", tmp_path / "r", "--yes")
    reliability(
        f"newline in a {where} quoted by a refusal",
        f"exit {res.code}; stderr has {res.stderr.count(chr(10))} line(s)",
    )
    assert res.code == 3
    assert content_digest(db) == before
    assert res.stderr.startswith("Error: ") and res.stderr.count("\n") == 1, res.stderr


def test_registry_of_10000_projects(tmp_path: Path, reliability: Recorder) -> None:
    n = 10_000
    registry = [{"id": f"proj-{i:05d}", "aliases": [f"p{i}", f"alias {i}"]} for i in range(n)]
    projects, state, memories, interactions = [], [], [], []
    for i in range(0, n, 25):  # 400 projects with shadows, some without a canonical row
        if i % 50 == 0:
            projects.append((f"c{i}", f"proj-{i:05d}"))
        projects.append((f"s{i}", f"P{i}"))
        projects.append((f"t{i}", f" Alias {i}"))
        state.append((f"st{i}", f"s{i}", "c", "k", "v", "active", "2025-01-01"))
        state.append((f"su{i}", f"t{i}", "c", "k", "v", "active", "2025-01-02"))
        memories += [
            (f"m{i}", "fact", "same", f"p{i}", "active", None),
            (f"n{i}", "fact", "same", f"PROJ-{i:05d}", "active", None),
        ]
        interactions.append((f"i{i}", f"alias {i}"))
    started = time.perf_counter()
    got = migrate_and_check(
        tmp_path,
        registry,
        projects=projects,
        state=state,
        memories=memories,
        interactions=interactions,
    )
    elapsed = time.perf_counter() - started
    reliability(
        f"registry of {n} projects ({2 * n} aliases), {len(projects)} project rows",
        f"inspect, plan, apply and verify --backup in {elapsed:.1f}s in all;"
        f" migrated as the model says; verify exit {got['verify']}",
    )


def test_registry_and_db_through_symlinks(tmp_path: Path, reliability: Recorder) -> None:
    real = tmp_path / "real"
    real.mkdir()
    registry = [{"id": "p05-interferometer", "aliases": ["p05"]}]
    db = build_db(
        real / "atocore.db",
        projects=[("a", "p05-interferometer"), ("b", "p05")],
        state=[("s1", "b", "c", "k", "v", "active", None)],
        memories=[("m1", "fact", "x", "P05", "active", None)],
    )
    reg = write_registry(real / "registry.json", registry)
    model = expected(db, registry)
    links = tmp_path / "links"
    links.mkdir()
    (links / "db").symlink_to(db)
    (links / "registry").symlink_to(reg)
    common = ["--db", links / "db", "--registry", links / "registry"]
    common += ["--report-dir", tmp_path / "reports"]
    applied = run_cli("apply", *common, "--yes")
    backup = next((tmp_path / "reports").glob("backup-*.db"), None)
    verified = run_cli("verify", *common, "--backup", backup or "none")
    reliability(
        "--db and --registry given as symlinks",
        f"apply exit {applied.code}; verify exit {verified.code}; links intact:"
        f" {(links / 'db').is_symlink() and (links / 'registry').is_symlink()}",
    )
    assert applied.code == 0, applied.stderr
    assert verified.code == 0, verified.stdout
    assert (links / "db").is_symlink() and os.readlink(links / "db") == str(db)
    assert (links / "registry").is_symlink() and os.readlink(links / "registry") == str(reg)
    assert load(db) == model.tables  # the target was migrated, in place
    assert sorted(p.name for p in links.iterdir()) == ["db", "registry"]  # no journal beside it
    assert not list(real.glob("*-journal"))


# --------------------------------------------------------------------------
# Planted files and symlinks where reports and backups go
# --------------------------------------------------------------------------


def plant(tmp: Path, what: str) -> tuple[Path, Path]:
    """A path with something planted at it, and the victim a symlink points to."""
    victim = tmp / "victim.txt"
    victim.write_text("precious")
    path = tmp / "reports" / "apply-20250101T000000.000000Z.json"
    path.parent.mkdir(exist_ok=True)
    if what == "symlink to a file":
        path.symlink_to(victim)
    elif what == "dangling symlink":
        victim.unlink()
        path.symlink_to(victim)
    elif what == "symlink to a directory":
        victim.unlink()
        victim.mkdir()
        path.symlink_to(victim)
    elif what == "regular file":
        path.write_text("earlier report")
    return path, victim


PLANTED = ["symlink to a file", "dangling symlink", "symlink to a directory", "regular file"]


def snapshot(path: Path, victim: Path) -> tuple[Any, ...]:
    def state(p: Path) -> Any:
        if p.is_symlink():
            return ("link", os.readlink(p))
        if p.is_dir():
            return ("dir", sorted(x.name for x in p.iterdir()))
        if p.exists():
            return ("file", p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        return ("absent",)

    return state(path), state(victim), sorted(x.name for x in path.parent.iterdir())


@pytest.mark.parametrize("what", PLANTED)
def test_write_json_atomic_refuses_a_planted_path(
    tmp_path: Path, what: str, reliability: Recorder
) -> None:
    path, victim = plant(tmp_path, what)
    before = snapshot(path, victim)
    with pytest.raises(Exception) as raised:
        write_json_atomic(path, {"kind": "apply", "secret": "x"})
    reliability(
        f"report path is a pre-existing {what} (reports.write_json_atomic)",
        f"raised {type(raised.value).__name__}: {raised.value}; nothing touched:"
        f" {snapshot(path, victim) == before}",
    )
    assert snapshot(path, victim) == before  # no temp file left either


@pytest.mark.parametrize("what", PLANTED)
def test_create_private_file_refuses_a_planted_path(
    tmp_path: Path, what: str, reliability: Recorder
) -> None:
    path, victim = plant(tmp_path, what)
    before = snapshot(path, victim)
    with pytest.raises(Exception) as raised:
        create_private_file(path)
    reliability(
        f"backup path is a pre-existing {what} (backup.create_private_file)",
        f"raised {type(raised.value).__name__}: {raised.value}; nothing touched:"
        f" {snapshot(path, victim) == before}",
    )
    assert snapshot(path, victim) == before


def test_reports_and_backups_are_private(tmp_path: Path, reliability: Recorder) -> None:
    """Under umask 000, every file the tool writes is 0600 and the report dir 0700."""
    demo = tmp_path / "demo"
    assert run_cli("demo", demo).code == 0
    reports = tmp_path / "reports"
    common = ["--db", demo / "atocore.db", "--registry", demo / "registry.json"]
    common += ["--report-dir", reports, "--column", "conflicts.project"]
    old = os.umask(0)
    try:
        assert run_cli("inspect", *common).code == 0
        assert run_cli("resolve", *common, "--keep", "canonical", "--out", reports / "res.json")
        assert run_cli("plan", *common, "--resolutions", reports / "res.json").code == 0
        applied = run_cli("apply", *common, "--resolutions", reports / "res.json", "--yes")
        assert applied.code == 0, applied.stderr
        backup = next(reports.glob("backup-*.db"))
        assert run_cli("verify", *common, "--backup", backup).code == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in reports.iterdir()}
    kinds = sorted({n.split("-")[0] for n in modes})
    reliability(
        "umask 000 while inspect, resolve, plan, apply and verify write their files",
        f"report dir {stat.S_IMODE(reports.stat().st_mode):o}; modes of {len(modes)} files"
        f" ({', '.join(kinds)}): {sorted({f'{m:o}' for m in modes.values()})}",
    )
    assert stat.S_IMODE(reports.stat().st_mode) == 0o700
    assert {"apply", "backup", "inspect", "plan", "res.json", "verify"} <= set(kinds)
    assert all(m == 0o600 for m in modes.values()), modes


# --------------------------------------------------------------------------
# docs/reliability.md cannot go stale silently
# --------------------------------------------------------------------------


def test_reliability_doc_lists_every_fault_and_hostile_test(reliability: Recorder) -> None:
    names = []
    tool = (ROOT / "tools" / "gen_reliability.py").read_text("utf-8")
    modules = re.findall(r'"tests/(test_[a-z_]+\.py)"', tool)
    assert "test_faults.py" in modules and "test_revert_kill.py" in modules
    for module in modules:
        tree = ast.parse((ROOT / "tests" / module).read_text("utf-8"))
        names += [
            n.name
            for n in tree.body
            if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")
        ]
    if os.environ.get("RELIABILITY_OUT"):  # the document is being regenerated right now
        reliability(
            f"docs/reliability.md against {', '.join(modules)}",
            f"regenerated with all {len(names)} tests; this test fails when one is missing",
        )
        return
    doc = (ROOT / "docs" / "reliability.md").read_text("utf-8")
    missing = [n for n in names if f"`{n}" not in doc]
    assert not missing, f"run `python tools/gen_reliability.py`; missing: {missing}"
