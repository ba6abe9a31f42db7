"""apply: migrate in one transaction, and keep a report of every attempt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atocore_identity.applier import (
    ApplyRequest,
    ApplyResult,
    read_plan_file,
    run_apply,
)
from atocore_identity.commands.base import Inputs, ReportTrail, report_envelope, write_payload
from atocore_identity.commands.plan import groups_payload, plan_summary
from atocore_identity.errors import EXIT_OK
from atocore_identity.plan_objects import Plan
from atocore_identity.registry import Registry, load_registry
from atocore_identity.render import Doc
from atocore_identity.resolutions import load_decisions


@dataclass
class ApplyOutcome:
    result: ApplyResult
    payload: dict[str, Any]
    report: Path
    warning: str | None = None
    exit_code: int = EXIT_OK


@dataclass(frozen=True)
class ApplyOptions:
    """apply's own options, as the CLI parsed them."""

    plan_file: Path | None = None
    resolutions: Path | None = None
    allow_empty: bool = False
    backup: bool = True


def _request(inputs: Inputs, options: ApplyOptions) -> ApplyRequest:
    decisions = load_decisions(options.resolutions) if options.resolutions else []
    fingerprint = None
    if options.plan_file is not None:
        fingerprint = read_plan_file(options.plan_file, options.resolutions)
    return ApplyRequest(
        report_dir=inputs.report_dir,
        busy_timeout=inputs.busy_timeout,
        columns=inputs.columns,
        decisions=tuple(decisions),
        plan_file=options.plan_file,
        plan_fingerprint=fingerprint,
        resolutions=options.resolutions,
        allow_empty=options.allow_empty,
        backup=options.backup,
    )


def run(
    inputs: Inputs, options: ApplyOptions, confirm: Callable[[Plan], bool] | None
) -> ApplyOutcome:
    registry = load_registry(inputs.registry)
    request = _request(inputs, options)

    def doc(result: ApplyResult) -> dict[str, Any]:
        return payload(inputs, registry, result, request)

    result, final, report, warning = ReportTrail(inputs, "apply").record(
        registry,
        lambda before, after: run_apply(
            inputs.db, registry, request, confirm, before, after, inputs.progress
        ),
        doc,
        {
            "plan_file": str(request.plan_file) if request.plan_file else None,
            "resolutions": str(request.resolutions) if request.resolutions else None,
        },
    )
    return ApplyOutcome(result, final, report, warning)


def payload(
    inputs: Inputs, registry: Registry, result: ApplyResult, request: ApplyRequest
) -> dict[str, Any]:
    plan = result.plan
    return report_envelope(
        "apply",
        inputs,
        registry,
        plan.fingerprint,
        plan.counts,
        {
            "status": result.status,
            "error": result.error,
            "note": result.note,
            "plan_file": str(request.plan_file) if request.plan_file else None,
            "resolutions": str(request.resolutions) if request.resolutions else None,
            "archived_state_rows": plan.counts["state_archived_duplicate"]
            + plan.counts["state_archived_history"],
            **write_payload(result),
            "groups": groups_payload(plan),
        },
    )


def view(o: ApplyOutcome) -> Doc:
    doc = Doc()
    r = o.result
    if r.status == "empty":
        doc.good(r.note or "nothing to migrate; no change made (--allow-empty)")
    else:
        plan_summary(doc, r.plan)
        doc.heading("Applied")
        for check in r.checks:
            (doc.good if check.ok else doc.bad)(f"{check.name}: {check.detail}")
        if r.backup:
            doc.text(f"backup: {r.backup} ({r.backup_bytes} bytes)")
        doc.text(f"archive: {r.companion}")
    doc.text(f"report: {o.report}")
    return doc
