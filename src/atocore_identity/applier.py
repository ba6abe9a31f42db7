"""Apply a plan in one transaction, behind its safety rails.

The order is fixed: prove the report dir writable, take the write lock
(``BEGIN IMMEDIATE``), rebuild the plan inside the transaction, refuse on any
rail, back up through SQLite's backup API, record the archive, run the
planner's write statements, check the postconditions, and only then COMMIT.
Any failure before COMMIT rolls back: the database is either untouched or
completely migrated.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atocore_identity.database import (
    all_tables,
    backup_to,
    describe_sqlite_error,
    open_database,
    quick_check,
    quote_ident,
)
from atocore_identity.errors import DatabaseError, DatabaseLocked, Refused
from atocore_identity.planner import (
    Decision,
    Plan,
    Progress,
    build_plan,
    survey,
    write_statements,
)
from atocore_identity.registry import Registry
from atocore_identity.reports import ensure_report_dir, unique_path, write_companion
from atocore_identity.targets import resolve_targets

APPLY_CACHE_KIB = 16384


@dataclass
class ApplyOptions:
    report_dir: Path
    columns: list[str] = field(default_factory=list)
    decisions: Sequence[Decision] = ()
    busy_timeout: float = 30.0
    plan_fingerprint: str | None = None  # from --plan FILE
    confirmed_fingerprint: str | None = None  # what the operator said yes to
    allow_empty: bool = False
    backup: bool = True
    # Called with the finished result just before COMMIT, so the apply report
    # exists even if the process dies between COMMIT and the last word.
    before_commit: Callable[[ApplyResult], None] | None = None


@dataclass
class ApplyResult:
    plan: Plan
    status: str  # "applied" | "empty" | "refused" | "rolled-back"
    before: dict[str, int]
    after: dict[str, int]
    backup: Path | None
    backup_bytes: int
    companion: Path | None
    timings: dict[str, float]
    checks: list[dict[str, Any]]
    error: str | None = None


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open: SQLITE_FULL and friends end it themselves."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Rows per table, for every table: the postconditions compare them all, so
    a cascade or trigger touching a table the plan does not own rolls back."""
    out: dict[str, int] = {}
    for table in all_tables(conn):
        (out[table],) = conn.execute(f"SELECT COUNT(*) FROM main.{quote_ident(table)}").fetchone()
    return out


def postconditions(
    conn: sqlite3.Connection,
    plan: Plan,
    registry: Registry,
    before: dict[str, int],
    after: dict[str, int],
) -> list[dict[str, Any]]:
    """SPEC §5 apply postconditions, checked inside the transaction before COMMIT."""
    surv = survey(conn, registry, plan.survey.targets, plan.survey.missing)
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "ok": ok, "detail": detail})

    shadows = [r for r in surv.project_rows if r.role == "shadow"]
    check("no shadow project rows", not shadows, f"{len(shadows)} left")
    leftover = sum(n.count for n in surv.names if n.kind in ("alias", "variant"))
    check("no alias-keyed or variant rows", leftover == 0, f"{leftover} left")
    groups = surv.groups()
    bad = [
        g.canonical_id
        for g in plan.groups
        if len(groups.get(g.canonical_id, type(g)(g.canonical_id)).canonical_rows) != 1
    ]
    check("one canonical row per migrated project", not bad, ", ".join(bad) or "ok")
    expected = dict(before)
    expected["projects"] -= plan.counts["shadow_rows_deleted"]
    if "project_state" in expected:
        expected["project_state"] -= (
            plan.counts["state_archived_duplicate"] + plan.counts["state_archived_history"]
        )
    for table, want in expected.items():
        got = after.get(table, -1)
        check(
            f"rows conserved in {table}",
            got == want,
            f"before {before[table]}, after {got}, expected {want}",
        )
    return checks


def run_apply(
    db: Path,
    registry: Registry,
    options: ApplyOptions,
    confirm: Callable[[Plan], bool] | None = None,
    progress: Progress | None = None,
) -> ApplyResult:
    """Migrate ``db`` in one transaction. Raises Refused with the database untouched."""
    say: Progress = progress or (lambda _: None)
    timings: dict[str, float] = {}
    ensure_report_dir(options.report_dir)

    try:
        conn = open_database(db, readonly=False, busy_timeout=options.busy_timeout)
    except DatabaseLocked as exc:
        raise _busy(db, options, exc.message) from None
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        # The rekey UPDATEs rewrite index pages all over the file; SQLite's
        # default 2 MiB page cache spills to the journal again and again.
        # 16 MiB halves the write phase at a million rows and keeps peak RSS
        # well under the 150 MB budget (docs/performance.md).
        conn.execute(f"PRAGMA cache_size = {-APPLY_CACHE_KIB}")
        targets, missing = resolve_targets(conn, options.columns)
        if confirm is not None:
            # Ask before taking the write lock: a person may take a while, and
            # a live writer must not wait on them. The plan is rebuilt inside
            # the transaction and must match what they said yes to.
            preview = build_plan(conn, registry, targets, missing, options.decisions, say)
            _refuse_if_blocked(preview, options)
            if not confirm(preview):
                raise Refused("apply cancelled at the prompt; nothing was changed")
            options.confirmed_fingerprint = preview.fingerprint

        say("waiting for the write lock")
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _busy(db, options, str(exc)) from None
        timings["lock_wait"] = time.perf_counter() - started
        try:
            return _migrate(conn, db, registry, options, targets, missing, timings, say)
        except BaseException:
            rollback(conn)
            raise
    except sqlite3.Error as exc:
        error = describe_sqlite_error(db, exc)
        if isinstance(error, DatabaseLocked):
            raise _busy(db, options, str(exc)) from None
        raise error from None
    finally:
        conn.close()


def _busy(db: Path, options: ApplyOptions, detail: str) -> Refused:
    """A lock held past --busy-timeout, at any point of apply, is a refusal."""
    return Refused(
        f"database {db} is busy: another process held its lock for more than"
        f" {options.busy_timeout:g}s ({detail})",
        "stop AtoCore's writers or raise --busy-timeout, then run apply again",
    )


def _refuse_if_blocked(plan: Plan, options: ApplyOptions) -> None:
    if options.plan_fingerprint is not None and options.plan_fingerprint != plan.fingerprint:
        raise Refused(
            "plan is stale: the database or registry changed since the plan was made",
            "run `atocore-identity plan` again, review it, and apply the new plan",
        )
    if options.confirmed_fingerprint is not None and (
        options.confirmed_fingerprint != plan.fingerprint
    ):
        raise Refused(
            "the database changed between the confirmation and the write lock",
            "run apply again and review the new counts",
        )
    if plan.blockers:
        first = plan.blockers[0]
        more = f" (and {len(plan.blockers) - 1} more)" if len(plan.blockers) > 1 else ""
        hint = "run `atocore-identity plan` to see them all"
        if plan.unresolved:
            hint = "decide them with `atocore-identity resolve`, then pass --resolutions FILE"
        if plan.stale_decisions:
            hint = "run `atocore-identity resolve` again against the current database"
        raise Refused(f"apply refused: {first}{more}", hint)
    if plan.is_empty and not options.allow_empty:
        raise Refused(
            "nothing to migrate: the plan is empty",
            "pass --allow-empty to record an apply report anyway",
        )


def _migrate(
    conn: sqlite3.Connection,
    db: Path,
    registry: Registry,
    options: ApplyOptions,
    targets: list[Any],
    missing: list[Any],
    timings: dict[str, float],
    say: Progress,
) -> ApplyResult:
    t0 = time.perf_counter()
    plan = build_plan(conn, registry, targets, missing, options.decisions, say)
    timings["plan"] = time.perf_counter() - t0
    _refuse_if_blocked(plan, options)

    before = row_counts(conn)
    if plan.is_empty:
        rollback(conn)
        return ApplyResult(plan, "empty", before, before, None, 0, None, timings, [])

    say("checking the file (PRAGMA quick_check)")
    t0 = time.perf_counter()
    quick_check(conn, db)
    timings["quick_check"] = time.perf_counter() - t0

    backup_path: Path | None = None
    backup_bytes = 0
    if options.backup:
        say("backing up")
        t0 = time.perf_counter()
        backup_path, _ = unique_path(options.report_dir, "backup", ".db")
        backup_bytes = backup_to(db, backup_path)
        timings["backup"] = time.perf_counter() - t0

    say("recording the archive")
    t0 = time.perf_counter()
    companion_path, _ = unique_path(options.report_dir, "apply", ".rows.jsonl.gz")
    try:
        companion = write_companion(conn, plan, companion_path)
    except OSError as exc:
        raise Refused(
            f"cannot write the archive {companion_path}: {exc.strerror}; nothing was changed",
            "free space in --report-dir (the archive must exist before any row is deleted)",
        ) from None
    timings["archive"] = time.perf_counter() - t0

    say("migrating")
    t0 = time.perf_counter()
    try:
        for sql in write_statements(plan):
            conn.execute(sql)
    except sqlite3.Error as exc:
        rollback(conn)
        error = describe_sqlite_error(db, exc)
        if "corrupt" in error.message:
            raise DatabaseError(
                f"{error.message}; apply rolled back, nothing changed", error.hint
            ) from None
        hint = "see docs/runbook.md"
        if "full" in str(exc):
            hint = "free disk space beside the database (its journal needs room), then run again"
        raise Refused(f"apply failed and was rolled back, nothing changed: {exc}", hint) from None
    timings["write"] = time.perf_counter() - t0

    say("checking postconditions")
    t0 = time.perf_counter()
    after = row_counts(conn)
    checks = postconditions(conn, plan, registry, before, after)
    timings["check"] = time.perf_counter() - t0
    failed = [c for c in checks if not c["ok"]]
    if failed:
        rollback(conn)
        result = ApplyResult(
            plan,
            "rolled-back",
            before,
            before,
            backup_path,
            backup_bytes,
            companion,
            timings,
            checks,
            error="postcondition failed: " + failed[0]["check"],
        )
        raise RolledBack(result)
    result = ApplyResult(
        plan, "committing", before, after, backup_path, backup_bytes, companion, timings, checks
    )
    if options.before_commit is not None:
        options.before_commit(result)
    t0 = time.perf_counter()
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        # e.g. a reader kept the lock past --busy-timeout: nothing was committed
        rollback(conn)
        result.status = "rolled-back"
        result.after = before
        result.error = f"COMMIT failed: {exc}"
        raise RolledBack(result) from None
    timings["commit"] = time.perf_counter() - t0
    result.status = "applied"
    return result


class RolledBack(Refused):
    """A postcondition or the COMMIT failed; carries the result for the failure report."""

    def __init__(self, result: ApplyResult) -> None:
        hint = "this is a bug in atocore-identity; keep the report and open an issue"
        if (result.error or "").startswith("COMMIT failed"):
            hint = "a reader held the database past --busy-timeout; run apply again"
        super().__init__(f"apply rolled back, nothing changed: {result.error}", hint)
        self.result = result
