"""plan: compute the migration, print it, write a plan report and its companion."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from atocore_identity.commands.base import (
    Inputs,
    publish_report,
    read_session,
    registry_summary,
    report_envelope,
)
from atocore_identity.commands.inspect import survey_payload
from atocore_identity.companion import write_plan_records
from atocore_identity.errors import EXIT_CHANGES_PENDING, EXIT_OK, EXIT_REFUSED, BadInput, Refused
from atocore_identity.plan_objects import Collision, Decision, Plan
from atocore_identity.planner import build_plan
from atocore_identity.render import Doc
from atocore_identity.reports import ensure_report_dir, file_sha256, unique_path
from atocore_identity.resolutions import load_decisions
from atocore_identity.statements import apply_script, iter_state_rows, write_statements
from atocore_identity.targets import resolve_ignored

PREVIEW_ROWS = 200


@dataclass
class PlanOutcome:
    plan: Plan
    preview: list[dict[str, Any]]  # the first state rows moved or archived
    payload: dict[str, Any]
    report: Path
    companion: Path | None
    script: str
    detailed_exitcode: bool = False

    @property
    def exit_code(self) -> int:
        """0 unless --detailed-exitcode: then 0 nothing to do, 4 pending, 3 apply would refuse."""
        if not self.detailed_exitcode:
            return EXIT_OK
        if self.plan.blockers:
            return EXIT_REFUSED
        return EXIT_OK if self.plan.is_empty else EXIT_CHANGES_PENDING


def load_resolutions(path: Path | None) -> list[Decision]:
    return load_decisions(path) if path is not None else []


def _check_out(out: Path | None) -> None:
    if out is None:
        return
    if not out.parent.is_dir():
        raise BadInput(
            f"--out {out}: directory {out.parent} does not exist",
            "create it first or choose another path",
        )
    if out.exists() or out.is_symlink():
        raise Refused(
            f"{out} already exists; refusing to overwrite it",
            "move the old plan away or choose another --out path",
        )


def run(
    inputs: Inputs,
    resolutions: Path | None,
    out: Path | None,
    detailed_exitcode: bool = False,
) -> PlanOutcome:
    decisions = load_resolutions(resolutions)
    _check_out(out)
    written: list[Path] = []  # the companion, once written
    try:
        with read_session(inputs) as s:
            # inputs first: a bad registry or database is exit 2 whatever the report dir
            ignore = resolve_ignored(s.conn, inputs.ignore, s.targets)
            report_dir = out.parent if out is not None else ensure_report_dir(inputs.report_dir)

            def write_companion(decided: Plan) -> None:
                # while discovery's worker still reads: the companion needs only the decisions
                if not decided.is_empty:
                    inputs.progress("writing the plan's row detail")
                    comp_path, _ = unique_path(report_dir, "plan", ".rows.jsonl.gz")
                    written.append(write_plan_records(s.conn, decided, comp_path))

            plan = build_plan(
                s.conn,
                s.registry,
                s.targets,
                s.missing,
                decisions,
                inputs.progress,
                discover=inputs.discover,
                ignore=ignore,
                meanwhile=write_companion,
                beside=report_dir,
            )
            preview: list[dict[str, Any]] = []
            if plan.survey.has_state and plan.groups:
                preview = [_flat(r) for r in islice(iter_state_rows(s.conn), PREVIEW_ROWS)]
            inputs.progress("writing the plan report")
            companion = written[0] if written else None
            script = apply_script(plan)
        payload = report_envelope(
            "plan", inputs, s.registry, plan.fingerprint, plan.counts, plan_details(plan, preview)
        )
        payload["registry_summary"] = registry_summary(s.registry)
        payload["resolutions"] = str(resolutions) if resolutions else None
        # apply --plan checks it is given the same resolutions the plan was made with
        payload["resolutions_sha256"] = file_sha256(resolutions) if resolutions else None
        payload["companion"] = companion.name if companion else None
        report = publish_report(inputs, "plan", payload, out)
    except BaseException:
        # a companion that no report names is debris: it goes with the failed plan
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return PlanOutcome(plan, preview, payload, report, companion, script, detailed_exitcode)


# -- payload -------------------------------------------------------------------


def groups_payload(plan: Plan) -> list[dict[str, Any]]:
    """The groups as plan and apply reports record them."""
    return [
        {
            "canonical_id": g.canonical_id,
            "canonical_row": g.canonical_row.id if g.canonical_row else None,
            "canonical_row_name": g.canonical_row.name if g.canonical_row else None,
            "renamed_shadow": g.renamed_shadow.id if g.renamed_shadow else None,
            "shadows": [{"id": r.id, "name": r.name} for r in g.shadows],
            "target_row_id": g.target_row_id,
        }
        for g in plan.groups
    ]


def plan_details(plan: Plan, preview: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "applicable": not plan.blockers,
        "empty": plan.is_empty,
        "blockers": plan.blockers,
        "warnings": plan.warnings,
        "integrity_errors": plan.integrity_errors,
        "stale_resolutions": plan.stale_decisions,
        "groups": groups_payload(plan),
        "collisions": [c.as_dict() for c in plan.collisions],
        "state_rows": preview,
        "state_rows_total": state_rows_total(plan),
        **survey_payload(plan.survey),
        "write_sql": write_statements(plan),
    }


def state_rows_total(plan: Plan) -> int:
    return sum(
        plan.counts.get(k, 0)
        for k in ("state_moved", "state_archived_duplicate", "state_archived_history")
    )


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


# -- view ----------------------------------------------------------------------


def collision_table(doc: Doc, c: Collision, numbered: bool = False) -> None:
    """The candidates of one collision, side by side (plan, resolve, prompts)."""
    headers = ["row", "project row", "side", "status", "updated_at", "value", ""]
    rows: list[list[Any]] = [
        [
            x.id,
            x.project_name,
            "canonical" if x.is_canonical else "shadow",
            x.status,
            x.updated_at,
            x.value,
            "<- winner" if c.resolved_winner == x.id else "",
        ]
        for x in c.candidates
    ]
    if numbered:
        headers = ["#", *headers]
        rows = [[i + 1, *r] for i, r in enumerate(rows)]
    doc.table(headers, rows)


def plan_summary(doc: Doc, plan: Plan) -> None:
    c = plan.counts
    doc.heading("Plan")
    doc.table(
        ["what", "rows"],
        [
            ["shadow project rows deleted", c["shadow_rows_deleted"]],
            ["shadow rows renamed into the canonical row", c["shadow_rows_renamed"]],
            ["state rows moved to the canonical row", c["state_moved"]],
            ["state rows archived as duplicates", c["state_archived_duplicate"]],
            ["state rows archived as history", c["state_archived_history"]],
            ["state rows in unresolved collisions", c.get("state_in_collision", 0)],
            ["memories rekeyed", c["memories_rekeyed"]],
            ["memories superseded as duplicates", c["memories_superseded"]],
            ["interactions rekeyed", c["interactions_rekeyed"]],
            ["rows rekeyed in extra columns", c["extra_rekeyed"]],
        ],
    )


def confirm_text(plan: Plan) -> str:
    c = plan.counts
    return (
        f"About to migrate: {c['shadow_rows_deleted']} shadow rows deleted, "
        f"{c['state_moved']} state rows moved, "
        f"{c['state_archived_duplicate'] + c['state_archived_history']} archived, "
        f"{c['memories_rekeyed']} memories rekeyed ({c['memories_superseded']} superseded), "
        f"{c['interactions_rekeyed']} interactions and {c['extra_rekeyed']} other rows rekeyed."
    )


def _groups_table(doc: Doc, plan: Plan) -> None:
    doc.heading("Projects")
    doc.table(
        ["canonical id", "canonical row", "shadows", "action"],
        [
            [
                g.canonical_id,
                f"{g.canonical_row.name} ({g.canonical_row.id})" if g.canonical_row else "-",
                ", ".join(f"{s.name!r} ({s.id})" for s in g.shadows),
                f"rename {g.renamed_shadow.id} into it, delete the rest"
                if g.renamed_shadow
                else "move state, delete shadows",
            ]
            for g in plan.groups
        ],
    )


def _preview_table(doc: Doc, o: PlanOutcome) -> None:
    doc.heading("State rows moved or archived")
    doc.table(
        ["outcome", "row", "category/key", "status", "updated_at", "value", "from -> to", "winner"],
        [
            [
                r["outcome"],
                r["id"],
                f"{r['category']}/{r['key']}",
                r["status"],
                r["updated_at"],
                r["value"],
                f"{r['from_project_row']} -> {r['to_project_row']}"
                if r["outcome"] == "moves"
                else "archived",
                r["winner_id"],
            ]
            for r in o.preview
        ],
    )
    total = state_rows_total(o.plan)
    if total > len(o.preview):
        doc.text(f"... and {total - len(o.preview)} more in {o.companion}")


def verdict(doc: Doc, plan: Plan) -> None:
    doc.heading("Verdict")
    if plan.blockers:
        for b in plan.blockers:
            doc.bad(b)
        doc.text("apply would refuse (exit 3) until these are fixed.")
    elif plan.is_empty and plan.warnings:
        doc.good("nothing to migrate in the project-keyed columns read")
    elif plan.is_empty:
        doc.good("nothing to migrate: the database is clean for this registry")
    else:
        doc.good("applicable: run `atocore-identity apply`")
    for w in plan.warnings:
        doc.text(f"warning: {w}")
    if plan.survey.discovery is None:
        doc.text(
            "warning: discovery skipped (--no-discover): columns nobody configured"
            " were not searched for alias-keyed values"
        )


def view(o: PlanOutcome) -> Doc:
    doc = Doc()
    plan = o.plan
    plan_summary(doc, plan)
    if plan.groups:
        _groups_table(doc, plan)
    if plan.collisions:
        doc.heading(f"Collisions ({len(plan.unresolved)} unresolved)")
        for c in plan.collisions:
            doc.text(f"{c.canonical_id}  {c.ref}")
            collision_table(doc, c)
    if o.preview:
        _preview_table(doc, o)
    verdict(doc, plan)
    doc.text(f"fingerprint: {plan.fingerprint}")
    doc.text(f"report: {o.report}")
    return doc
