"""The postconditions as a checklist (SPEC §5 verify).

Read-only. Optionally checks an apply report (every row is where the report
says) and a backup (conservation: every row of the backup is in the database
or accounted for by the apply report's archive).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from atocore_identity.database import quote_ident, quote_literal, table_columns, table_exists
from atocore_identity.errors import BadInput
from atocore_identity.planner import survey
from atocore_identity.registry import Registry
from atocore_identity.reports import load_report, read_companion
from atocore_identity.targets import MissingTarget, Target


@dataclass
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class VerifyResult:
    checks: list[Check] = field(default_factory=list)
    apply_report: Path | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def _companion_of(report_path: Path, report: dict[str, Any]) -> Path | None:
    name = report.get("companion")
    if not name:
        return None
    path = Path(str(name))
    return path if path.is_absolute() else report_path.parent / path


def find_apply_report(report_dir: Path, backup: Path) -> Path | None:
    """The apply report in ``report_dir`` whose backup is ``backup``, if any."""
    if not report_dir.is_dir():
        return None
    want = backup.resolve()
    for path in sorted(report_dir.glob("apply-*.json"), reverse=True):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        named = (doc.get("backup") or {}).get("path") if isinstance(doc, dict) else None
        if named:
            candidate = Path(named)
            if not candidate.is_absolute():
                candidate = path.parent / candidate
            if candidate.resolve() == want:
                return path
    return None


def run_verify(
    conn: sqlite3.Connection,
    registry: Registry,
    targets: list[Target],
    missing: list[MissingTarget],
    report_path: Path | None = None,
    backup: Path | None = None,
    report_dir: Path | None = None,
) -> VerifyResult:
    result = VerifyResult()
    add = result.checks.append
    surv = survey(conn, registry, targets, missing)

    shadows = [r for r in surv.project_rows if r.role == "shadow"]
    add(
        Check(
            "no shadow project rows",
            not shadows,
            ", ".join(f"{r.name!r} (id {r.id})" for r in shadows[:10]) or "none",
        )
    )
    for target in targets:
        bad = [
            n
            for n in surv.names
            if (n.table, n.column) == (target.table, target.column)
            and n.kind in ("alias", "variant")
        ]
        detail = ", ".join(f"{n.examples[0]!r}: {n.count}" for n in bad[:10]) or "none"
        add(Check(f"no alias or variant names in {target.label}", not bad, detail))
    multi = [g for g in surv.groups().values() if len(g.canonical_rows) > 1]
    add(
        Check(
            "at most one canonical row per project",
            not multi,
            ", ".join(g.canonical_id for g in multi) or "ok",
        )
    )
    integrity = [str(r[0]) for r in conn.execute("PRAGMA main.integrity_check")]
    add(Check("PRAGMA integrity_check", integrity == ["ok"], "; ".join(integrity[:5])))
    fk = conn.execute("PRAGMA main.foreign_key_check").fetchall()
    add(Check("PRAGMA foreign_key_check", not fk, f"{len(fk)} violation(s)"))

    if report_path is None and backup is not None and report_dir is not None:
        report_path = find_apply_report(report_dir, backup)
    records: list[dict[str, Any]] = []
    if report_path is not None:
        result.apply_report = report_path
        report = load_report(report_path, "apply")
        companion = _companion_of(report_path, report)
        status = report.get("status")
        add(
            Check(
                "the apply report records a finished apply",
                status in ("applied", "committing", "empty"),
                f"status {status!r}",
            )
        )
        # "committing": written just before COMMIT; the row checks below tell
        # whether the COMMIT happened.
        if status in ("applied", "committing"):
            _check_groups(add, surv, report)
        if status in ("applied", "committing") and companion is not None:
            if not companion.exists():
                raise BadInput(f"the companion {companion} of {report_path} is missing")
            records = list(_records(companion, kinds=("project", "state", "supersede")))
            _check_report(conn, add, records, companion, targets)
    if backup is not None:
        _check_backup(conn, add, backup, records, targets)
    return result


def _check_groups(add: Any, surv: Any, report: dict[str, Any]) -> None:
    """Every project the apply migrated has exactly one canonical row."""
    have = surv.groups()
    wrong = [
        g["canonical_id"]
        for g in report.get("groups", [])
        if g["canonical_id"] not in have or len(have[g["canonical_id"]].canonical_rows) != 1
    ]
    add(
        Check(
            "one canonical row for every migrated project",
            not wrong,
            ", ".join(wrong) or f"{len(report.get('groups', []))} projects",
        )
    )


def _records(path: Path, kinds: Iterable[str]) -> Iterable[dict[str, Any]]:
    wanted = set(kinds)
    for rec in read_companion(path):
        if rec.get("record") in wanted:
            yield rec


def _load_keys(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    conn.execute("DROP TABLE IF EXISTS temp.ident_verify")
    conn.execute("CREATE TEMP TABLE ident_verify (tab, key, expected)")
    conn.executemany("INSERT INTO temp.ident_verify VALUES (?, ?, ?)", rows)


def _check_report(
    conn: sqlite3.Connection,
    add: Any,
    records: list[dict[str, Any]],
    companion: Path,
    targets: list[Target],
) -> None:
    """Every moved row is where the apply report says it went."""
    expect: list[tuple[Any, ...]] = []
    for rec in records:
        if rec["record"] == "project":
            if rec["action"] == "delete":
                expect.append(("projects:absent", rec["id"], None))
            else:
                expect.append(("projects:name", rec["id"], rec["canonical_id"]))
        elif rec["record"] == "state":
            row_id = rec["row"]["id"]
            if rec["outcome"] in ("duplicate", "history"):
                expect.append(("project_state:absent", row_id, None))
            else:
                expect.append(("project_state:project_id", row_id, rec["to_project_row"]))
        elif rec["record"] == "supersede":
            expect.append(("memories:status", rec["id"], "superseded"))
    _load_keys(conn, expect)
    checks = {
        "projects:absent": 'SELECT COUNT(*) FROM temp.ident_verify v JOIN main."projects" p'
        " ON p.\"id\" = v.key WHERE v.tab = 'projects:absent'",
        "projects:name": 'SELECT COUNT(*) FROM temp.ident_verify v LEFT JOIN main."projects" p'
        " ON p.\"id\" = v.key WHERE v.tab = 'projects:name'"
        ' AND p."name" IS NOT v.expected',
    }
    if table_exists(conn, "project_state"):
        checks["project_state:absent"] = (
            'SELECT COUNT(*) FROM temp.ident_verify v JOIN main."project_state" s'
            " ON s.\"id\" = v.key WHERE v.tab = 'project_state:absent'"
        )
        checks["project_state:project_id"] = (
            'SELECT COUNT(*) FROM temp.ident_verify v LEFT JOIN main."project_state" s'
            " ON s.\"id\" = v.key WHERE v.tab = 'project_state:project_id'"
            ' AND s."project_id" IS NOT v.expected'
        )
    if table_exists(conn, "memories"):
        checks["memories:status"] = (
            'SELECT COUNT(*) FROM temp.ident_verify v LEFT JOIN main."memories" m'
            " ON m.\"id\" = v.key WHERE v.tab = 'memories:status'"
            ' AND m."status" IS NOT v.expected'
        )
    wrong = 0
    for sql in checks.values():
        (n,) = conn.execute(sql).fetchone()
        wrong += int(n)
    add(
        Check(
            "project and state rows are where the apply report says",
            wrong == 0,
            f"{len(expect)} rows checked, {wrong} misplaced",
        )
    )

    # Rekeyed rows: stream the id chunks, one check per chunk.
    by_label = {t.label: t for t in targets}
    checked = misplaced = 0
    for rec in _records(companion, kinds=("rekey",)):
        target = by_label.get(f"{rec['table']}.{rec['column']}")
        if target is None:
            continue
        key_sql = "rowid" if target.key == "rowid" else quote_ident(target.key)
        conn.execute("DELETE FROM temp.ident_verify")
        conn.executemany(
            "INSERT INTO temp.ident_verify VALUES ('k', ?, NULL)", ((i,) for i in rec["ids"])
        )
        (n,) = conn.execute(
            f"SELECT COUNT(*) FROM temp.ident_verify v LEFT JOIN main.{quote_ident(target.table)}"
            f" t ON t.{key_sql} = v.key WHERE t.{quote_ident(target.column)}"
            f" IS NOT {quote_literal(rec['to'])}"
        ).fetchone()
        checked += len(rec["ids"])
        misplaced += int(n)
    add(
        Check(
            "rekeyed rows hold their canonical id",
            misplaced == 0,
            f"{checked} rows checked, {misplaced} misplaced",
        )
    )


def _attached(conn: sqlite3.Connection) -> bool:
    return any(r[1] == "ident_bk" for r in conn.execute("PRAGMA database_list"))


def _check_backup(
    conn: sqlite3.Connection,
    add: Any,
    backup: Path,
    records: list[dict[str, Any]],
    targets: list[Target],
) -> None:
    """Conservation: every row of the backup is in the database or in the archive."""
    if not backup.is_file():
        raise BadInput(f"backup {backup} does not exist", "pass the backup apply wrote")
    try:
        conn.execute(
            f"ATTACH DATABASE {quote_literal('file:' + quote(str(backup.absolute())) + '?mode=ro')}"
            " AS ident_bk"
        )
        (has_projects,) = conn.execute(
            "SELECT COUNT(*) FROM ident_bk.sqlite_master WHERE type = 'table' AND name = 'projects'"
        ).fetchone()
    except sqlite3.Error as exc:
        if _attached(conn):
            conn.execute("DETACH DATABASE ident_bk")
        raise BadInput(f"backup {backup} cannot be opened as SQLite ({exc})") from None
    if not has_projects:
        conn.execute("DETACH DATABASE ident_bk")
        raise BadInput(
            f"backup {backup} is not a backup of an AtoCore database (no projects table)",
            "pass the backup-*.db file that apply wrote",
        )
    try:
        accounted: list[tuple[Any, ...]] = []
        archived: dict[str, dict[str, Any]] = {}
        for rec in records:
            if rec["record"] == "project" and rec["action"] == "delete":
                accounted.append(("projects", rec["id"], None))
            elif rec["record"] == "state" and rec["outcome"] in ("duplicate", "history"):
                accounted.append(("project_state", rec["row"]["id"], None))
                archived[str(rec["row"]["id"])] = rec["row"]
        _load_keys(conn, accounted)
        tables = ["projects", "project_state"] + [t.table for t in targets]
        lost_total = 0
        details: list[str] = []
        for table in dict.fromkeys(tables):
            have = conn.execute(
                "SELECT 1 FROM ident_bk.sqlite_master WHERE type='table' AND name=?", (table,)
            ).fetchone()
            if not have or not table_exists(conn, table):
                continue
            key = "id" if "id" in table_columns(conn, table) else "rowid"
            k, t = quote_ident(key) if key == "id" else key, quote_ident(table)
            (lost,) = conn.execute(
                f"SELECT COUNT(*) FROM ident_bk.{t} b WHERE NOT EXISTS"
                f" (SELECT 1 FROM main.{t} m WHERE m.{k} = b.{k}) AND NOT EXISTS"
                f" (SELECT 1 FROM temp.ident_verify a WHERE a.tab = {quote_literal(table)}"
                f" AND a.key = b.{k})"
            ).fetchone()
            lost_total += int(lost)
            if lost:
                details.append(f"{table}: {lost} row(s) missing")
        add(
            Check(
                "every backup row is in the database or the archive",
                lost_total == 0,
                "; ".join(details) or "all rows accounted for",
            )
        )
        if archived and table_exists(conn, "project_state"):
            ids = list(archived)
            differ = 0
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ", ".join("?" for _ in chunk)
                cur = conn.execute(
                    f'SELECT * FROM ident_bk."project_state" WHERE "id" IN ({marks})', chunk
                )
                names = [c[0] for c in cur.description]
                for row in cur:
                    found = dict(zip(names, row, strict=True))
                    if found != archived[str(found["id"])]:
                        differ += 1
            add(
                Check(
                    "archived state rows equal the backup's rows",
                    differ == 0,
                    f"{len(ids)} archived, {differ} differ",
                )
            )
    finally:
        conn.execute("DETACH DATABASE ident_bk")
