"""The postconditions as a checklist (SPEC §5 verify).

Read-only. The database checks come from ``checks.py`` (the same apply runs
before COMMIT). Optionally checks an apply report (every row is where the
report says) and a backup (conservation: every row of the backup is in the
database or accounted for by the apply report's archive). Records are read
through ``companion.read_records`` and streamed into a TEMP table; rekey
chunks are checked one statement per chunk.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from atocore_identity import checks
from atocore_identity.checks import Check
from atocore_identity.companion import (
    ProjectRecord,
    RekeyRecord,
    StateRecord,
    SupersedeRecord,
    read_records,
)
from atocore_identity.database import (
    quote_ident,
    quote_literal,
    read_regular_file,
    table_columns,
    table_exists,
)
from atocore_identity.discovery import discovering
from atocore_identity.errors import BadInput
from atocore_identity.plan_objects import Discovery, Survey
from atocore_identity.registry import Registry
from atocore_identity.reports import (
    CHANGED_SOMETHING,
    companion_differs,
    companion_of,
    load_report,
)
from atocore_identity.reverter import check_revert_report
from atocore_identity.survey import survey
from atocore_identity.targets import MissingTarget, Target


@dataclass
class VerifyResult:
    checks: list[Check] = field(default_factory=list)
    apply_report: Path | None = None
    skipped: list[str] = field(default_factory=list)  # checks not run, and how to run them
    discovery: Discovery | None = None  # what discovery read and found; None: skipped

    @property
    def ok(self) -> bool:
        return checks.all_ok(self.checks)


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
    *,
    discover: bool = True,
    ignore: Sequence[tuple[str, str]] = (),
) -> VerifyResult:
    """The checklist. ``discover`` also searches the columns nobody configured
    (except the ``ignore``d ones): any alias-keyed value there fails verify."""
    result = VerifyResult()
    # discovery reads in a worker process while the other checks run here
    with discovering(conn, registry, targets, ignore) if discover else nullcontext() as found:
        surv = survey(conn, registry, targets, missing)
        at = _database_checks(conn, surv, result)
        _report_and_backup_checks(conn, surv, targets, report_path, backup, report_dir, result)
        if found is not None:
            surv.discovery = found()
    _discovery_checks(surv, result, at)
    return result


def _report_and_backup_checks(
    conn: sqlite3.Connection,
    surv: Survey,
    targets: list[Target],
    report_path: Path | None,
    backup: Path | None,
    report_dir: Path | None,
    result: VerifyResult,
) -> None:
    """With --report, the rows are where it says; with --backup, conservation."""
    if report_path is None and backup is not None and report_dir is not None:
        report_path = find_apply_report(report_dir, backup)
    companion: Path | None = None
    if report_path is None:
        result.skipped.append("rows are where the apply report says: pass --report APPLY_REPORT")
    elif load_report(report_path).get("kind") == "revert":
        # a revert's report: its reverted rows hold their pre-apply values
        result.apply_report = report_path
        result.checks += check_revert_report(conn, report_path, load_report(report_path))
    else:
        result.apply_report = report_path
        companion = _apply_report_checks(conn, surv, targets, report_path, result)
    if backup is not None:
        result.checks += _check_backup(conn, backup, companion, targets)
    else:
        result.skipped.append(
            "conservation against the backup: pass --backup REPORT_DIR/backup-….db"
        )


def _database_checks(conn: sqlite3.Connection, surv: Survey, result: VerifyResult) -> int:
    """What holds of the database alone: no shadows, no alias names in the
    configured columns, one canonical row per project, a sound file. Returns
    where discovery's check goes: right after the configured columns'."""
    result.checks += [checks.no_shadow_rows(surv), *checks.no_alias_names(surv)]
    at = len(result.checks)
    result.checks.append(checks.one_canonical_row(surv))
    result.checks += _file_checks(conn)
    return at


def _discovery_checks(surv: Survey, result: VerifyResult, at: int) -> None:
    """No alias names in the columns nobody configured, at ``at`` in the
    checklist and first among the skipped (discovery is collected last)."""
    result.discovery = surv.discovery
    if surv.discovery is not None:
        result.checks.insert(at, checks.no_unconfigured_alias_values(surv.discovery))
        result.skipped[0:0] = [
            f"discovery: rows after the first {s.rows_read} of {s.table_rows} in {s.table}"
            " (large tables are sampled)"
            for s in surv.discovery.sampled
        ]
    else:
        result.skipped.insert(0, checks.DISCOVERY_SKIPPED)


def _apply_report_checks(
    conn: sqlite3.Connection,
    surv: Survey,
    targets: list[Target],
    report_path: Path,
    result: VerifyResult,
) -> Path | None:
    """An apply report's checks; returns its archive companion for the backup check."""
    report = load_apply_report(report_path)
    result.checks.append(
        Check(
            "the apply report records a finished apply",
            report["status"] in (*CHANGED_SOMETHING, "empty"),
            f"status {report['status']!r}",
        )
    )
    if report["status"] not in CHANGED_SOMETHING:
        return None
    names = [g["canonical_id"] for g in report.get("groups", [])]
    result.checks.append(checks.one_canonical_row(surv, names))
    companion = companion_of(report_path, report)
    if companion is not None:
        if companion.is_file() and companion_differs(companion, report):
            raise BadInput(
                f"the companion {companion} does not match its report {report_path}"
                " (sha256 differs)",
                "it was changed or replaced; verify without --report, or restore it",
            )
        result.checks += _check_report(conn, companion, targets)
    return companion


def load_apply_report(path: Path) -> dict[str, Any]:
    """An apply report; a refusal is bad input here, not a failed migration."""
    report = load_report(path, "apply")
    if report.get("status") == "refused":
        raise BadInput(
            f"report {path} is a refusal, not an apply: that apply changed nothing",
            "pass the report of the apply that ran (`atocore-identity history` lists them)",
        )
    return report


def _file_checks(conn: sqlite3.Connection) -> list[Check]:
    integrity = [str(r[0]) for r in conn.execute("PRAGMA main.integrity_check")]
    fk = conn.execute("PRAGMA main.foreign_key_check").fetchall()
    return [
        Check("PRAGMA integrity_check", integrity == ["ok"], "; ".join(integrity[:5])),
        Check("PRAGMA foreign_key_check", not fk, f"{len(fk)} violation(s)"),
    ]


def _expectations(companion: Path) -> Iterator[tuple[Any, ...]]:
    """(check, key, expected) for every project, state and supersede record."""
    for rec in read_records(companion):
        if isinstance(rec, ProjectRecord):
            if rec.action == "delete":
                yield ("projects:absent", rec.id, None)
            else:
                yield ("projects:name", rec.id, rec.canonical_id)
        elif isinstance(rec, StateRecord):
            if rec.archived:
                yield ("project_state:absent", rec.row["id"], None)
            else:
                yield ("project_state:project_id", rec.row["id"], rec.to_project_row)
        elif isinstance(rec, SupersedeRecord):
            yield ("memories:status", rec.id, "superseded")


def _load_keys(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> int:
    conn.execute("DROP TABLE IF EXISTS temp.ident_verify")
    conn.execute("CREATE TEMP TABLE ident_verify (tab, key, expected)")
    cur = conn.executemany("INSERT INTO temp.ident_verify VALUES (?, ?, ?)", rows)
    return max(cur.rowcount, 0)


# One statement per kind of expectation: rows that are not where they should be.
MISPLACED = {
    "projects:absent": ("projects", 'JOIN main."projects" p ON p."id" = v.key'),
    "projects:name": (
        "projects",
        'LEFT JOIN main."projects" p ON p."id" = v.key WHERE p."name" IS NOT v.expected',
    ),
    "project_state:absent": ("project_state", 'JOIN main."project_state" s ON s."id" = v.key'),
    "project_state:project_id": (
        "project_state",
        'LEFT JOIN main."project_state" s ON s."id" = v.key WHERE s."project_id" IS NOT v.expected',
    ),
    "memories:status": (
        "memories",
        'LEFT JOIN main."memories" m ON m."id" = v.key WHERE m."status" IS NOT v.expected',
    ),
}


def _check_report(conn: sqlite3.Connection, companion: Path, targets: list[Target]) -> list[Check]:
    """Every moved row is where the apply report says it went."""
    total = _load_keys(conn, _expectations(companion))
    wrong = 0
    for tab, (table, join) in MISPLACED.items():
        if not table_exists(conn, table):
            continue
        where = " AND " if " WHERE " in join else " WHERE "
        sql = f"SELECT COUNT(*) FROM temp.ident_verify v {join}{where}v.tab = {quote_literal(tab)}"
        (n,) = conn.execute(sql).fetchone()
        wrong += int(n)
    checked, misplaced = _check_rekeys(conn, companion, targets)
    return [
        Check(
            "project and state rows are where the apply report says",
            wrong == 0,
            f"{total} rows checked, {wrong} misplaced",
        ),
        Check(
            "rekeyed rows hold their canonical id",
            misplaced == 0,
            f"{checked} rows checked, {misplaced} misplaced",
        ),
    ]


def _check_rekeys(
    conn: sqlite3.Connection, companion: Path, targets: list[Target]
) -> tuple[int, int]:
    """Stream the rekey chunks, one statement per chunk: (checked, misplaced)."""
    by_label = {t.label: t for t in targets}
    checked = misplaced = 0
    for rec in read_records(companion):
        if not isinstance(rec, RekeyRecord):
            continue
        target = by_label.get(f"{rec.table}.{rec.column}")
        if target is None:
            continue
        key_sql = "rowid" if target.key == "rowid" else quote_ident(target.key)
        conn.execute("DELETE FROM temp.ident_verify")
        conn.executemany(
            "INSERT INTO temp.ident_verify VALUES ('k', ?, NULL)", ((i,) for i in rec.ids)
        )
        (n,) = conn.execute(
            f"SELECT COUNT(*) FROM temp.ident_verify v LEFT JOIN main.{quote_ident(target.table)}"
            f" t ON t.{key_sql} = v.key WHERE t.{quote_ident(target.column)}"
            f" IS NOT {quote_literal(rec.to)}"
        ).fetchone()
        checked += len(rec.ids)
        misplaced += int(n)
    return checked, misplaced


def _attach_backup(conn: sqlite3.Connection, backup: Path) -> None:
    # the kind first (a FIFO would hang the ATTACH), then SQLite's own header
    read_regular_file(backup, "backup", expected="an SQLite backup", limit=16)
    try:
        # immutable: a backup of a WAL database is WAL too, and even a mode=ro
        # reader would leave -wal and -shm files beside it in the report dir
        uri = "file:" + quote(str(backup.absolute())) + "?mode=ro&immutable=1"
        conn.execute(f"ATTACH DATABASE {quote_literal(uri)} AS ident_bk")
        (has_projects,) = conn.execute(
            "SELECT COUNT(*) FROM ident_bk.sqlite_master WHERE type = 'table' AND name = 'projects'"
        ).fetchone()
    except sqlite3.Error as exc:
        _detach(conn)
        raise BadInput(f"backup {backup} cannot be opened as SQLite ({exc})") from None
    if not has_projects:
        _detach(conn)
        raise BadInput(
            f"backup {backup} is not a backup of an AtoCore database (no projects table)",
            "pass the backup-*.db file that apply wrote",
        )


def _detach(conn: sqlite3.Connection) -> None:
    if any(r[1] == "ident_bk" for r in conn.execute("PRAGMA database_list")):
        conn.execute("DETACH DATABASE ident_bk")


def _archive(companion: Path | None) -> tuple[list[tuple[Any, ...]], dict[str, dict[str, Any]]]:
    """The rows the apply deleted: (table, key) to account for, and archived state rows."""
    accounted: list[tuple[Any, ...]] = []
    archived: dict[str, dict[str, Any]] = {}
    if companion is None:
        return accounted, archived
    for rec in read_records(companion):
        if isinstance(rec, ProjectRecord) and rec.action == "delete":
            accounted.append(("projects", rec.id, None))
        elif isinstance(rec, StateRecord) and rec.archived:
            accounted.append(("project_state", rec.row["id"], None))
            archived[str(rec.row["id"])] = rec.row
    return accounted, archived


def _check_backup(
    conn: sqlite3.Connection, backup: Path, companion: Path | None, targets: list[Target]
) -> list[Check]:
    """Conservation: every row of the backup is in the database or in the archive."""
    _attach_backup(conn, backup)
    try:
        accounted, archived = _archive(companion)
        _load_keys(conn, accounted)
        tables = ["projects", "project_state"] + [t.table for t in targets]
        found = [_lost_rows(conn, table) for table in dict.fromkeys(tables)]
        lost = sum(n for n, _ in found)
        out = [
            Check(
                "every backup row is in the database or the archive",
                lost == 0,
                "; ".join(d for n, d in found if n) or "all rows accounted for",
            )
        ]
        if archived and table_exists(conn, "project_state"):
            differ = _archived_differ(conn, archived)
            out.append(
                Check(
                    "archived state rows equal the backup's rows",
                    differ == 0,
                    f"{len(archived)} archived, {differ} differ",
                )
            )
        return out
    finally:
        _detach(conn)


def _lost_rows(conn: sqlite3.Connection, table: str) -> tuple[int, str]:
    """Rows of the backup's ``table`` neither in the database nor accounted for."""
    have = conn.execute(
        "SELECT 1 FROM ident_bk.sqlite_master WHERE type='table' AND name=?", (table,)
    ).fetchone()
    if not have or not table_exists(conn, table):
        return 0, ""
    k = quote_ident("id") if "id" in table_columns(conn, table) else "rowid"
    t = quote_ident(table)
    (lost,) = conn.execute(
        f"SELECT COUNT(*) FROM ident_bk.{t} b WHERE NOT EXISTS"
        f" (SELECT 1 FROM main.{t} m WHERE m.{k} = b.{k}) AND NOT EXISTS"
        f" (SELECT 1 FROM temp.ident_verify a WHERE a.tab = {quote_literal(table)}"
        f" AND a.key = b.{k})"
    ).fetchone()
    return int(lost), f"{table}: {lost} row(s) missing"


def _archived_differ(conn: sqlite3.Connection, archived: dict[str, dict[str, Any]]) -> int:
    """How many archived state rows differ from the backup's, 500 ids a statement."""
    ids = list(archived)
    differ = 0
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ", ".join("?" for _ in chunk)
        cur = conn.execute(f'SELECT * FROM ident_bk."project_state" WHERE "id" IN ({marks})', chunk)
        names = [c[0] for c in cur.description]
        for row in cur:
            found = dict(zip(names, row, strict=True))
            if found != archived[str(found["id"])]:
                differ += 1
    return differ
