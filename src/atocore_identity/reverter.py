"""Revert an apply from its report and archive, keeping what was written since (SPEC §7).

The inverse is computed from the apply's archive and from the database as it
is now (``inverse.py``), inside one ``BEGIN IMMEDIATE`` transaction, behind
the same rails as apply (``transaction.py``): a backup first, postconditions
before COMMIT (every reverted record holds its pre-apply value again; row
counts change by exactly the rows restored), a report written before COMMIT.
Rows changed since the apply are never touched: they make revert refuse,
or with ``skip_changed`` are left and recorded. Conflicts always refuse.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atocore_identity import inverse
from atocore_identity.archive import (
    Archive,
    Loaded,
    RekeyChunk,
    archive_rows,
    check_counts,
    load_archive,
)
from atocore_identity.background import Background
from atocore_identity.checks import Check, rows_conserved
from atocore_identity.companion import (
    JSON_EXACT_TYPES,
    RevertRecord,
    read_records,
    revert_lines_sql,
    writing,
)
from atocore_identity.database import all_tables, read_only, table_columns
from atocore_identity.errors import BadInput, Refused
from atocore_identity.registry import Registry, fold
from atocore_identity.reports import (
    companion_differs,
    companion_of,
    ensure_report_dir,
    file_sha256,
    unique_path,
)
from atocore_identity.statements import hash_rows
from atocore_identity.survey import Progress, quiet
from atocore_identity.transaction import (
    backed_up,
    begin_immediate,
    checking_file,
    commit_reported,
    execute_writes,
    finished,
    refuse_failed_checks,
    rollback,
    rolled_back,
    row_counts,
    write_connection,
)

LISTED = 50  # changed rows and conflicts named in the refusal and the report


@dataclass(frozen=True)
class RevertRequest:
    """What the operator asked revert to do; never written into."""

    report: Path
    report_dir: Path
    busy_timeout: float
    projects: tuple[str, ...] = ()
    skip_changed: bool = False
    backup: bool = True


@dataclass
class Inverse:
    """The classified inverse of an apply, for the --project groups."""

    counts: dict[str, int]  # left, before, changed, conflict (selected records)
    by_kind: dict[str, dict[str, int]]  # kind -> state -> records
    listed: list[dict[str, Any]]  # changed rows and conflicts, the first LISTED
    statements: list[str]  # the SQL that classified, for --format sql
    writes: list[str]  # the inverse itself
    recheck: list[str]  # classification again after the writes: all must say before
    digest: str
    restored: dict[str, int]  # table -> rows re-inserted
    aliases: list[str]  # old names the registry still maps (plan would migrate again)

    @property
    def to_revert(self) -> int:
        return self.counts.get("left", 0)


@dataclass(frozen=True)
class RevertResult:
    inverse: Inverse
    status: str  # "reverted" | "committing" | "empty" | "rolled-back" | "dry-run"
    before: dict[str, int] = field(default_factory=dict)
    after: dict[str, int] = field(default_factory=dict)
    backup: Path | None = None
    backup_bytes: int = 0
    companion: Path | None = None
    companion_sha256: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    error: str | None = None


Hook = Callable[[RevertResult], None]


# -- the inverse -----------------------------------------------------------------


def build_inverse(
    conn: sqlite3.Connection,
    archive: Archive,
    registry: Registry,
    projects: tuple[str, ...],
    progress: Progress = quiet,
) -> Inverse:
    """Load the archive into ``temp.rv_rec`` and classify every record. Reads only."""
    progress("reading the archive")
    seen = _load_archive(conn, archive, projects)
    progress("classifying every row the apply changed")
    present, targets, others = _rekey_targets(conn, seen)
    classify = inverse.classify("state", targets, present, others)
    for sql in classify:
        conn.execute(sql)
    names = _name_conflicts(conn)
    for sql in inverse.CONFLICTS:
        conn.execute(sql)
    writes = inverse.writes(
        _columns(conn, "projects", seen.columns.get("delete", [])),
        _columns(conn, "project_state", seen.columns.get("archived", [])),
        targets,
    )
    counts, by_kind = _summary(conn)
    listed = [
        dict(zip(("kind", "table", "column", "key", "old", "new", "state", "why"), r, strict=True))
        for r in conn.execute(inverse.LISTED, (LISTED,))
    ]
    restored = {
        "projects": by_kind.get("delete", {}).get("left", 0),
        "project_state": by_kind.get("archived", {}).get("left", 0),
    }
    statements = [*inverse.SETUP, *inverse.INDEX, *classify, *names, *inverse.CONFLICTS]
    return Inverse(
        counts=counts,
        by_kind=by_kind,
        listed=listed,
        statements=statements,
        writes=writes,
        recheck=inverse.classify("after", targets, present, others),
        digest=_digest(conn),
        restored=restored,
        aliases=_still_mapped(conn, registry),
    )


LOAD_BATCH = 5000  # archive rows per executemany


def _load_archive(conn: sqlite3.Connection, archive: Archive, projects: tuple[str, ...]) -> Loaded:
    """Stream the archive's records (of the --project groups) into ``temp.rv_rec``
    and check their counts against the report before indexing them."""
    for sql in inverse.SETUP:
        conn.execute(sql)
    seen = Loaded()
    rows: list[tuple[Any, ...]] = []
    for item in archive_rows(archive, set(projects) if projects else None, seen):
        if isinstance(item, RekeyChunk):
            conn.executemany(inverse.INSERT, rows)  # the rows before it keep their order
            rows = []
            conn.execute(inverse.INSERT_REKEY, item.params)
        else:
            rows.append(item)
            if len(rows) >= LOAD_BATCH:
                conn.executemany(inverse.INSERT, rows)
                rows = []
    conn.executemany(inverse.INSERT, rows)
    conn.executemany(inverse.INSERT_NUL, seen.nul_values)
    check_counts(archive, seen, projects)
    for sql in inverse.INDEX:
        conn.execute(sql)
    return seen


def _rekey_targets(
    conn: sqlite3.Connection, seen: Loaded
) -> tuple[set[str], list[tuple[str, str, str]], dict[tuple[str, str, str], list[str]]]:
    """The tables that exist (lower case), the rekeyed columns that still
    exist, and for rowid-keyed ones the other columns a row is matched on."""
    present = {t.lower() for t in all_tables(conn)}
    targets = [
        t
        for t in seen.targets
        if t[0].lower() in present
        and t[1].lower() in {c.lower() for c in table_columns(conn, t[0])}
    ]
    # rowid-keyed rows are matched on every other column too
    others = {
        t: [c for c in table_columns(conn, t[0]) if c.lower() != t[1].lower()]
        for t in targets
        if t[2] == "rowid"
    }
    return present, targets, others


def _columns(conn: sqlite3.Connection, table: str, archived: list[str]) -> list[str]:
    """Archived columns the table still has: a column added since keeps its default."""
    have = set(table_columns(conn, table))
    return [c for c in archived if c in have]


def _name_conflicts(conn: sqlite3.Connection) -> list[str]:
    """A shadow cannot take back its name while another projects row holds it
    (folded: ``P05`` clashes with ``p05``). Projects rows are few: read them.
    Returns the statement it ran, if any, for the printed script."""
    names: dict[str, list[str]] = {}
    for pid, name in conn.execute(inverse.PROJECT_NAMES):
        if isinstance(name, str):
            names.setdefault(fold(name), []).append(str(pid))
    clash = [
        int(seq)
        for seq, key, old in conn.execute(inverse.NAMES).fetchall()
        if any(pid != str(key) for pid in names.get(fold(str(old)), []))
    ]
    if not clash:
        return []
    sql = (
        "UPDATE temp.rv_rec SET state = 'conflict',"
        " why = 'another projects row now holds this name'"
        f" WHERE seq IN ({', '.join(str(s) for s in clash)})"
    )
    conn.execute(sql)
    return [sql]


def _summary(conn: sqlite3.Connection) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    counts: dict[str, int] = {}
    by_kind: dict[str, dict[str, int]] = {}
    for kind, state, sel, n in conn.execute(inverse.SUMMARY):
        if not sel or state == "kept":
            continue
        counts[str(state)] = counts.get(str(state), 0) + int(n)
        by_kind.setdefault(str(kind), {})[str(state)] = int(n)
    return counts, by_kind


def _digest(conn: sqlite3.Connection) -> str:
    """What the operator confirms: every selected record's state, in order."""
    h = hashlib.sha256()
    hash_rows(h, conn.execute("SELECT seq, state FROM temp.rv_rec WHERE sel ORDER BY seq"))
    return h.hexdigest()


def _still_mapped(conn: sqlite3.Connection, registry: Registry) -> list[str]:
    """Names revert gives back that the registry still calls aliases or
    variants, folded, the first LISTED: ``plan`` would migrate them again."""
    out: set[str] = set()
    cur = conn.execute(
        "SELECT DISTINCT old FROM temp.rv_rec WHERE sel AND state = 'left'"
        " AND kind IN ('delete', 'rename', 'rekey')"
    )
    for (old,) in cur:
        hit = registry.classify(old) if isinstance(old, str) else None
        if hit is not None and hit[0] != "canonical":
            out.add(fold(old))
            if len(out) >= LISTED:
                break
    return sorted(out)


def revert_script(inv: Inverse, report: Path) -> str:
    """The SQL revert runs, for a DBA to review (revert --format sql)."""
    lines = [
        "-- atocore-identity revert script",
        f"-- temp.rv_rec and temp.rv_nul (archived text holding U+0000) are loaded from the"
        f" archive of {report}",
        "-- (one row per record; see docs/reports.md), then classified and written back.",
        "BEGIN IMMEDIATE;",
        *[s + ";" for s in inv.statements],
        "-- the writes",
        *[s + ";" for s in inv.writes],
        "COMMIT;",
    ]
    return "\n".join(lines) + "\n"


def refuse_if_blocked(inv: Inverse, request: RevertRequest) -> None:
    """Conflicts always refuse; changed rows refuse unless --skip-changed."""
    conflicts = [r for r in inv.listed if r["state"] == "conflict"]
    if inv.counts.get("conflict"):
        first = conflicts[0]
        raise Refused(
            f"revert refused: {inv.counts['conflict']} conflict(s) with the database as it is"
            f" now, e.g. {first['table']} {first['key']!r}: {first['why']}; nothing changed",
            "resolve them by hand (revert --dry-run lists them), or restore the backup",
        )
    if inv.counts.get("changed") and not request.skip_changed:
        first = next(r for r in inv.listed if r["state"] == "changed")
        raise Refused(
            f"revert refused: {inv.counts['changed']} row(s) changed since the apply, e.g."
            f" {first['table']} {first['key']!r} ({first['why'] or 'its value changed'});"
            " nothing changed",
            "review them with --dry-run; --skip-changed reverts the rest and records them",
        )


# -- the transaction ---------------------------------------------------------------


def dry_run(
    db: Path, registry: Registry, request: RevertRequest, progress: Progress = quiet
) -> RevertResult:
    """Classify on a read-only connection; change nothing, write nothing."""
    archive = load_archive(request.report, db)
    with read_only(db, request.busy_timeout) as conn:
        inv = build_inverse(conn, archive, registry, request.projects, progress)
    return RevertResult(inv, "dry-run")


def run_revert(
    db: Path,
    registry: Registry,
    request: RevertRequest,
    confirm: Callable[[Inverse], bool] | None = None,
    before_commit: Hook | None = None,
    after_commit: Hook | None = None,
    progress: Progress = quiet,
) -> RevertResult:
    """Revert in one transaction. Raises Refused with the database untouched."""
    archive = load_archive(request.report, db)
    ensure_report_dir(request.report_dir)
    with write_connection(db, request.busy_timeout) as conn:
        confirmed: str | None = None
        if confirm is not None:
            # ask before the write lock, then insist on the same inverse inside it
            preview = build_inverse(conn, archive, registry, request.projects, progress)
            refuse_if_blocked(preview, request)
            if preview.to_revert and not confirm(preview):
                raise Refused("revert cancelled at the prompt; nothing was changed")
            confirmed = preview.digest
        progress("waiting for the write lock")
        timings = {"lock_wait": begin_immediate(conn, db, request.busy_timeout)}
        with checking_file(db, request.busy_timeout) as file_check:
            t0 = time.perf_counter()
            inv = build_inverse(conn, archive, registry, request.projects, progress)
            timings["inverse"] = time.perf_counter() - t0
            if confirmed is not None and confirmed != inv.digest:
                raise Refused(
                    "the database changed between the confirmation and the write lock",
                    "run revert again and review the new counts",
                )
            refuse_if_blocked(inv, request)
            before = row_counts(conn)
            if not inv.to_revert:
                rollback(conn)
                return RevertResult(inv, "empty", before, before, timings=timings)
            result = _write(conn, db, inv, request, before, timings, progress, file_check)
        return commit_reported(
            conn,
            db,
            request.busy_timeout,
            result,
            what="revert",
            committed=finished("reverted"),
            failed=rolled_back(before),
            before_commit=before_commit,
            after_commit=after_commit,
        )


def _write(
    conn: sqlite3.Connection,
    db: Path,
    inv: Inverse,
    request: RevertRequest,
    before: dict[str, int],
    timings: dict[str, float],
    say: Progress,
    file_check: Background[None],
) -> RevertResult:
    """Back up, record, write the inverse, check. Returns a ``committing`` result."""
    report_dir = request.report_dir if request.backup else None
    with backed_up(db, file_check, report_dir, timings, say) as backing:
        say("recording what revert does")
        companion_path, _ = unique_path(request.report_dir, "revert", ".rows.jsonl.gz")
        try:
            companion = write_revert_records(conn, companion_path)
        except OSError as exc:
            raise Refused(
                f"cannot write {companion_path}: {exc.strerror}; nothing was changed",
                "free space in --report-dir",
            ) from None
        say("reverting")
        execute_writes(conn, db, inv.writes, "revert", timings)
        backup, backup_bytes = backing.publish()
    say("checking postconditions")
    after = row_counts(conn)
    found = postconditions(conn, inv, before, after)
    result = RevertResult(
        inv,
        "committing",
        before,
        after,
        backup,
        backup_bytes,
        companion,
        file_sha256(companion),
        timings,
        found,
    )
    refuse_failed_checks(conn, "revert", result, found, rolled_back(before))
    return result


def postconditions(
    conn: sqlite3.Connection, inv: Inverse, before: dict[str, int], after: dict[str, int]
) -> list[Check]:
    """Every reverted record holds its pre-apply value; counts change by the restores only."""
    for sql in inv.recheck:
        conn.execute(sql)
    (wrong,) = conn.execute(inverse.NOT_REVERTED).fetchone()
    return [
        Check(
            "every reverted row holds its value from before the apply",
            int(wrong) == 0,
            f"{inv.to_revert} reverted, {wrong} not",
        ),
        *rows_conserved(before, after, inv.restored),
    ]


def write_revert_records(conn: sqlite3.Connection, path: Path) -> Path:
    """Stream what revert reverts, skips and why, from ``temp.rv_rec``: encoded
    by SQLite when every value is one it writes exactly, else record by record."""
    (inexact,) = conn.execute(inverse.records_not_exact(JSON_EXACT_TYPES)).fetchone()
    with writing(path) as comp:
        if not inexact:
            cur = conn.execute(revert_lines_sql(inverse.RECORD_VALUES, inverse.RECORD_SOURCE))
            while rows := cur.fetchmany(5000):
                comp.write_lines(row[0] for row in rows)
        else:
            cur = conn.execute(inverse.RECORDS)
            while rows := cur.fetchmany(5000):
                for kind, canonical, tab, col, keycol, k, old, new, state, why in rows:
                    action = "reverted" if state == "left" else "skipped"
                    comp.write(
                        RevertRecord(
                            action, kind, str(canonical), tab, col, keycol, k, old, new, why
                        )
                    )
    return path


# -- verify --report REVERT_REPORT ---------------------------------------------------


def check_revert_report(
    conn: sqlite3.Connection, path: Path, report: dict[str, Any]
) -> list[Check]:
    """Every row the revert reverted still holds its value from before the apply.

    The revert's own companion names them; they are loaded into the same
    TEMP table and classified by the same statements: each must be ``before``.
    """
    status = report.get("status")
    if status not in ("reverted", "committing"):
        raise BadInput(
            f"report {path} records a revert that changed nothing (status {status!r})",
            "pass the report of a revert that reverted (`atocore-identity history`)",
        )
    companion = companion_of(path, report)
    if companion is None or not companion.is_file():
        raise BadInput(f"the record {companion} of {path} is missing")
    if companion_differs(companion, report):
        raise BadInput(f"the record {companion} does not match its report {path} (sha256)")
    for sql in inverse.SETUP:
        conn.execute(sql)
    seen = Loaded()

    def rows() -> Iterator[tuple[Any, ...]]:
        for rec in read_records(companion):
            if isinstance(rec, RevertRecord) and rec.action == "reverted":
                if rec.kind == "rekey":
                    seen.targets[(rec.table, rec.column, rec.key_column)] = None
                yield (rec.kind, rec.canonical_id, rec.table, rec.column, rec.key_column,
                       rec.key, rec.old, rec.new, None, None, None, 1)  # fmt: skip

    conn.executemany(inverse.INSERT, rows())
    for sql in inverse.INDEX:
        conn.execute(sql)
    # the same targets as revert: a column dropped since leaves its rows "changed"
    present, targets, others = _rekey_targets(conn, seen)
    for sql in inverse.classify("state", targets, present, others):
        conn.execute(sql)
    total, wrong = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(state IS NOT 'before'), 0) FROM temp.rv_rec"
    ).fetchone()
    return [
        Check(
            "rows the revert reverted hold their values from before the apply",
            int(wrong) == 0,
            f"{total} rows checked, {wrong} differ",
        )
    ]
