"""What each subcommand does, on top of the core, independent of Click.

Each ``run_*`` function takes resolved inputs, calls the planner, applier or
verifier, writes the report of its kind, and returns an outcome that
``render`` turns into text. Commands add no rules and no SQL of their own.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from atocore_identity.applier import ApplyOptions, ApplyResult, RolledBack, run_apply
from atocore_identity.database import describe_sqlite_error, read_only, traced
from atocore_identity.errors import BadInput, Refused
from atocore_identity.planner import (
    Collision,
    Decision,
    Plan,
    Progress,
    Survey,
    apply_script,
    build_plan,
    iter_state_rows,
    survey,
    write_statements,
)
from atocore_identity.registry import Registry, load_registry
from atocore_identity.reports import (
    ensure_report_dir,
    envelope,
    load_report,
    replace_json,
    unique_path,
    utc_now,
    write_companion,
    write_json_atomic,
)
from atocore_identity.resolutions import decide, load_decisions, parse_pick, pick_by_rule
from atocore_identity.targets import MissingTarget, Target, resolve_targets
from atocore_identity.verifier import VerifyResult, run_verify

PREVIEW_ROWS = 200


@dataclass(frozen=True)
class Inputs:
    """What every subcommand needs, already resolved from options and environment."""

    db: Path
    registry: Path
    report_dir: Path
    columns: tuple[str, ...] = ()


@dataclass
class Session:
    conn: sqlite3.Connection
    registry: Registry
    targets: list[Target]
    missing: list[MissingTarget]


@contextmanager
def read_session(inputs: Inputs) -> Iterator[Session]:
    """Registry first (cheap to check), then the database, read-only."""
    registry = load_registry(inputs.registry)
    with read_only(inputs.db) as conn:
        try:
            targets, missing = resolve_targets(conn, list(inputs.columns))
            yield Session(conn, registry, targets, missing)
        except sqlite3.Error as exc:
            raise describe_sqlite_error(inputs.db, exc) from None


def _envelope(
    kind: str,
    inputs: Inputs,
    registry: Registry,
    fingerprint: str | None,
    counts: dict[str, int],
    details: dict[str, Any],
) -> dict[str, Any]:
    return envelope(
        kind,
        utc_now(),
        db=inputs.db,
        registry_path=inputs.registry,
        registry_sha256=registry.sha256,
        fingerprint=fingerprint,
        counts=counts,
        details=details,
    )


def _publish(inputs: Inputs, kind: str, payload: dict[str, Any], out: Path | None) -> Path:
    if out is None:
        ensure_report_dir(inputs.report_dir)
        out, _ = unique_path(inputs.report_dir, kind)
    payload["report_path"] = str(out)
    return write_json_atomic(out, payload)


# --------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------


@dataclass
class InspectOutcome:
    survey: Survey
    registry: Registry
    statements: list[str]
    payload: dict[str, Any]
    report: Path | None
    warning: str | None = None


def registry_summary(registry: Registry) -> dict[str, int]:
    return {"projects": len(registry.projects), "aliases": len(registry.alias_to_id)}


def survey_payload(surv: Survey) -> dict[str, Any]:
    rows = {r.id: r for r in surv.project_rows}
    state: dict[str, dict[str, int]] = {}
    for (pid, status), n in surv.state_by_status.items():
        state.setdefault(pid, {})[status] = n
    mem: dict[str, dict[str, int]] = {}
    for (raw, status), n in surv.memories_by_status.items():
        mem.setdefault(raw, {})[status] = n
    return {
        "project_rows": [
            {
                "id": r.id,
                "name": r.name,
                "canonical_id": r.canonical_id,
                "role": r.role,
                "state_by_status": state.get(r.id, {}),
            }
            for r in rows.values()
        ],
        "unregistered_project_rows": surv.unregistered_projects,
        "names": [
            {
                "table": n.table,
                "column": n.column,
                "name": n.name,
                "kind": n.kind,
                "canonical_id": n.canonical_id,
                "rows": n.count,
                "spellings": n.spellings,
                "examples": list(n.examples),
                **(
                    {"by_status": mem.get(n.name, {})}
                    if n.table == "memories" and n.kind in ("alias", "variant")
                    else {}
                ),
            }
            for n in surv.names
            if n.kind != "canonical"
        ],
        "targets": [t.label for t in surv.targets],
        "missing_targets": [{"target": m.label, "reason": m.reason} for m in surv.missing],
    }


def survey_counts(surv: Survey) -> dict[str, int]:
    def rows(kind: str) -> int:
        return sum(n.count for n in surv.names if n.kind == kind)

    return {
        "shadow_project_rows": sum(1 for r in surv.project_rows if r.role == "shadow"),
        "shadow_state_rows": sum(
            n
            for (pid, _), n in surv.state_by_status.items()
            if any(r.id == pid and r.role == "shadow" for r in surv.project_rows)
        ),
        "alias_keyed_rows": rows("alias"),
        "variant_spelled_rows": rows("variant"),
        "unregistered_rows": rows("unregistered"),
    }


def run_inspect(inputs: Inputs, progress: Progress) -> InspectOutcome:
    statements: list[str] = []
    with read_session(inputs) as s, traced(s.conn, statements.append):
        surv = survey(s.conn, s.registry, s.targets, s.missing, progress)
    # The trace also caught the introspection PRAGMAs; keep only what measures.
    statements = [
        q
        for q in statements
        if q.lstrip().upper().startswith("SELECT") and "sqlite_master" not in q
    ]
    payload = _envelope(
        "inspect", inputs, s.registry, None, survey_counts(surv), survey_payload(surv)
    )
    payload["registry_summary"] = registry_summary(s.registry)
    payload["sql"] = statements
    report: Path | None = None
    warning = None
    try:
        report = _publish(inputs, "inspect", payload, None)
    except Refused as exc:
        # inspect is a diagnosis: it still answers when it cannot keep a report
        warning = f"no inspect report written: {exc}"
    return InspectOutcome(surv, s.registry, statements, payload, report, warning)


# --------------------------------------------------------------------------
# plan
# --------------------------------------------------------------------------


def collision_dict(c: Collision) -> dict[str, Any]:
    return {
        "project": c.canonical_id,
        "category": c.category,
        "key": c.key,
        "resolved_winner": c.resolved_winner,
        "candidates": [
            {
                "id": x.id,
                "project_row_id": x.project_row_id,
                "project_name": x.project_name,
                "canonical": x.is_canonical,
                "status": x.status,
                "updated_at": x.updated_at,
                "value": x.value,
                "value_sha256": x.value_sha256,
            }
            for x in c.candidates
        ],
    }


def plan_details(plan: Plan, preview: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "applicable": not plan.blockers,
        "empty": plan.is_empty,
        "blockers": plan.blockers,
        "integrity_errors": plan.integrity_errors,
        "stale_resolutions": plan.stale_decisions,
        "groups": [
            {
                "canonical_id": g.canonical_id,
                "canonical_row": g.canonical_row.id if g.canonical_row else None,
                "canonical_row_name": g.canonical_row.name if g.canonical_row else None,
                "renamed_shadow": g.renamed_shadow.id if g.renamed_shadow else None,
                "shadows": [{"id": r.id, "name": r.name} for r in g.shadows],
                "target_row_id": g.target_row_id,
            }
            for g in plan.groups
        ],
        "collisions": [collision_dict(c) for c in plan.collisions],
        "state_rows": preview,
        "state_rows_total": sum(
            plan.counts.get(k, 0)
            for k in ("state_moved", "state_archived_duplicate", "state_archived_history")
        ),
        **survey_payload(plan.survey),
        "write_sql": write_statements(plan),
    }


@dataclass
class PlanOutcome:
    plan: Plan
    payload: dict[str, Any]
    report: Path
    companion: Path | None
    script: str


def load_resolutions(path: Path | None) -> list[Decision]:
    return load_decisions(path) if path is not None else []


def run_plan(
    inputs: Inputs, resolutions: Path | None, out: Path | None, progress: Progress
) -> PlanOutcome:
    decisions = load_resolutions(resolutions)
    if out is not None and not out.parent.is_dir():
        raise BadInput(
            f"--out {out}: directory {out.parent} does not exist",
            "create it first or choose another path",
        )
    if out is not None and (out.exists() or out.is_symlink()):
        raise Refused(
            f"{out} already exists; refusing to overwrite it",
            "move the old plan away or choose another --out path",
        )
    with read_session(inputs) as s:
        # inputs first: a bad registry or database is exit 2 whatever the report dir
        report_dir = out.parent if out is not None else ensure_report_dir(inputs.report_dir)
        plan = build_plan(s.conn, s.registry, s.targets, s.missing, decisions, progress)
        preview = []
        if plan.survey.has_state and plan.groups:
            preview = [_flat(r) for r in islice(iter_state_rows(s.conn), PREVIEW_ROWS)]
        progress("writing the plan report")
        companion = None
        if not plan.is_empty:
            comp_path, _ = unique_path(report_dir, "plan", ".rows.jsonl.gz")
            companion = write_companion(s.conn, plan, comp_path)
        script = apply_script(plan)
    payload = _envelope(
        "plan", inputs, s.registry, plan.fingerprint, plan.counts, plan_details(plan, preview)
    )
    payload["registry_summary"] = registry_summary(s.registry)
    payload["resolutions"] = str(resolutions) if resolutions else None
    payload["companion"] = companion.name if companion else None
    report = _publish(inputs, "plan", payload, out)
    return PlanOutcome(plan, payload, report, companion, script)


def _flat(rec: dict[str, Any]) -> dict[str, Any]:
    row = rec["row"]
    return {
        "outcome": rec["outcome"],
        "id": row.get("id"),
        "project": rec["canonical_id"],
        "from_project_row": row.get("project_id"),
        "to_project_row": rec["to_project_row"],
        "category": row.get("category"),
        "key": row.get("key"),
        "status": row.get("status"),
        "updated_at": row.get("updated_at"),
        "value": row.get("value"),
        "winner_id": rec["winner_id"],
    }


# --------------------------------------------------------------------------
# resolve
# --------------------------------------------------------------------------

Chooser = Callable[[Collision], str | None]


@dataclass
class ResolveOutcome:
    collisions: list[Collision]
    decisions: list[dict[str, Any]]
    undecided: list[Collision]
    payload: dict[str, Any]
    report: Path


def run_resolve(
    inputs: Inputs,
    keep: str | None,
    picks: Sequence[str],
    chooser: Chooser | None,
    out: Path | None,
    progress: Progress,
) -> ResolveOutcome:
    parsed = [parse_pick(p) for p in picks]
    with read_session(inputs) as s:
        if out is None:
            ensure_report_dir(inputs.report_dir)
        plan = build_plan(s.conn, s.registry, s.targets, s.missing, (), progress)
    collisions = plan.collisions
    chosen: dict[int, tuple[str, str]] = {}  # collision index -> (winner id, rule)
    for category, key, row_id in parsed:
        hits = [
            i
            for i, c in enumerate(collisions)
            if (c.category, c.key) == (category, key) and row_id in {x.id for x in c.candidates}
        ]
        if not hits:
            known = ", ".join(sorted({c.ref for c in collisions})) or "none"
            raise BadInput(
                f"--pick {category}/{key}={row_id}: no collision at {category}/{key} has a"
                f" candidate row {row_id}",
                f"current collisions: {known}",
            )
        for i in hits:
            chosen[i] = (row_id, "pick")
    for i, c in enumerate(collisions):
        if i in chosen:
            continue
        if keep is not None:
            winner = pick_by_rule(c, keep)
            if winner is not None:
                chosen[i] = (winner.id, keep)
        elif chooser is not None:
            answer = chooser(c)
            if answer is not None:
                chosen[i] = (answer, "interactive")
    decisions = []
    undecided = []
    for i, c in enumerate(collisions):
        if i not in chosen:
            undecided.append(c)
            continue
        winner_id, rule = chosen[i]
        winner = next(x for x in c.candidates if x.id == winner_id)
        decisions.append(decide(c, winner, rule))
    payload = _envelope(
        "resolve",
        inputs,
        s.registry,
        plan.fingerprint,
        {"collisions": len(collisions), "decided": len(decisions), "undecided": len(undecided)},
        {
            "decisions": decisions,
            "undecided": [collision_dict(c) for c in undecided],
            "collisions": [collision_dict(c) for c in collisions],
        },
    )
    report = _publish(inputs, "resolve", payload, out)
    return ResolveOutcome(collisions, decisions, undecided, payload, report)


# --------------------------------------------------------------------------
# apply
# --------------------------------------------------------------------------


@dataclass
class ApplyOutcome:
    result: ApplyResult | None
    payload: dict[str, Any]
    report: Path | None
    warning: str | None = None


@dataclass
class ApplyRequest:
    plan_file: Path | None = None
    resolutions: Path | None = None
    allow_empty: bool = False
    backup: bool = True
    busy_timeout: float = 30.0
    confirm: Callable[[Plan], bool] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def apply_payload(
    inputs: Inputs, registry: Registry, result: ApplyResult, request: ApplyRequest
) -> dict[str, Any]:
    plan = result.plan
    return _envelope(
        "apply",
        inputs,
        registry,
        plan.fingerprint,
        plan.counts,
        {
            "status": result.status,
            "error": result.error,
            "plan_file": str(request.plan_file) if request.plan_file else None,
            "resolutions": str(request.resolutions) if request.resolutions else None,
            "rows_before": result.before,
            "rows_after": result.after,
            "archived_state_rows": plan.counts["state_archived_duplicate"]
            + plan.counts["state_archived_history"],
            # file names only: companions and backups sit beside the report
            "backup": {
                "path": result.backup.name if result.backup else None,
                "bytes": result.backup_bytes,
            },
            "companion": result.companion.name if result.companion else None,
            "postconditions": result.checks,
            "timings_seconds": {k: round(v, 4) for k, v in result.timings.items()},
            "groups": plan_details(plan, [])["groups"],
        },
    )


def run_apply_command(inputs: Inputs, request: ApplyRequest, progress: Progress) -> ApplyOutcome:
    registry = load_registry(inputs.registry)
    decisions = load_resolutions(request.resolutions)
    fingerprint = None
    if request.plan_file is not None:
        fingerprint = load_report(request.plan_file, "plan").get("fingerprint")
    options = ApplyOptions(
        report_dir=inputs.report_dir,
        columns=list(inputs.columns),
        decisions=decisions,
        busy_timeout=request.busy_timeout,
        plan_fingerprint=fingerprint,
        allow_empty=request.allow_empty,
        backup=request.backup,
    )
    written: list[Path] = []

    def before_commit(pending: ApplyResult) -> None:
        # The report exists before COMMIT (status "committing"): a process
        # killed right after COMMIT still leaves verify a report to read. A
        # report that cannot be written stops the apply before COMMIT.
        payload = apply_payload(inputs, registry, pending, request)
        written.append(_publish(inputs, "apply", payload, None))

    options.before_commit = before_commit
    try:
        result = run_apply(inputs.db, registry, options, request.confirm, progress)
    except RolledBack as exc:
        payload = apply_payload(inputs, registry, exc.result, request)
        if written:  # the report written before COMMIT must not say "committing"
            payload["report_path"] = str(written[0])
            replace_json(written[0], payload)
        else:
            _publish(inputs, "apply", payload, None)
        raise
    except Refused as exc:
        # if the report dir itself is the problem, the error already says so
        with contextlib.suppress(Refused):
            _record_refusal(inputs, registry, request, exc)
        raise
    payload = apply_payload(inputs, registry, result, request)
    if not written:  # nothing to commit (--allow-empty)
        return ApplyOutcome(result, payload, _publish(inputs, "apply", payload, None))
    payload["report_path"] = str(written[0])
    try:
        replace_json(written[0], payload)
    except (OSError, Refused) as exc:
        # Committed, and the report written before COMMIT names the archive;
        # only its status still says "committing". Say so, do not fail.
        return ApplyOutcome(
            result,
            payload,
            written[0],
            f"apply COMMITTED, but {written[0]} could not be updated"
            f" ({exc}); it still says status 'committing'",
        )
    return ApplyOutcome(result, payload, written[0])


def _record_refusal(
    inputs: Inputs, registry: Registry, request: ApplyRequest, exc: Refused
) -> None:
    """Keep an audit trail of refusals too, when the report dir allows it."""
    try:
        ensure_report_dir(inputs.report_dir)
    except Refused:
        return
    payload = _envelope(
        "apply",
        inputs,
        registry,
        None,
        {},
        {
            "status": "refused",
            "error": exc.message,
            "hint": exc.hint,
            "plan_file": str(request.plan_file) if request.plan_file else None,
            "resolutions": str(request.resolutions) if request.resolutions else None,
        },
    )
    _publish(inputs, "apply", payload, None)


# --------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------


@dataclass
class VerifyOutcome:
    result: VerifyResult
    payload: dict[str, Any]
    report: Path | None


def run_verify_command(
    inputs: Inputs, apply_report: Path | None, backup: Path | None, progress: Progress
) -> VerifyOutcome:
    progress("verifying")
    with read_session(inputs) as s:
        ensure_report_dir(inputs.report_dir)
        result = run_verify(
            s.conn, s.registry, s.targets, s.missing, apply_report, backup, inputs.report_dir
        )
    counts = {"checks": len(result.checks), "failed": sum(1 for c in result.checks if not c.ok)}
    payload = _envelope(
        "verify",
        inputs,
        s.registry,
        None,
        counts,
        {
            "ok": result.ok,
            "apply_report": str(result.apply_report) if result.apply_report else None,
            "backup": str(backup) if backup else None,
            "checks": [c.as_dict() for c in result.checks],
        },
    )
    report = _publish(inputs, "verify", payload, None)
    return VerifyOutcome(result, payload, report)
