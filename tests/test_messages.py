"""Messages that name the real cause (issues 11.4, 13.1, 13.4, 13.7), on the demo database.

Each case runs the literal commands an operator types and checks the exit
code, the one line on stderr, and that the database did not change.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conftest import file_digest, run_cli

COLUMN = ["--column", "conflicts.project"]


@pytest.fixture
def demo(tmp_path: Path) -> dict[str, Path]:
    assert run_cli("demo", tmp_path / "d").code == 0
    d = tmp_path / "d"
    return {"db": d / "atocore.db", "registry": d / "registry.json", "reports": d / "reports"}


def common(demo: dict[str, Path]) -> list[str | Path]:
    return [
        "--db",
        demo["db"],
        "--registry",
        demo["registry"],
        "--report-dir",
        demo["reports"],
        *COLUMN,
    ]


def runbook_files(demo: dict[str, Path]) -> dict[str, Path]:
    """plan-before-resolve.json, resolutions.json and plan.json, as `make demo` writes them."""
    r = demo["reports"]
    r.mkdir(exist_ok=True)
    out = {
        "before": r / "plan-before-resolve.json",
        "res": r / "resolutions.json",
        "plan": r / "plan.json",
    }
    assert run_cli("plan", *common(demo), "--out", out["before"]).code == 0
    assert run_cli("resolve", *common(demo), "--keep", "canonical", "--out", out["res"]).code == 0
    res = run_cli("plan", *common(demo), "--resolutions", out["res"], "--out", out["plan"])
    assert res.code == 0, res.stderr
    return out


def test_a_plan_made_without_resolutions_is_not_called_stale(demo: dict[str, Path]) -> None:
    f = runbook_files(demo)
    before = file_digest(demo["db"])
    res = run_cli("apply", *common(demo), "--plan", f["before"], "--resolutions", f["res"], "--yes")
    assert res.code == 3
    assert "was made without resolutions" in res.stderr and "stale" not in res.stderr
    assert file_digest(demo["db"]) == before


def test_a_plan_made_with_resolutions_needs_them(demo: dict[str, Path]) -> None:
    f = runbook_files(demo)
    before = file_digest(demo["db"])
    res = run_cli("apply", *common(demo), "--plan", f["plan"], "--yes")
    assert res.code == 3
    assert "was made with resolutions" in res.stderr and "stale" not in res.stderr
    assert file_digest(demo["db"]) == before


def test_a_second_apply_of_the_same_plan_says_nothing_to_migrate(demo: dict[str, Path]) -> None:
    f = runbook_files(demo)
    args = [*common(demo), "--plan", f["plan"], "--resolutions", f["res"], "--yes"]
    assert run_cli("apply", *args).code == 0
    after = file_digest(demo["db"])
    again = run_cli("apply", *args)
    assert again.code == 0, again.stderr
    assert "nothing to migrate" in again.stdout and "end state" in again.stdout
    assert file_digest(demo["db"]) == after


def test_a_refusal_is_named_apart_and_verify_says_it_is_one(demo: dict[str, Path]) -> None:
    refused = run_cli("apply", *common(demo), "--yes")  # an unresolved collision
    assert refused.code == 3
    reports = demo["reports"]
    assert not list(reports.glob("apply-*.json"))
    (report,) = reports.glob("refused-apply-*.json")
    res = run_cli("verify", *common(demo), "--report", report)
    assert res.code == 2
    assert "is a refusal, not an apply" in res.stderr


def test_verify_says_which_checks_it_skipped(demo: dict[str, Path]) -> None:
    res = run_cli("verify", *common(demo), "--format", "json")
    doc = json.loads(res.stdout)
    assert any("--backup" in s for s in doc["skipped"])
    assert any("--report" in s for s in doc["skipped"])
    text = run_cli("verify", *common(demo))
    assert "not checked: conservation against the backup" in text.stdout


@pytest.mark.parametrize(
    "plan",
    [
        {"report_version": 1, "kind": "plan"},
        {"report_version": 1, "kind": "plan", "fingerprint": None},
        {"report_version": 1, "kind": "plan", "fingerprint": "abc"},
    ],
)
def test_a_plan_without_a_valid_fingerprint_is_bad_input(
    demo: dict[str, Path], tmp_path: Path, plan: dict[str, object]
) -> None:
    f = runbook_files(demo)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(plan), "utf-8")
    before = file_digest(demo["db"])
    res = run_cli("apply", *common(demo), "--plan", path, "--resolutions", f["res"], "--yes")
    assert res.code == 2, res.stderr
    assert "no valid fingerprint" in res.stderr
    assert file_digest(demo["db"]) == before


@pytest.mark.parametrize("value", ["inf", "nan", "-1", "2147484", "1e9"])
def test_busy_timeout_out_of_range_is_bad_input(demo: dict[str, Path], value: str) -> None:
    res = run_cli("plan", *common(demo), "--busy-timeout", value)
    assert res.code == 2, res.stderr
    assert "0 to 2147483" in res.stderr or "not a number" in res.stderr


@pytest.mark.parametrize("value", ["0", "2147483"])
def test_busy_timeout_edges_are_accepted(demo: dict[str, Path], value: str) -> None:
    assert run_cli("inspect", *common(demo), "--busy-timeout", value).code == 0


def test_a_dangling_symlink_report_dir_says_so(demo: dict[str, Path], tmp_path: Path) -> None:
    link = tmp_path / "reports-link"
    link.symlink_to(tmp_path / "nowhere")
    res = run_cli("plan", "--db", demo["db"], "--registry", demo["registry"], "--report-dir", link)
    assert res.code == 3
    assert "dangling symlink" in res.stderr


def test_malformed_resolutions_name_the_problem(demo: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "res.json"
    path.write_text(json.dumps({"report_version": 1, "kind": "resolve", "decisions": 5}))
    res = run_cli("plan", *common(demo), "--resolutions", path)
    assert res.code == 2
    assert "must be a list of decision objects" in res.stderr
    assert "'int' object" not in res.stderr


def test_an_unexpected_exception_is_a_bug_not_bad_input(
    demo: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import atocore_identity.commands.inspect as inspect_cmd

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(inspect_cmd, "survey", broken)
    res = run_cli("inspect", *common(demo))
    assert res.code == 70
    assert res.stderr.count("\n") == 1 and "--debug" in res.stderr and "bug" in res.stderr


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("inspect", "--config"),
        ("plan", "--resolutions"),
        ("apply", "--plan"),
        ("verify", "--report"),
        ("verify", "--backup"),
        ("revert", "--report"),
    ],
)
def test_a_fifo_as_any_input_file_is_bad_input_not_a_hang(
    demo: dict[str, Path], tmp_path: Path, command: str, option: str
) -> None:
    """Opening a FIFO for reading blocks until a writer comes: every input file
    is checked to be a regular file first (issue 13 item 6, beyond --db and
    --registry)."""
    fifo = tmp_path / "input"
    os.mkfifo(fifo)
    extra = ["--yes"] if command in ("apply", "revert") else []
    res = run_cli(command, *common(demo), option, fifo, *extra)
    assert res.code == 2, res.stderr
    assert "is a FIFO (named pipe)" in res.stderr


def test_a_conflict_after_fifty_changed_rows_still_refuses_with_one_line(make_env: Any) -> None:
    """The listing names at most 50 rows: conflicts come first in it, so a
    conflict after many changed rows is still named, and revert refuses
    (exit 3) rather than failing unexpectedly (review finding)."""
    t1, t2 = "2025-01-01 00:00:00", "2025-02-01 00:00:00"
    state = [(f"m{i:02d}", "s", "a", f"k{i}", "v", "active", t1) for i in range(60)]
    state += [
        ("x1", "c", "z", "k", "old", "superseded", t1),
        ("x2", "s", "z", "k", "new", "active", t2),
    ]
    env = make_env(projects=[("c", "p05-interferometer"), ("s", "p05")], state=state)
    assert env.run("apply", "--yes").code == 0
    (report,) = env.reports.glob("apply-*.json")
    conn = sqlite3.connect(env.db)
    conn.execute("DELETE FROM project_state WHERE id LIKE 'm%' OR id = 'x2'")  # changed since
    conn.execute(  # a row now holds the triple the archived x1 would take back
        "INSERT INTO project_state (id, project_id, category, key, value)"
        " VALUES ('n1', 'c', 'z', 'k', 'v')"
    )
    conn.commit()
    conn.close()
    before = file_digest(env.db)
    res = env.run("revert", "--report", report, "--yes", "--skip-changed")
    assert res.code == 3, res.stderr
    assert res.stderr.startswith("Error: revert refused: 1 conflict(s)")
    assert "(project_id, category, key)" in res.stderr
    assert file_digest(env.db) == before
