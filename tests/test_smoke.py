"""The demo runbook end to end through the CLI, as `make demo` runs it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import content_digest, run_cli


def test_demo_runbook_end_to_end(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    assert run_cli("demo", demo).code == 0
    db, reg, rep = demo / "atocore.db", demo / "registry.json", tmp_path / "reports"
    # the demo's conflicts table is project-keyed too: configured, as `make demo` does
    common = ["--db", db, "--registry", reg, "--report-dir", rep, "--column", "conflicts.project"]
    before = content_digest(db)
    assert run_cli("inspect", *common).code == 0
    planned = run_cli("plan", *common, "--detailed-exitcode")
    assert planned.code == 3, planned.stderr  # the demo has a collision
    assert content_digest(db) == before
    res = run_cli("resolve", *common, "--keep", "canonical", "--out", tmp_path / "res.json")
    assert res.code == 0, res.stderr
    applied = run_cli("apply", *common, "--resolutions", tmp_path / "res.json", "--yes")
    assert applied.code == 0, applied.stderr
    conn = sqlite3.connect(db)
    value = conn.execute(
        "SELECT ps.value FROM project_state ps JOIN projects p ON p.id = ps.project_id"
        " WHERE p.name = 'p05-interferometer' AND ps.key = 'mirror-coating'"
    ).fetchone()
    conn.close()
    assert value == ("protected silver",)
    backup = next(rep.glob("backup-*.db"))
    verified = run_cli("verify", *common, "--backup", backup)
    assert verified.code == 0, verified.stdout + verified.stderr
    again = run_cli("apply", *common, "--yes")
    assert again.code == 3 and "nothing to migrate" in again.stderr
