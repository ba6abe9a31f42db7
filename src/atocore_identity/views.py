"""What each command shows: outcomes turned into ``render.Doc`` blocks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from atocore_identity.commands import (
    ApplyOutcome,
    InspectOutcome,
    PlanOutcome,
    ResolveOutcome,
    VerifyOutcome,
)
from atocore_identity.planner import Collision, Plan, Survey
from atocore_identity.registry import fold
from atocore_identity.render import Doc

STATUSES = ("active", "superseded", "invalid", "candidate")


def _by_status(counts: dict[str, int]) -> str:
    if not counts:
        return "0"
    parts = [f"{counts[s]} {s}" for s in STATUSES if counts.get(s)]
    parts += [f"{n} {s}" for s, n in sorted(counts.items()) if s not in STATUSES]
    return ", ".join(parts)


def _names_table(doc: Doc, surv: Survey) -> None:
    """Per alias (folded) or variant: where it appears, how much, in which spellings."""
    per: dict[tuple[str, str], dict[str, Any]] = {}

    def slot(canonical: str, name: str, kind: str) -> dict[str, Any]:
        key = (canonical, name)
        if key not in per:
            per[key] = {
                "kind": kind,
                "shadow": 0,
                "state": {},
                "memories": {},
                "interactions": 0,
                "extra": 0,
                "spellings": [],
                "more": 0,
            }
        return per[key]

    def spelled(s: dict[str, Any], examples: Sequence[str], total: int) -> None:
        new = [e for e in examples if e not in s["spellings"]]
        s["spellings"] += new
        s["more"] += max(0, total - len(examples))

    for r in surv.project_rows:
        if r.role == "shadow":
            s = slot(r.canonical_id, fold(r.name), "alias")
            s["shadow"] += 1
            spelled(s, [r.name], 1)
            for (pid, status), count in surv.state_by_status.items():
                if pid == r.id:
                    s["state"][status] = s["state"].get(status, 0) + count
    for n in surv.names:
        if n.kind not in ("alias", "variant") or n.canonical_id is None:
            continue
        s = slot(n.canonical_id, n.name, n.kind)
        spelled(s, n.examples, n.spellings)
        if n.table == "memories":
            s["memories"] = {
                st: c for (name, st), c in surv.memories_by_status.items() if name == n.name
            } or {"?": n.count}
        elif n.table == "interactions":
            s["interactions"] += n.count
        else:
            s["extra"] += n.count
    rows = []
    for canonical, name in sorted(per):
        s = per[(canonical, name)]
        shown = ", ".join(repr(e) for e in s["spellings"][:4])
        extra = len(s["spellings"]) - 4 + s["more"]
        if extra > 0:
            shown += f" (+{extra} more)"
        rows.append(
            [
                name,
                s["kind"],
                canonical,
                shown,
                s["shadow"],
                _by_status(s["state"]),
                _by_status(s["memories"]),
                s["interactions"],
                s["extra"],
            ]
        )
    doc.heading("Alias-keyed and variant-spelled names")
    if rows:
        doc.table(
            [
                "name",
                "kind",
                "canonical id",
                "spellings",
                "shadow rows",
                "state rows",
                "memories",
                "interactions",
                "extra columns",
            ],
            rows,
        )
    else:
        doc.good("none: every registered name in the data is canonical")


def inspect_doc(o: InspectOutcome) -> Doc:
    doc = Doc()
    surv = o.survey
    doc.heading("Registry")
    doc.text(
        f"{len(o.registry.projects)} projects, {len(o.registry.alias_to_id)} aliases"
        f" ({o.registry.path})"
    )
    _names_table(doc, surv)
    canon = [r for r in surv.project_rows if r.role == "canonical"]
    variants = [r for r in canon if r.name != r.canonical_id]
    if variants:
        doc.heading("Canonical rows spelled differently (kept, never shadows)")
        doc.table(
            ["project row", "name", "canonical id"],
            [[r.id, r.name, r.canonical_id] for r in variants],
        )
    unregistered = [n for n in surv.names if n.kind == "unregistered"]
    doc.heading("Unregistered names (reported, never touched)")
    if unregistered or surv.unregistered_projects:
        doc.table(
            ["table.column", "name", "rows"],
            [
                [f"{n.table}.{n.column}", ", ".join(repr(e) for e in n.examples), n.count]
                for n in unregistered
            ],
        )
        doc.text(f"{surv.unregistered_projects} unregistered projects row(s)")
    else:
        doc.text("none")
    if surv.missing:
        doc.heading("Missing project-keyed columns")
        doc.table(["column", "reason"], [[m.label, m.reason] for m in surv.missing])
    if o.report:
        doc.text(f"\nreport: {o.report}")
    return doc


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


def plan_doc(o: PlanOutcome) -> Doc:
    doc = Doc()
    plan = o.plan
    plan_summary(doc, plan)
    if plan.groups:
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
    if plan.collisions:
        doc.heading(f"Collisions ({len(plan.unresolved)} unresolved)")
        for c in plan.collisions:
            doc.text(f"{c.canonical_id}  {c.ref}")
            collision_table(doc, c)
    preview = o.payload.get("state_rows", [])
    total = o.payload.get("state_rows_total", 0)
    if preview:
        doc.heading("State rows moved or archived")
        doc.table(
            [
                "outcome",
                "row",
                "category/key",
                "status",
                "updated_at",
                "value",
                "from -> to",
                "winner",
            ],
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
                for r in preview
            ],
        )
        if total > len(preview):
            doc.text(f"... and {total - len(preview)} more in {o.companion}")
    _verdict(doc, plan)
    doc.text(f"fingerprint: {plan.fingerprint}")
    doc.text(f"report: {o.report}")
    return doc


def _verdict(doc: Doc, plan: Plan) -> None:
    doc.heading("Verdict")
    if plan.blockers:
        for b in plan.blockers:
            doc.bad(b)
        doc.text("apply would refuse (exit 3) until these are fixed.")
    elif plan.is_empty:
        doc.good("nothing to migrate: the database is clean for this registry")
    else:
        doc.good("applicable: run `atocore-identity apply`")


def resolve_doc(o: ResolveOutcome) -> Doc:
    doc = Doc()
    doc.heading(f"Collisions: {len(o.collisions)}")
    if not o.collisions:
        doc.good("no collisions: nothing to resolve")
    for d in o.decisions:
        doc.good(f"{d['project']} {d['category']}/{d['key']}: keep {d['winner_id']} ({d['rule']})")
    for c in o.undecided:
        doc.bad(f"{c.canonical_id} {c.ref}: undecided; apply will refuse until it is decided")
        collision_table(doc, c)
    doc.text(f"resolutions: {o.report}")
    return doc


def apply_doc(o: ApplyOutcome) -> Doc:
    doc = Doc()
    r = o.result
    if r is None:
        return doc
    if r.status == "empty":
        doc.good("nothing to migrate; no change made (--allow-empty)")
    else:
        plan_summary(doc, r.plan)
        doc.heading("Applied")
        for check in r.checks:
            (doc.good if check["ok"] else doc.bad)(f"{check['check']}: {check['detail']}")
        if r.backup:
            doc.text(f"backup: {r.backup} ({r.backup_bytes} bytes)")
        doc.text(f"archive: {r.companion}")
    doc.text(f"report: {o.report}")
    return doc


def verify_doc(o: VerifyOutcome) -> Doc:
    doc = Doc()
    doc.heading("Verify")
    for c in o.result.checks:
        (doc.good if c.ok else doc.bad)(f"{c.name}: {c.detail}")
    doc.text("all checks pass" if o.result.ok else "some checks FAILED")
    if o.report:
        doc.text(f"report: {o.report}")
    return doc


def confirm_text(plan: Plan) -> str:
    c = plan.counts
    return (
        f"About to migrate: {c['shadow_rows_deleted']} shadow rows deleted, "
        f"{c['state_moved']} state rows moved, "
        f"{c['state_archived_duplicate'] + c['state_archived_history']} archived, "
        f"{c['memories_rekeyed']} memories rekeyed ({c['memories_superseded']} superseded), "
        f"{c['interactions_rekeyed']} interactions and {c['extra_rekeyed']} other rows rekeyed."
    )
