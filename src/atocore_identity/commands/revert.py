"""revert: undo an apply from its report and archive, keeping what was written since."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atocore_identity.commands.base import Inputs, ReportTrail, report_envelope, write_payload
from atocore_identity.errors import EXIT_OK
from atocore_identity.registry import Registry, load_registry
from atocore_identity.render import Doc
from atocore_identity.reverter import (
    Inverse,
    RevertRequest,
    RevertResult,
    dry_run,
    revert_script,
    run_revert,
)

KINDS = {
    "delete": "shadow projects rows restored",
    "rename": "renamed shadows given their old name",
    "moves": "state rows moved back to their shadow",
    "archived": "archived state rows restored",
    "rekey": "rekeyed rows given their old spelling",
    "supersede": "superseded memories made active again",
}


@dataclass
class RevertOutcome:
    result: RevertResult
    payload: dict[str, Any]
    report: Path | None  # None for --dry-run
    warning: str | None = None
    script: str = ""  # the SQL revert runs (--format sql), for a dry run
    exit_code: int = EXIT_OK


@dataclass(frozen=True)
class RevertOptions:
    """revert's own options, as the CLI parsed them."""

    report: Path
    projects: tuple[str, ...] = ()
    skip_changed: bool = False
    backup: bool = True
    dry_run: bool = False  # --dry-run, or --format sql: print, change nothing


def request_of(inputs: Inputs, options: RevertOptions) -> RevertRequest:
    return RevertRequest(
        report=options.report,
        report_dir=inputs.report_dir,
        busy_timeout=inputs.busy_timeout,
        projects=options.projects,
        skip_changed=options.skip_changed,
        backup=options.backup,
    )


def run(
    inputs: Inputs,
    options: RevertOptions,
    confirm: Callable[[Inverse], bool] | None,
) -> RevertOutcome:
    registry = load_registry(inputs.registry)
    request = request_of(inputs, options)
    dry = options.dry_run

    def doc(result: RevertResult) -> dict[str, Any]:
        return payload(inputs, registry, result, request)

    if dry:
        result = dry_run(inputs.db, registry, request, inputs.progress)
        script = revert_script(result.inverse, request.report)
        return RevertOutcome(result, doc(result), None, script=script)
    result, final, report, warning = ReportTrail(inputs, "revert").record(
        registry,
        lambda before, after: run_revert(
            inputs.db, registry, request, confirm, before, after, inputs.progress
        ),
        doc,
        {"apply_report": str(request.report), "projects": list(request.projects)},
    )
    return RevertOutcome(result, final, report, warning)


def payload(
    inputs: Inputs, registry: Registry, result: RevertResult, request: RevertRequest
) -> dict[str, Any]:
    inv = result.inverse
    counts = {
        "to_revert": inv.counts.get("left", 0),
        "already_reverted": inv.counts.get("before", 0),
        "changed_since": inv.counts.get("changed", 0),
        "conflicts": inv.counts.get("conflict", 0),
        "projects_restored": inv.restored["projects"],
        "state_restored": inv.restored["project_state"],
    }
    return report_envelope(
        "revert",
        inputs,
        registry,
        None,
        counts,
        {
            "status": result.status,
            "error": result.error,
            "apply_report": str(request.report),
            "projects": list(request.projects),
            "skip_changed": request.skip_changed,
            "by_kind": inv.by_kind,
            "listed": inv.listed,
            "aliases_still_mapped": inv.aliases,
            **write_payload(result),
        },
    )


def summary(doc: Doc, inv: Inverse) -> None:
    doc.heading("Revert")
    doc.table(
        ["what", "to revert", "already reverted", "changed since", "conflicts"],
        [
            [
                label,
                inv.by_kind.get(kind, {}).get("left", 0),
                inv.by_kind.get(kind, {}).get("before", 0),
                inv.by_kind.get(kind, {}).get("changed", 0),
                inv.by_kind.get(kind, {}).get("conflict", 0),
            ]
            for kind, label in KINDS.items()
            if kind in inv.by_kind
        ],
    )


def confirm_text(inv: Inverse) -> str:
    return (
        f"About to revert {inv.to_revert} row(s) the apply changed"
        f" ({inv.counts.get('changed', 0)} changed since will be left as they are)."
    )


def view(o: RevertOutcome) -> Doc:
    doc = Doc()
    r = o.result
    summary(doc, r.inverse)
    if r.inverse.listed:
        doc.heading("Changed since the apply or in conflict (never touched)")
        doc.table(
            ["what", "table", "row", "state", "why"],
            [
                [x["kind"], x["table"], x["key"], x["state"], x["why"] or "its value changed"]
                for x in r.inverse.listed
            ],
        )
    if r.status == "dry-run":
        doc.text("dry run: nothing was changed")
    elif r.status == "empty":
        doc.good("nothing to revert: every row is as before the apply")
    else:
        for check in r.checks:
            (doc.good if check.ok else doc.bad)(f"{check.name}: {check.detail}")
        if r.backup:
            doc.text(f"backup: {r.backup} ({r.backup_bytes} bytes)")
        doc.text(f"record: {r.companion}")
    if r.inverse.aliases and r.status != "empty":
        doc.bad(
            "the registry still maps "
            + ", ".join(repr(a) for a in r.inverse.aliases[:5])
            + ": `plan` will propose the same migration again; fix the registry first"
            " (docs/runbook.md, Undo)"
        )
    if o.report:
        doc.text(f"report: {o.report}")
    return doc
