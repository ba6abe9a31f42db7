"""apply: migrate in one transaction, and keep a report of every attempt."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atocore_identity.applier import (
    ApplyRequest,
    ApplyResult,
    RolledBack,
    read_plan_file,
    run_apply,
)
from atocore_identity.commands.base import Inputs, publish_report, report_envelope
from atocore_identity.commands.plan import groups_payload, plan_summary
from atocore_identity.errors import EXIT_OK, Interrupted, Refused
from atocore_identity.plan_objects import Plan
from atocore_identity.registry import Registry, load_registry
from atocore_identity.render import Doc
from atocore_identity.reports import ensure_report_dir, replace_json
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
    written: list[Path] = []

    def before_commit(pending: ApplyResult) -> None:
        # The report exists before COMMIT (status "committing"): a process
        # killed right after COMMIT still leaves verify a report to read. A
        # report that cannot be written stops the apply before COMMIT.
        written.append(publish_report(inputs, "apply", payload(inputs, registry, pending, request)))

    warnings: list[str] = []

    def after_commit(applied: ApplyResult) -> None:
        doc = payload(inputs, registry, applied, request)
        doc["report_path"] = str(written[0])
        try:
            replace_json(written[0], doc)
        except (OSError, Refused) as exc:
            # Committed, and the report written before COMMIT names the archive;
            # only its status still says "committing". Say so, do not fail.
            warnings.append(
                f"apply COMMITTED, but {written[0]} could not be updated"
                f" ({exc}); it still says status 'committing'"
            )

    try:
        result = run_apply(
            inputs.db, registry, request, confirm, before_commit, after_commit, inputs.progress
        )
    except RolledBack as exc:
        doc = payload(inputs, registry, exc.result, request)
        if written:  # the report written before COMMIT must not say "committing"
            doc["report_path"] = str(written[0])
            replace_json(written[0], doc)
        else:
            publish_report(inputs, "apply", doc)
        raise
    except (Refused, Interrupted, KeyboardInterrupt) as exc:
        # if the report dir itself is the problem, the error already says so
        with contextlib.suppress(Refused, OSError):
            _record_attempt(inputs, registry, request, exc)
        raise
    doc = payload(inputs, registry, result, request)
    if not written:  # nothing to commit: an empty plan
        return ApplyOutcome(result, doc, publish_report(inputs, "apply", doc))
    doc["report_path"] = str(written[0])
    return ApplyOutcome(result, doc, written[0], "; ".join(warnings) or None)


def _record_attempt(
    inputs: Inputs, registry: Registry, request: ApplyRequest, exc: BaseException
) -> None:
    """Keep an audit trail of refusals and interruptions, named so that no
    `apply-*.json` glob mistakes them for an apply."""
    ensure_report_dir(inputs.report_dir)
    refused = isinstance(exc, Refused)
    status = "refused" if refused else "interrupted"
    details: dict[str, Any] = {
        "status": status,
        "error": exc.message if isinstance(exc, Refused) else "interrupted by a signal",
        "hint": exc.hint if isinstance(exc, Refused) else None,
        "plan_file": str(request.plan_file) if request.plan_file else None,
        "resolutions": str(request.resolutions) if request.resolutions else None,
    }
    doc = report_envelope("apply", inputs, registry, None, {}, details)
    publish_report(inputs, f"{status}-apply", doc)


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
            "companion_sha256": result.companion_sha256,
            "postconditions": [c.as_dict() for c in result.checks],
            "timings_seconds": {k: round(v, 4) for k, v in result.timings.items()},
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
