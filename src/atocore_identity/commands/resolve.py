"""resolve: the operator decides each collision; the decisions go to a resolutions file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atocore_identity.commands.base import Inputs, publish_report, read_session, report_envelope
from atocore_identity.commands.plan import collision_table
from atocore_identity.errors import EXIT_OK
from atocore_identity.plan_objects import Collision
from atocore_identity.planner import build_plan
from atocore_identity.render import Doc
from atocore_identity.reports import ensure_report_dir
from atocore_identity.resolutions import Chooser, choose, parse_pick


@dataclass
class ResolveOutcome:
    collisions: list[Collision]
    decisions: list[dict[str, Any]]
    undecided: list[Collision]
    payload: dict[str, Any]
    report: Path
    exit_code: int = EXIT_OK


def run(
    inputs: Inputs,
    keep: str | None,
    picks: Sequence[str],
    chooser: Chooser | None,
    out: Path | None,
) -> ResolveOutcome:
    parsed = [parse_pick(p) for p in picks]
    with read_session(inputs) as s:
        if out is None:
            ensure_report_dir(inputs.report_dir)
        plan = build_plan(s.conn, s.registry, s.targets, s.missing, (), inputs.progress)
    decisions, undecided = choose(plan.collisions, keep, parsed, chooser)
    counts = {
        "collisions": len(plan.collisions),
        "decided": len(decisions),
        "undecided": len(undecided),
    }
    payload = report_envelope(
        "resolve",
        inputs,
        s.registry,
        plan.fingerprint,
        counts,
        {
            "decisions": decisions,
            "undecided": [c.as_dict() for c in undecided],
            "collisions": [c.as_dict() for c in plan.collisions],
        },
    )
    report = publish_report(inputs, "resolve", payload, out)
    return ResolveOutcome(plan.collisions, decisions, undecided, payload, report)


def view(o: ResolveOutcome) -> Doc:
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
