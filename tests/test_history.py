"""history: real runs of the CLI on demo databases, then planted damage and debris.

One report dir holds: a refused apply (unresolved collision), an applied apply
with its verify, an apply edited back to `committing` whose archive was cut in
half, an apply whose backup was deleted, and planted debris (an old and a
young `.tmp-*`, a companion and a backup no report names, a file that is not
JSON, a JSON list, a report of report_version 99).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from conftest import Result, run_cli

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "schemas" / "history.schema.json").read_text("utf-8"))
HOUR_AGO = time.time() - 2 * 3600
ORPHAN_COMPANION = "apply-20200101T000000.000000Z.rows.jsonl.gz"
ORPHAN_BACKUP = "backup-20200101T000000.000000Z.db"


def common(demo: Path, reports: Path) -> list[str | Path]:
    return [
        "--db",
        demo / "atocore.db",
        "--registry",
        demo / "registry.json",
        "--report-dir",
        reports,
        "--column",
        "conflicts.project",
    ]


def ok(result: Result) -> Result:
    assert result.code == 0, result.stderr
    return result


def apply_demo(root: Path, name: str, reports: Path) -> dict[str, Any]:
    """A fresh demo database, resolved and applied; the apply report's path and document."""
    demo = root / name
    ok(run_cli("demo", demo))
    res = root / f"res-{name}.json"
    ok(run_cli("resolve", *common(demo, reports), "--keep", "canonical", "--out", res))
    out = ok(
        run_cli("apply", *common(demo, reports), "--resolutions", res, "--yes", "--format", "json")
    )
    doc: dict[str, Any] = out.json()
    doc["_path"] = Path(doc["report_path"])
    return doc


def history(reports: Path, *args: str) -> Result:
    return run_cli("history", "--report-dir", reports, *args)


def history_json(reports: Path, *args: str) -> dict[str, Any]:
    result = history(reports, "--format", "json", *args)
    assert result.code == 0, result.stderr
    doc: dict[str, Any] = result.json()
    errors = list(Draft202012Validator(SCHEMA).iter_errors(doc))
    assert not errors, [f"/{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in errors[:5]]
    return doc


def listing(directory: Path) -> dict[str, tuple[int, int, str]]:
    """name -> (size, mtime_ns, sha256) of every file in the directory."""
    return {
        p.name: (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(directory.iterdir())
    }


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("history")
    reports = root / "reports"

    # A: refused first (unresolved collision), then applied and verified
    ok(run_cli("demo", root / "a"))
    refused = run_cli("apply", *common(root / "a", reports), "--yes")
    assert refused.code == 3, refused.stderr
    a = apply_demo(root, "a2", reports)
    verify = ok(
        run_cli("verify", *common(root / "a2", reports), "--report", a["_path"], "--format", "json")
    )

    # B: applied, then its report says `committing` and its archive is cut in half
    b = apply_demo(root, "b", reports)
    doc = json.loads(b["_path"].read_text("utf-8"))
    doc["status"] = "committing"
    b["_path"].write_text(json.dumps(doc, indent=2), "utf-8")
    archive = reports / b["companion"]
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])

    # C: applied, then its backup deleted
    c = apply_demo(root, "c", reports)
    (reports / c["backup"]["path"]).unlink()

    # debris and strangers
    old_tmp = reports / ".tmp-abc.json"
    old_tmp.write_text('{"report_version": 1, "kind": "apply", "tru', "utf-8")
    (reports / ".tmp-young.db").write_bytes(b"SQLite format 3\x00")
    shutil.copyfile(reports / a["companion"], reports / ORPHAN_COMPANION)
    shutil.copyfile(reports / a["backup"]["path"], reports / ORPHAN_BACKUP)
    (reports / "notes.txt").write_text("not a report\n", "utf-8")
    (reports / "list.json").write_text("[1, 2]\n", "utf-8")
    future = {"report_version": 99, "kind": "apply", "created_at": "2001-01-01T00:00:00.000000Z"}
    (reports / "future.json").write_text(json.dumps(future), "utf-8")
    for name in (".tmp-abc.json", ORPHAN_COMPANION, ORPHAN_BACKUP):
        os.utime(reports / name, (HOUR_AGO, HOUR_AGO))

    refused_files = sorted(p.name for p in reports.glob("refused-apply-*.json"))
    assert len(refused_files) == 1
    return {
        "root": root,
        "reports": reports,
        "a": a,
        "b": b,
        "c": c,
        "verify": Path(verify.json()["report_path"]).name,
        "refused": refused_files[0],
    }


@pytest.fixture
def scenario(pristine: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """A private copy of the report dir (mtimes kept) for tests that change it."""
    copy = tmp_path / "reports"
    shutil.copytree(pristine["reports"], copy)
    return {**pristine, "reports": copy}


@pytest.fixture(autouse=True)
def no_atocore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """history needs no database or registry: none may come from the environment."""
    for key in list(os.environ):
        if key.startswith("ATOCORE_"):
            monkeypatch.delenv(key)


def name(doc: dict[str, Any]) -> str:
    return str(doc["_path"].name)


# -- listing ---------------------------------------------------------------------------


def test_lists_every_run_newest_first_with_the_verify_to_apply_link(
    pristine: dict[str, Any],
) -> None:
    doc = history_json(pristine["reports"])
    runs = {r["file"]: r for r in doc["runs"]}
    a, b, c = name(pristine["a"]), name(pristine["b"]), name(pristine["c"])
    assert {a, b, c, pristine["verify"], pristine["refused"], "future.json"} <= set(runs)
    assert doc["counts"]["runs"] == len(doc["runs"]) == 6

    # newest first, by created_at; the report_version 99 one (2001) last
    times = [r["created_at"] for r in doc["runs"]]
    assert times == sorted(times, reverse=True)
    order = [r["file"] for r in doc["runs"]]
    assert order == [c, b, pristine["verify"], a, pristine["refused"], "future.json"]

    applied = runs[a]
    assert (applied["kind"], applied["status"]) == ("apply", "applied")
    assert applied["fingerprint"] == pristine["a"]["fingerprint"]
    assert applied["registry"]["sha256"] == pristine["a"]["registry"]["sha256"]
    assert applied["database"] == pristine["a"]["database"]
    assert applied["counts"]["state_moved"] == pristine["a"]["counts"]["state_moved"]
    assert "moved" in applied["headline"] and "archived" in applied["headline"]
    assert applied["backup"]["condition"] == "ok" and applied["backup"]["quick_check"] == "ok"
    assert applied["companion"]["condition"] == "ok"
    assert applied["referenced_by"] == [pristine["verify"]]

    verify = runs[pristine["verify"]]
    assert (verify["kind"], verify["status"]) == ("verify", "ok")
    [link] = [r for r in verify["refers_to"] if r["field"] == "apply_report"]
    assert link["file"] == a and link["kind"] == "apply"
    assert link["created_at"] == applied["created_at"]

    assert runs[pristine["refused"]]["status"] == "refused"
    future = runs["future.json"]
    assert future["readable"] is False
    assert future["note"] == "unknown report_version 99: listed, not read"
    assert sorted(doc["ignored"]) == ["list.json", "notes.txt"]


def test_flags_what_needs_attention_each_with_what_to_do(pristine: dict[str, Any]) -> None:
    doc = history_json(pristine["reports"])
    flags = {(f["issue"], f["file"]): f for f in doc["attention"]}
    a, b, c = name(pristine["a"]), name(pristine["b"]), name(pristine["c"])
    expected = {
        ("committing", b): "error",
        ("companion-unreadable", b): "error",
        ("backup-missing", c): "error",
        ("refused", pristine["refused"]): "notice",
        ("temp-file", ".tmp-abc.json"): "warning",
        ("temp-file", ".tmp-young.db"): "notice",
        ("orphan-companion", ORPHAN_COMPANION): "warning",
        ("orphan-backup", ORPHAN_BACKUP): "warning",
    }
    assert {k: f["severity"] for k, f in flags.items()} == expected
    assert all(f["action"] for f in doc["attention"])
    assert f"verify --report {pristine['reports'] / b}" in flags[("committing", b)]["action"]
    assert "gzip" in flags[("companion-unreadable", b)]["message"]
    assert "by hand" in flags[("orphan-backup", ORPHAN_BACKUP)]["action"]
    assert not any(f["file"] == a for f in doc["attention"]), "a clean apply needs nothing"

    files = {f["file"]: f for f in doc["files"]}
    assert files[ORPHAN_BACKUP]["role"] == "orphan-backup"
    assert files[ORPHAN_BACKUP]["condition"] == "ok"  # a complete copy: keep it
    assert files[ORPHAN_COMPANION]["role"] == "orphan-companion"
    assert files[pristine["a"]["backup"]["path"]]["named_by"] == [a]
    assert doc["counts"]["errors"] == 3 and doc["counts"]["attention"] == len(expected)


def test_text_and_markdown_show_runs_and_what_to_do(pristine: dict[str, Any]) -> None:
    b = name(pristine["b"])
    for fmt in ("text", "markdown"):
        result = history(pristine["reports"], "--format", fmt)
        assert result.code == 0, result.stderr
        assert result.stderr == ""
        out = result.stdout
        assert b in out and "committing" in out and f"verify --report {pristine['reports']}" in out
        assert f"-> {name(pristine['a'])}" in out
        assert "unknown report_version 99: listed, not read" in out
        assert "history writes no report and changed nothing" in out


def test_history_is_read_only_and_needs_no_database(
    pristine: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = listing(pristine["reports"])
    monkeypatch.setenv("ATOCORE_IDENTITY_REPORT_DIR", str(pristine["reports"]))
    for fmt in ("json", "text"):
        result = run_cli("history", "--format", fmt)  # no --db, --registry or --report-dir
        assert result.code == 0, result.stderr
    assert listing(pristine["reports"]) == before


def test_a_missing_report_dir_is_bad_input(tmp_path: Path) -> None:
    for missing in (tmp_path / "nope", tmp_path / "file.txt"):
        if missing.suffix:
            missing.write_text("x", "utf-8")
        result = history(missing)
        assert result.code == 2
        assert result.stdout == ""
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
        assert str(missing) in result.stderr


def test_an_empty_report_dir_lists_nothing(tmp_path: Path) -> None:
    doc = history_json(tmp_path)
    assert doc["runs"] == [] and doc["attention"] == [] and doc["counts"]["runs"] == 0


def test_yes_goes_only_with_prune(pristine: dict[str, Any]) -> None:
    result = history(pristine["reports"], "--yes")
    assert result.code == 2 and "--prune" in result.stderr


def test_other_kinds_are_read_generically(scenario: dict[str, Any]) -> None:
    """A revert report (or any kind) naming an apply_report is linked to it; an
    interrupted apply and a failing verify are flagged."""
    reports, a = scenario["reports"], name(scenario["a"])
    refused = json.loads((reports / scenario["refused"]).read_text("utf-8"))
    interrupted = {**refused, "status": "interrupted", "error": "interrupted by a signal"}
    interrupted_name = "interrupted-apply-20300101T000000.000000Z.json"
    (reports / interrupted_name).write_text(json.dumps(interrupted), "utf-8")
    verify = json.loads((reports / scenario["verify"]).read_text("utf-8"))
    revert = {
        **verify,
        "kind": "revert",
        "status": "committing",
        "created_at": "2030-01-02T00:00:00.000000Z",
        "apply_report": str(scenario["a"]["_path"]),
        "counts": {"rows_reverted": 7},
    }
    (reports / "revert-20300102T000000.000000Z.json").write_text(json.dumps(revert), "utf-8")
    failed = {**verify, "ok": False, "created_at": "2030-01-03T00:00:00.000000Z"}
    failed["counts"] = {"checks": 12, "failed": 1}
    (reports / "verify-20300103T000000.000000Z.json").write_text(json.dumps(failed), "utf-8")

    doc = history_json(reports)
    runs = {r["file"]: r for r in doc["runs"]}
    reverted = runs["revert-20300102T000000.000000Z.json"]
    assert (reverted["kind"], reverted["status"]) == ("revert", "committing")
    assert reverted["headline"] == "rows reverted 7"
    assert [(r["field"], r["file"]) for r in reverted["refers_to"]] == [("apply_report", a)]
    assert "revert-20300102T000000.000000Z.json" in runs[a]["referenced_by"]
    issues = {(f["issue"], f["file"]): f["severity"] for f in doc["attention"]}
    assert issues[("interrupted", interrupted_name)] == "notice"
    [committing] = [f for f in doc["attention"] if f["file"] == reverted["file"]]
    assert committing["issue"] == "committing"
    assert f"revert --report {scenario['a']['_path']} --dry-run" in committing["action"]
    assert issues[("verify-failed", "verify-20300103T000000.000000Z.json")] == "error"
    assert ("verify-failed", scenario["verify"]) not in issues


# -- damage it finds ------------------------------------------------------------------------


def test_a_truncated_backup_is_unreadable(scenario: dict[str, Any]) -> None:
    backup = scenario["reports"] / scenario["a"]["backup"]["path"]
    data = backup.read_bytes()
    backup.write_bytes(data[: len(data) // 2])
    doc = history_json(scenario["reports"])
    [run] = [r for r in doc["runs"] if r["file"] == name(scenario["a"])]
    assert run["backup"]["condition"] == "unreadable"
    assert "truncated" in run["backup"]["detail"]
    issues = {(f["issue"], f["file"]) for f in doc["attention"]}
    assert ("backup-unreadable", name(scenario["a"])) in issues


def test_a_side_file_beside_a_backup_is_flagged_and_never_pruned(
    scenario: dict[str, Any],
) -> None:
    backup = scenario["a"]["backup"]["path"]
    side = scenario["reports"] / f"{backup}-wal"
    side.write_bytes(b"")
    os.utime(side, (HOUR_AGO, HOUR_AGO))
    doc = history_json(scenario["reports"], "--prune", "--yes", "--older-than", "0")
    assert ("backup-side-file", side.name) in {(f["issue"], f["file"]) for f in doc["attention"]}
    [run] = [r for r in doc["runs"] if r["file"] == name(scenario["a"])]
    assert run["backup"]["condition"] == "unchecked"  # never opened while it has a side file
    assert side.exists() and (scenario["reports"] / backup).exists()


def test_backups_of_a_wal_database_are_checked_without_side_files(tmp_path: Path) -> None:
    demo, reports = tmp_path / "demo", tmp_path / "reports"
    ok(run_cli("demo", demo))
    conn = sqlite3.connect(demo / "atocore.db")
    assert conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    conn.close()
    res = tmp_path / "res.json"
    ok(run_cli("resolve", *common(demo, reports), "--keep", "canonical", "--out", res))
    ok(run_cli("apply", *common(demo, reports), "--resolutions", res, "--yes"))
    [backup] = reports.glob("backup-*.db")
    assert backup.read_bytes()[18:20] == b"\x02\x02"  # the copy is flagged WAL too
    before = listing(reports)
    doc = history_json(reports)
    assert listing(reports) == before, "a read-only look must not leave -wal or -shm files"
    [run] = [r for r in doc["runs"] if r["kind"] == "apply"]
    assert run["backup"]["quick_check"] == "ok"
    assert doc["attention"] == []


def test_deep_and_the_quick_check_budget(
    scenario: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from atocore_identity import history as core

    monkeypatch.setattr(core, "QUICK_CHECK_BUDGET", 0)
    doc = history_json(scenario["reports"])
    [run] = [r for r in doc["runs"] if r["file"] == name(scenario["a"])]
    assert run["backup"]["quick_check"] == "skipped" and run["backup"]["condition"] == "ok"
    assert "--deep" in run["backup"]["detail"]
    deep = history_json(scenario["reports"], "--deep")
    [run] = [r for r in deep["runs"] if r["file"] == name(scenario["a"])]
    assert run["backup"]["quick_check"] == "ok"
    assert deep["quick_check_budget_bytes"] is None


# -- prune -----------------------------------------------------------------------------------


def test_prune_is_a_dry_run_by_default(scenario: dict[str, Any]) -> None:
    before = listing(scenario["reports"])
    doc = history_json(scenario["reports"], "--prune")
    assert listing(scenario["reports"]) == before
    prune = doc["prune"]
    assert prune["dry_run"] is True and prune["removed"] == 0
    actions = {i["file"]: i["action"] for i in prune["items"]}
    assert actions == {
        ".tmp-abc.json": "remove",
        ORPHAN_COMPANION: "remove",
        ".tmp-young.db": "keep",
        ORPHAN_BACKUP: "keep",
    }
    text = history(scenario["reports"], "--prune")
    assert "dry run, nothing removed" in text.stdout
    assert listing(scenario["reports"]) == before


def test_prune_yes_removes_exactly_the_old_temp_file_and_the_orphan_companion(
    scenario: dict[str, Any],
) -> None:
    before = listing(scenario["reports"])
    result = history(scenario["reports"], "--prune", "--yes", "--format", "json")
    assert result.code == 0, result.stderr
    after = listing(scenario["reports"])
    assert set(before) - set(after) == {".tmp-abc.json", ORPHAN_COMPANION}
    assert {k: v for k, v in before.items() if k in after} == after, "nothing else changed"
    assert result.json()["prune"]["removed"] == 2
    # the backup an applied report names, and the orphan backup, are still there
    assert scenario["a"]["backup"]["path"] in after and ORPHAN_BACKUP in after
    again = history_json(scenario["reports"], "--prune", "--yes")
    assert again["prune"]["removed"] == 0


def test_prune_never_removes_a_backup_even_when_no_report_is_left(
    scenario: dict[str, Any],
) -> None:
    reports = scenario["reports"]
    backups = sorted(p.name for p in reports.glob("backup-*.db"))
    assert len(backups) == 3  # a2's and b's (named by reports) and the orphan
    for report in reports.glob("*.json"):
        report.unlink()
    doc = history_json(reports, "--prune", "--yes", "--older-than", "0")
    assert sorted(p.name for p in reports.glob("backup-*.db")) == backups
    assert not list(reports.glob("*.rows.jsonl.gz")), "companions no report names go"
    assert not list(reports.glob(".tmp-*"))
    kept = {i["file"] for i in doc["prune"]["items"] if i["action"] == "keep"}
    assert set(backups) <= kept


def test_prune_keeps_a_file_a_report_names_since_the_scan(
    scenario: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from atocore_identity import history as core

    reports = scenario["reports"]
    real = core.scan_names

    def late_report(report_dir: Path) -> dict[str, list[str]]:
        # an apply finishing between the scan and the removal names the companion
        late = {"report_version": 1, "kind": "apply", "companion": ORPHAN_COMPANION}
        (reports / "apply-20300101T000000.000000Z.json").write_text(json.dumps(late), "utf-8")
        return real(report_dir)

    monkeypatch.setattr(core, "scan_names", late_report)
    doc = history_json(reports, "--prune", "--yes")
    assert (reports / ORPHAN_COMPANION).exists()
    assert not (reports / ".tmp-abc.json").exists()
    assert doc["prune"]["removed"] == 1


def test_the_companion_is_read_to_the_end(scenario: dict[str, Any]) -> None:
    path = scenario["reports"] / scenario["a"]["companion"]
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    path.write_bytes(gzip.compress(data)[:-4])  # only the trailer's length is gone
    doc = history_json(scenario["reports"])
    [run] = [r for r in doc["runs"] if r["file"] == name(scenario["a"])]
    assert run["companion"]["condition"] == "unreadable"


# -- docs -------------------------------------------------------------------------------------


def test_reports_doc_documents_every_history_field() -> None:
    text = (ROOT / "docs" / "reports.md").read_text("utf-8")
    section = text[text.index("## history") :]
    props = SCHEMA["properties"]
    nested = [
        props["runs"]["items"]["properties"],
        props["files"]["items"]["properties"],
        props["attention"]["items"]["properties"],
        props["counts"]["properties"],
        props["prune"]["oneOf"][1]["properties"],
    ]
    fields = set(props).union(*nested)
    missing = sorted(f for f in fields if f"`{f}`" not in section)
    assert not missing, f"history fields missing from docs/reports.md: {missing}"
    for issue in props["attention"]["items"]["properties"]["issue"]["enum"]:
        assert f"`{issue}`" in section, issue
