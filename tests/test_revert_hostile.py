"""revert given hostile or wrong input (SPEC §7): reports of other kinds,
reports that changed nothing, reports and archives edited by hand, truncated
or missing archives, a report of another database, no terminal, a held
write lock.

Every case must end in one line on stderr starting with ``Error:`` (no
traceback), the documented exit code (2 bad input, 3 refused) and a database
that is byte for byte what it was, with no backup taken.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    DEFAULT_REGISTRY,
    Env,
    Result,
    build_db,
    file_digest,
    legacy_tables,
    run_cli,
    write_registry,
)

COLLISION = [
    ("x-c", "pc05", "cfg", "collide", "one", "active", "2025-01-01"),
    ("x-s", "ps05", "cfg", "collide", "two", "active", "2025-02-01"),
]


def tables() -> dict[str, Any]:
    """conftest.legacy_tables plus one collision, so that resolve has work
    and an apply without --resolutions is refused."""
    t = legacy_tables()
    t["state"] = [*t["state"], *COLLISION]
    return t


@dataclass
class Case:
    env: Env
    report: Path  # the apply report
    resolutions: Path

    def revert(self, report: Path | str, *extra: str | Path) -> Result:
        return self.env.run("revert", "--report", report, "--yes", *extra)

    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.report.read_text("utf-8"))
        return doc

    def edited(self, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
        """A copy of the apply report beside it (its companion name still
        resolves), edited by ``edit``."""
        doc = self.doc()
        edit(doc)
        path = self.report.with_name(name)
        path.write_text(json.dumps(doc), "utf-8")
        return path

    @property
    def companion(self) -> Path:
        return self.env.reports / str(self.doc()["companion"])


@pytest.fixture
def case(make_env: Any) -> Case:
    env = make_env(**tables())
    resolutions = env.root / "res.json"
    resolved = env.run("resolve", "--keep", "canonical", "--out", resolutions)
    assert resolved.code == 0, resolved.stderr
    applied = env.run("apply", "--yes", "--resolutions", resolutions)
    assert applied.code == 0, applied.stderr
    [report] = sorted(env.reports.glob("apply-*.json"))
    return Case(env, report, resolutions)


def refused_cleanly(case: Case, result: Result, code: int, *needles: str) -> str:
    """One ``Error:`` line, the exit code, the database and backups untouched."""
    lines = result.stderr.strip().splitlines()
    assert result.code == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def guarded(case: Case, run: Callable[[], Result], code: int, *needles: str) -> str:
    sha = file_digest(case.env.db)
    backups = sorted(case.env.reports.glob("backup-*.db"))
    line = refused_cleanly(case, run(), code, *needles)
    assert file_digest(case.env.db) == sha
    assert sorted(case.env.reports.glob("backup-*.db")) == backups
    return line


# -- not an apply report ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["plan", "inspect", "verify", "resolve", "revert"])
def test_a_report_of_another_kind_is_bad_input(case: Case, kind: str) -> None:
    if kind == "resolve":
        report = case.resolutions
    else:
        if kind == "revert":  # a real revert report: revert, then apply again
            assert case.revert(case.report).code == 0
            assert case.env.run("apply", "--yes", "--resolutions", case.resolutions).code == 0
        else:
            made = case.env.run(kind)
            assert made.code in (0, 1), made.stderr
        [report] = sorted(case.env.reports.glob(f"{kind}-*.json"))[:1]
    guarded(case, lambda: case.revert(report), 2, f"{kind!r} report")


def test_a_missing_report_is_bad_input(case: Case) -> None:
    missing = case.env.reports / "apply-nothing-here.json"
    guarded(case, lambda: case.revert(missing), 2, "does not exist")


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"\x00\xff\xfe binary", b"[1, 2, 3]", b'{"kind": "apply"}', b"null"],
    ids=["empty", "broken", "binary", "array", "no-version", "null"],
)
def test_a_report_that_is_not_a_json_report_is_bad_input(case: Case, content: bytes) -> None:
    path = case.env.root / "not-a-report.json"
    path.write_bytes(content)
    guarded(case, lambda: case.revert(path), 2)


def test_a_directory_as_report_is_bad_input(case: Case) -> None:
    guarded(case, lambda: case.revert(case.env.reports), 2)


# -- an apply that changed nothing -----------------------------------------------------


def test_a_refused_apply_report_is_bad_input(make_env: Any) -> None:
    env = make_env(**tables())
    refused = env.run("apply", "--yes")  # the collision is unresolved
    assert refused.code == 3, refused.stderr
    [report] = sorted(env.reports.glob("refused-apply-*.json"))
    c = Case(env, report, env.root / "none.json")
    guarded(c, lambda: c.revert(report), 2, "changed nothing")


def test_an_empty_apply_report_is_bad_input(case: Case) -> None:
    again = case.env.run("apply", "--yes", "--allow-empty")
    assert again.code == 0, again.stderr
    empty = [
        p
        for p in sorted(case.env.reports.glob("apply-*.json"))
        if json.loads(p.read_text("utf-8"))["status"] == "empty"
    ]
    assert len(empty) == 1
    guarded(case, lambda: case.revert(empty[0]), 2, "changed nothing")


@pytest.mark.parametrize("status", ["rolled-back", "refused", "interrupted", None, 7])
def test_an_apply_report_of_a_run_that_changed_nothing_is_bad_input(
    case: Case, status: Any
) -> None:
    path = case.edited("apply-edited.json", lambda d: d.update(status=status))
    guarded(case, lambda: case.revert(path), 2, "changed nothing")


# -- edited by hand -------------------------------------------------------------------


def _counts(d: dict[str, Any], key: str, value: Any) -> None:
    d["counts"][key] = value


EDITS: dict[str, Callable[[dict[str, Any]], None]] = {
    "a count raised": lambda d: _counts(d, "memories_rekeyed", d["counts"]["memories_rekeyed"] + 1),
    "a count lowered": lambda d: _counts(d, "state_moved", d["counts"]["state_moved"] - 1),
    "a count removed": lambda d: d["counts"].pop("shadow_rows_deleted"),
    "a count made text": lambda d: _counts(d, "state_archived_duplicate", "2"),
    "counts made a list": lambda d: d.update(counts=[1, 2]),
    "no groups": lambda d: d.pop("groups"),
    "no companion named": lambda d: d.update(companion=None),
    "another companion named": lambda d: d.update(companion="apply-other.rows.jsonl.gz"),
    "companion sha256 changed": lambda d: d.update(companion_sha256="0" * 64),
    "no database named": lambda d: d.pop("database"),
    "a newer report version": lambda d: d.update(report_version=99),
}  # fmt: skip


@pytest.mark.parametrize(
    "edit",
    list(EDITS),
)
def test_an_apply_report_edited_by_hand_is_bad_input(case: Case, edit: str) -> None:
    path = case.edited("apply-edited.json", EDITS[edit])
    guarded(case, lambda: case.revert(path), 2)


def test_a_group_canonical_id_edited_by_hand_is_bad_input(case: Case) -> None:
    def forge(d: dict[str, Any]) -> None:
        d["groups"][0]["canonical_id"] = "p09-forged"

    path = case.edited("apply-edited.json", forge)
    guarded(case, lambda: case.revert(path), 2)


def rewrite(companion: Path, edit: Callable[[list[dict[str, Any]]], None]) -> None:
    with gzip.open(companion, "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    edit(records)
    with gzip.open(companion, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _first(records: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(r for r in records if r["record"] == kind)


COMPANION_EDITS: dict[str, Callable[[list[dict[str, Any]]], None]] = {
    "a from value": lambda rs: _first(rs, "rekey")["from"].__setitem__(0, "p99"),
    "a rekeyed id": lambda rs: _first(rs, "rekey")["ids"].__setitem__(0, "m6"),
    "a state row id": lambda rs: _first(rs, "state")["row"].update(id="s1"),
    "a shadow's name": lambda rs: _first(rs, "project").update(name="scratch"),
    "a record dropped": lambda rs: rs.pop(),
    "a record duplicated": lambda rs: rs.append(rs[-1]),
}


@pytest.mark.parametrize("edit", list(COMPANION_EDITS))
def test_an_archive_edited_by_hand_does_not_match_its_report(case: Case, edit: str) -> None:
    rewrite(case.companion, COMPANION_EDITS[edit])
    guarded(case, lambda: case.revert(case.report), 2, "does not match")


@pytest.mark.parametrize("with_sha", [True, False], ids=["sha256", "no-sha256"])
def test_a_truncated_archive_is_bad_input(case: Case, with_sha: bool) -> None:
    """Cut in half: the sha256 names it; without the sha256 (an older report)
    the gzip stream itself is short."""
    data = case.companion.read_bytes()
    case.companion.write_bytes(data[: len(data) // 2])
    report = case.report
    if not with_sha:
        report = case.edited("apply-nosha.json", lambda d: d.pop("companion_sha256"))
    guarded(case, lambda: case.revert(report), 2)


def test_a_missing_archive_is_bad_input(case: Case) -> None:
    case.companion.unlink()
    guarded(case, lambda: case.revert(case.report), 2, "missing")


# -- another database ---------------------------------------------------------------


def test_an_apply_report_of_another_database_is_bad_input(case: Case, tmp_path: Path) -> None:
    """The report dir copied next to a second database, applied the same way."""
    other = tmp_path / "other"
    other.mkdir()
    db = build_db(other / "atocore.db", **tables())
    env = Env(other, db, case.env.registry, other / "reports")
    assert env.run("apply", "--yes", "--resolutions", case.resolutions).code == 0
    shutil.copytree(case.env.reports, other / "copied")
    report = other / "copied" / case.report.name
    twin = Case(env, report, case.resolutions)
    guarded(twin, lambda: twin.revert(report), 2, "another database")


def test_a_relative_database_path_does_not_admit_another_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both applies ran as `--db atocore.db` from their own directory; the
    operator, in the second directory, passes the first one's report."""
    first, second = tmp_path / "first", tmp_path / "second"
    registry = write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY)
    other = {  # no name or id in common with legacy_tables' shadows
        "projects": [("q05", "p05-interferometer")],
        "memories": [("n1", "fact", "x", "p05-interferometer", "active", "2025-01-01")],
    }
    for where, data in ((first, legacy_tables()), (second, other)):
        where.mkdir()
        monkeypatch.chdir(where)
        build_db(where / "atocore.db", **data)
        common = ["--db", "atocore.db", "--registry", registry, "--report-dir", "reports"]
        applied = run_cli("apply", *common, "--yes", "--allow-empty")
        assert applied.code == 0, applied.stderr
    [report] = sorted((first / "reports").glob("apply-*.json"))
    # in the second directory, with the first directory's report
    sha = file_digest(second / "atocore.db")
    for extra in (("--skip-changed",), ()):
        result = run_cli(
            "revert", "--db", "atocore.db", "--registry", registry, "--report-dir", "reports",
            "--report", report, "--yes", *extra,
        )  # fmt: skip
        assert file_digest(second / "atocore.db") == sha, "the first database's rows went in"
        assert result.code == 2, result.stderr
        assert "another database" in result.stderr


# -- the rails ------------------------------------------------------------------------


def test_no_terminal_and_no_yes_is_refused(case: Case) -> None:
    guarded(
        case,
        lambda: case.env.run("revert", "--report", case.report),
        3,
        "no terminal",
    )


@pytest.mark.parametrize("mode", ["DELETE", "WAL"])
def test_a_write_lock_held_past_busy_timeout_is_refused(case: Case, mode: str) -> None:
    conn = sqlite3.connect(case.env.db, isolation_level=None)
    try:
        assert conn.execute(f"PRAGMA journal_mode = {mode}").fetchone()[0] == mode.lower()
        sha = file_digest(case.env.db)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE memories SET content = content WHERE id = 'm5'")
        line = guarded(case, lambda: case.revert(case.report, "--busy-timeout", "0.2"), 3, "busy")
        assert "0.2" in line
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    assert file_digest(case.env.db) == sha
    # once the lock is gone the same command reverts
    assert case.revert(case.report).code == 0


def test_an_id_holding_nul_is_reverted_on_its_own_row(tmp_path: Path) -> None:
    """Ids are compared exactly, NUL included: SQLite's json_extract cuts a
    string at U+0000, so such an id is never loaded through JSON (it would
    come back as 'm1', another row, which revert would then rewrite)."""
    db = build_db(
        tmp_path / "atocore.db",
        projects=[("1", "p05-interferometer")],
        memories=[
            ("m1\x00x", "fact", "hit", "p05", "active", "2025-01-01"),
            ("m1", "fact", "bystander", "p05-interferometer", "active", "2025-01-01"),
        ],
    )
    registry = write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY)
    reports = tmp_path / "reports"
    common = ["--db", db, "--registry", registry, "--report-dir", reports, "--no-discover"]
    assert run_cli("apply", *common, "--yes").code == 0
    rows = "SELECT id, project FROM memories ORDER BY id"
    migrated = [("m1", "p05-interferometer"), ("m1\x00x", "p05-interferometer")]
    with sqlite3.connect(db) as conn:
        assert conn.execute(rows).fetchall() == migrated
    [report] = [p for p in reports.glob("apply-*.json")]
    done = run_cli("revert", *common, "--report", report, "--yes")
    assert done.code == 0, done.stderr
    with sqlite3.connect(db) as conn:
        # before the fix: [('m1', 'p05'), ('m1\x00x', 'p05-interferometer')]
        assert conn.execute(rows).fetchall() == [("m1", "p05-interferometer"), ("m1\x00x", "p05")]


def test_archived_text_holding_nul_is_restored_exactly(tmp_path: Path) -> None:
    """An archived state row's value with U+0000 comes back byte for byte
    (json_extract would cut it at the NUL: '15k\\x00note' came back '15k')."""
    db = build_db(tmp_path / "atocore.db", **legacy_tables())
    value = "o\x00ld \x00 note"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE project_state SET value = ? WHERE id = 's4'", (value,))
    registry = write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY)
    reports = tmp_path / "reports"
    common = ["--db", db, "--registry", registry, "--report-dir", reports, "--no-discover"]
    assert run_cli("apply", *common, "--yes").code == 0
    gone = "SELECT COUNT(*) FROM project_state WHERE id = 's4'"
    with sqlite3.connect(db) as conn:
        assert conn.execute(gone).fetchone() == (0,)  # archived as history
    [report] = list(reports.glob("apply-*.json"))
    done = run_cli("revert", *common, "--report", report, "--yes")
    assert done.code == 0, done.stderr
    with sqlite3.connect(db) as conn:
        got = conn.execute(
            "SELECT value, typeof(value), length(CAST(value AS BLOB)) FROM project_state"
            " WHERE id = 's4'"
        ).fetchone()
    assert got == (value, "text", len(value.encode()))
    [reverted] = list(reports.glob("revert-*.json"))
    checked = run_cli("verify", *common, "--report", reverted, "--format", "json")
    doc = json.loads(checked.stdout)
    [row_check] = [c for c in doc["checks"] if c["check"].startswith("rows the revert reverted")]
    assert row_check["ok"] is True, row_check
