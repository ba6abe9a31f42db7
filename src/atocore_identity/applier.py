"""Apply a plan in one transaction, behind its safety rails.

The order is fixed: prove the report dir writable, take the write lock
(``BEGIN IMMEDIATE``), rebuild the plan inside the transaction, refuse on any
rail, check the file and back it up, record the archive, run the planner's
write statements, check the postconditions, and only then COMMIT. Any
failure before COMMIT rolls back (``transaction.py``): the database is
either untouched or completely migrated.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from atocore_identity import checks
from atocore_identity.background import Background
from atocore_identity.checks import Check
from atocore_identity.companion import write_plan_records
from atocore_identity.errors import BadInput, Refused
from atocore_identity.plan_objects import Decision, Plan
from atocore_identity.planner import build_plan
from atocore_identity.registry import Registry
from atocore_identity.reports import ensure_report_dir, file_sha256, load_report, unique_path
from atocore_identity.statements import write_statements
from atocore_identity.survey import Progress, quiet, survey
from atocore_identity.targets import resolve_targets
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


@dataclass(frozen=True)
class ApplyRequest:
    """What the operator asked apply to do; never written into."""

    report_dir: Path
    busy_timeout: float
    columns: tuple[str, ...] = ()
    decisions: tuple[Decision, ...] = ()
    plan_file: Path | None = None
    plan_fingerprint: str | None = None  # from --plan FILE
    resolutions: Path | None = None
    allow_empty: bool = False
    backup: bool = True


@dataclass(frozen=True)
class ApplyResult:
    plan: Plan
    status: str  # "applied" | "committing" | "empty" | "rolled-back"
    before: dict[str, int]
    after: dict[str, int]
    backup: Path | None = None
    backup_bytes: int = 0
    companion: Path | None = None
    companion_sha256: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    note: str | None = None  # why an empty apply is a success


Confirm = Callable[[Plan], bool]
FINGERPRINT = re.compile(r"[0-9a-f]{64}")


def read_plan_file(path: Path, resolutions: Path | None) -> str:
    """The fingerprint a --plan report binds apply to, after checking it was made
    with the same resolutions file. Only the fingerprint binds: counts and
    ``applicable`` in the file are informational (the plan is rebuilt)."""
    doc = load_report(path, "plan")
    fingerprint = doc.get("fingerprint")
    if not isinstance(fingerprint, str) or not FINGERPRINT.fullmatch(fingerprint):
        raise BadInput(
            f"plan {path} has no valid fingerprint ({fingerprint!r})",
            "pass a plan report written by `atocore-identity plan`",
        )
    if "resolutions_sha256" in doc:
        made_with = doc["resolutions_sha256"]
        given = file_sha256(resolutions) if resolutions is not None else None
        if made_with != given:
            if not made_with:
                what = f"without resolutions, but --resolutions {resolutions} was given"
            elif given is None:
                what = f"with resolutions ({doc.get('resolutions')}), but none were given"
            else:
                what = f"with other resolutions ({doc.get('resolutions')}) than {resolutions}"
            raise Refused(
                f"plan {path} was made {what}; the database was not changed",
                "pass the --resolutions the plan was made with, or make the plan again",
            )
    return fingerprint


Hook = Callable[[ApplyResult], None]


def postconditions(
    conn: sqlite3.Connection,
    plan: Plan,
    registry: Registry,
    before: dict[str, int],
    after: dict[str, int],
) -> list[Check]:
    """SPEC §5 apply postconditions, checked inside the transaction before COMMIT."""
    surv = survey(conn, registry, plan.survey.targets, plan.survey.missing)
    archived = plan.counts["state_archived_duplicate"] + plan.counts["state_archived_history"]
    delta = {"projects": -plan.counts["shadow_rows_deleted"], "project_state": -archived}
    return [
        checks.no_shadow_rows(surv),
        *checks.no_alias_names(surv),
        checks.one_canonical_row(surv, [g.canonical_id for g in plan.groups]),
        *checks.rows_conserved(before, after, delta),
    ]


def run_apply(
    db: Path,
    registry: Registry,
    request: ApplyRequest,
    confirm: Confirm | None = None,
    before_commit: Hook | None = None,
    after_commit: Hook | None = None,
    progress: Progress = quiet,
) -> ApplyResult:
    """Migrate ``db`` in one transaction. Raises Refused with the database untouched.

    ``before_commit`` is called with the finished result just before COMMIT,
    so the apply report exists even if the process dies right after it;
    ``after_commit`` with the applied result. SIGINT and SIGTERM wait until
    both have run, so a report never says less than what happened.
    """
    ensure_report_dir(request.report_dir)
    with write_connection(db, request.busy_timeout) as conn:
        targets, missing = resolve_targets(conn, list(request.columns))
        confirmed: str | None = None
        if confirm is not None:
            # Ask before taking the write lock: a person may take a while, and
            # a live writer must not wait on them. The plan is rebuilt inside
            # the transaction and must match what they said yes to.
            preview = build_plan(conn, registry, targets, missing, request.decisions, progress)
            refuse_if_blocked(preview, request)
            if not confirm(preview):
                raise Refused("apply cancelled at the prompt; nothing was changed")
            confirmed = preview.fingerprint
        progress("waiting for the write lock")
        timings = {"lock_wait": begin_immediate(conn, db, request.busy_timeout)}
        with checking_file(db, request.busy_timeout) as file_check:
            t0 = time.perf_counter()
            # the rows to rekey are read, hashed and archived by a worker beside
            # this connection: no other writer can commit while we hold the lock
            plan = build_plan(
                conn,
                registry,
                targets,
                missing,
                request.decisions,
                progress,
                beside=request.report_dir,
            )
            timings["plan"] = time.perf_counter() - t0
            with closing(plan):  # the worker's records, if the archive did not take them
                refuse_if_blocked(plan, request, confirmed)
                before = row_counts(conn)
                if plan.is_empty:
                    rollback(conn)
                    note = None
                    if request.plan_fingerprint is not None:
                        note = (
                            "nothing to migrate: the database already is in this plan's end state"
                        )
                    return ApplyResult(plan, "empty", before, before, timings=timings, note=note)
                result = _migrate(
                    conn, db, plan, registry, request, before, timings, progress, file_check
                )
        return commit_reported(
            conn,
            db,
            request.busy_timeout,
            result,
            what="apply",
            committed=finished("applied"),
            failed=rolled_back(before),
            before_commit=before_commit,
            after_commit=after_commit,
        )


def refuse_if_blocked(plan: Plan, request: ApplyRequest, confirmed: str | None = None) -> None:
    """Every rail that refuses before a write, in the order an operator fixes them."""
    if (
        plan.is_empty
        and request.plan_fingerprint is not None
        and not plan.integrity_errors
        and not plan.unresolved
    ):
        # already applied: run_apply says so and succeeds; resolutions of
        # collisions the apply settled are stale by then, and harmless
        return
    if request.plan_fingerprint is not None and request.plan_fingerprint != plan.fingerprint:
        raise Refused(
            "plan is stale: the database or registry changed since the plan was made",
            "run `atocore-identity plan` again, review it, and apply the new plan",
        )
    if confirmed is not None and confirmed != plan.fingerprint:
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
    if plan.is_empty and not request.allow_empty:
        raise Refused(
            "nothing to migrate: the plan is empty",
            "pass --allow-empty to record an apply report anyway",
        )


def _write_archive(conn: sqlite3.Connection, plan: Plan, report_dir: Path) -> Path:
    """The apply's companion, written before any row is deleted: revert reads it back."""
    companion_path, _ = unique_path(report_dir, "apply", ".rows.jsonl.gz")
    try:
        return write_plan_records(conn, plan, companion_path)
    except OSError as exc:
        raise Refused(
            f"cannot write the archive {companion_path}: {exc.strerror}; nothing was changed",
            "free space in --report-dir (the archive must exist before any row is deleted)",
        ) from None


def _migrate(
    conn: sqlite3.Connection,
    db: Path,
    plan: Plan,
    registry: Registry,
    request: ApplyRequest,
    before: dict[str, int],
    timings: dict[str, float],
    say: Progress,
    file_check: Background[None],
) -> ApplyResult:
    """Back up, archive, write, check. Returns a ``committing`` result or raises."""
    report_dir = request.report_dir if request.backup else None
    with backed_up(db, file_check, report_dir, timings, say) as backing:
        say("recording the archive")
        t0 = time.perf_counter()
        companion = _write_archive(conn, plan, request.report_dir)
        timings["archive"] = time.perf_counter() - t0

        say("migrating")
        execute_writes(conn, db, write_statements(plan), "apply", timings)
        backup, backup_bytes = backing.publish()

    say("checking postconditions")
    t0 = time.perf_counter()
    after = row_counts(conn)
    found = postconditions(conn, plan, registry, before, after)
    timings["check"] = time.perf_counter() - t0
    result = ApplyResult(
        plan,
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
    refuse_failed_checks(conn, "apply", result, found, rolled_back(before))
    return result
