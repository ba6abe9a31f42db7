"""Model-based property tests of revert: random legacy databases through the real CLI.

1. apply then revert is the identity: every table equals the apply's backup,
   row for row and column for column; a second revert finds nothing to do.
2. with random writes between apply and revert (new rows, edits of columns
   the migration does not own, key changes, deletes, status changes), revert
   --skip-changed does what the reference model in ``tests/revert_model.py``
   says: changed rows untouched, the rest reverted, new rows kept; or it
   refuses on a conflict and changes nothing.

``make soak`` runs these with HYPOTHESIS_PROFILE=soak.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from conftest import content_digest, run_cli
from model import expected, load
from revert_model import expected_revert
from test_model_property import PROFILE, Scenario, build, scenarios

pytestmark = pytest.mark.property


def _applied(root: Path, sc: Scenario) -> tuple[list[str | Path], Path, Path] | None:
    """Build and apply; None when the model says apply refuses."""
    db, reg = build(root, sc)
    if expected(db, sc.registry).refusal is not None:
        return None
    reports = root / "reports"
    common: list[str | Path] = ["--db", db, "--registry", reg, "--report-dir", reports]
    res = run_cli("apply", *common, "--yes")
    assert res.code == 0, res.stdout + res.stderr
    return common, db, next(reports.glob("apply-*.json"))


@settings(settings.get_profile(PROFILE))
@given(sc=scenarios())
def test_apply_then_revert_is_the_identity(sc: Scenario) -> None:
    with tempfile.TemporaryDirectory(prefix="atocore-rv-") as tmp:
        root = Path(tmp)
        applied = _applied(root, sc)
        assume(applied is not None)  # only applied examples count towards the 200
        assert applied is not None
        common, db, report = applied
        backup = next((root / "reports").glob("backup-*.db"))
        res = run_cli("revert", *common, "--report", report, "--yes")
        assert res.code == 0, res.stdout + res.stderr
        assert load(db) == load(backup)
        reverted = content_digest(db)
        again = run_cli("revert", *common, "--report", report, "--yes")
        assert again.code == 0 and "nothing to revert" in again.stdout, again.stdout
        assert content_digest(db) == reverted


WRITES = ["new_memory", "edit_content", "edit_value", "rekey", "delete_memory",
          "delete_state", "new_state", "status"]  # fmt: skip


def _write(conn: sqlite3.Connection, op: str, data: st.DataObject, sc: Scenario, i: int) -> None:
    """One write the service (or a person) could make after the apply."""
    mems = [r[0] for r in conn.execute("SELECT id FROM memories ORDER BY id")]
    states = [r[0] for r in conn.execute("SELECT id FROM project_state ORDER BY id")]
    projects = [r[0] for r in conn.execute("SELECT id FROM projects ORDER BY id")]
    if op == "new_memory":
        project = data.draw(st.sampled_from([p["id"] for p in sc.registry]))
        conn.execute(
            "INSERT INTO memories (id, memory_type, content, project, status)"
            " VALUES (?, 'fact', 'new', ?, 'active')",
            (f"w{i}", project),
        )
    elif op == "new_state" and projects:
        pid = data.draw(st.sampled_from(projects))
        conn.execute(
            "INSERT INTO project_state (id, project_id, category, key, value)"
            " VALUES (?, ?, 'new', ?, 'v')",
            (f"ws{i}", pid, f"k{i}"),
        )
    elif op in ("edit_content", "rekey", "delete_memory", "status") and mems:
        mid = data.draw(st.sampled_from(mems))
        sql = {
            "edit_content": "UPDATE memories SET content = content || '+' WHERE id = ?",
            "rekey": "UPDATE memories SET project = 'elsewhere' WHERE id = ?",
            "delete_memory": "DELETE FROM memories WHERE id = ?",
            "status": "UPDATE memories SET status = 'invalid' WHERE id = ?",
        }[op]
        conn.execute(sql, (mid,))
    elif op in ("edit_value", "delete_state") and states:
        sid = data.draw(st.sampled_from(states))
        sql = {
            "edit_value": "UPDATE project_state SET value = value || '+' WHERE id = ?",
            "delete_state": "DELETE FROM project_state WHERE id = ?",
        }[op]
        conn.execute(sql, (sid,))


@settings(settings.get_profile(PROFILE))
@given(sc=scenarios(), data=st.data())
def test_revert_after_writes_matches_the_model(sc: Scenario, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory(prefix="atocore-rvw-") as tmp:
        root = Path(tmp)
        applied = _applied(root, sc)
        assume(applied is not None)
        assert applied is not None
        common, db, report = applied
        b: dict[str, Any] = load(next((root / "reports").glob("backup-*.db")))
        a = load(db)
        ops = data.draw(st.lists(st.sampled_from(WRITES), max_size=4))
        conn = sqlite3.connect(db)
        for i, op in enumerate(ops):
            _write(conn, op, data, sc, i)
        conn.commit()
        conn.close()
        n = load(db)
        model = expected_revert(b, a, n, skip_changed=True)
        event(f"revert: {model.refusal or 'reverts'}")
        event(f"changed rows: {'some' if model.counts.get('changed') else 'none'}")
        before = content_digest(db)
        res = run_cli("revert", *common, "--report", report, "--yes", "--skip-changed")
        if model.refusal is not None:
            assert res.code == 3, (model.counts, res.stdout, res.stderr)
            assert res.stderr.startswith("Error: revert refused"), res.stderr
            assert content_digest(db) == before
            return
        assert res.code == 0, (model.counts, res.stdout, res.stderr)
        assert load(db) == model.tables
