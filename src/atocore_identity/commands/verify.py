"""verify: the postconditions as a checklist; exit 1 when any fails."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atocore_identity.commands.base import Inputs, publish_report, read_session, report_envelope
from atocore_identity.commands.inspect import discovery_payload
from atocore_identity.errors import EXIT_CHECK_FAILED, EXIT_OK
from atocore_identity.render import Doc
from atocore_identity.reports import ensure_report_dir
from atocore_identity.targets import resolve_ignored
from atocore_identity.verifier import VerifyResult, run_verify


@dataclass
class VerifyOutcome:
    result: VerifyResult
    payload: dict[str, Any]
    report: Path

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.result.ok else EXIT_CHECK_FAILED


def run(inputs: Inputs, report: Path | None, backup: Path | None) -> VerifyOutcome:
    inputs.progress("verifying")
    with read_session(inputs) as s:
        ignore = resolve_ignored(s.conn, inputs.ignore, s.targets)
        ensure_report_dir(inputs.report_dir)
        result = run_verify(
            s.conn,
            s.registry,
            s.targets,
            s.missing,
            report,
            backup,
            inputs.report_dir,
            discover=inputs.discover,
            ignore=ignore,
        )
    counts = {"checks": len(result.checks), "failed": sum(1 for c in result.checks if not c.ok)}
    payload = report_envelope(
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
            "skipped": result.skipped,
            **discovery_payload(result.discovery),
        },
    )
    return VerifyOutcome(result, payload, publish_report(inputs, "verify", payload))


def view(o: VerifyOutcome) -> Doc:
    doc = Doc()
    doc.heading("Verify")
    for c in o.result.checks:
        (doc.good if c.ok else doc.bad)(f"{c.name}: {c.detail}")
    for s in o.result.skipped:
        doc.text(f"not checked: {s}")
    doc.text("all checks pass" if o.result.ok else "some checks FAILED")
    doc.text(f"report: {o.report}")
    return doc
