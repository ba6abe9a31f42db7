"""history: every run in the report dir, newest first, and what needs attention.

Read-only, and it writes no report of its own; ``--prune`` removes debris
(``prune.prune_plan`` says which), and only with ``--yes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atocore_identity import __version__, attention
from atocore_identity.artifacts import FileState
from atocore_identity.errors import EXIT_CHECK_FAILED, EXIT_OK
from atocore_identity.history import (
    PRUNE_AGE_MINUTES,
    QUICK_CHECK_BUDGET,
    DirFile,
    Flag,
    History,
    Run,
    read_history,
)
from atocore_identity.prune import PruneItem, prune, prune_plan
from atocore_identity.render import Doc

HISTORY_VERSION = 1
SHORT = 12  # characters of a sha256 or fingerprint shown in text


@dataclass
class HistoryOutcome:
    history: History
    pruned: list[PruneItem] | None  # None without --prune
    dry_run: bool
    older_than: int
    payload: dict[str, Any]

    @property
    def exit_code(self) -> int:
        failed = any(i.action == "failed" for i in self.pruned or [])
        return EXIT_CHECK_FAILED if failed else EXIT_OK


def run(
    report_dir: Path,
    *,
    prune_debris: bool = False,
    remove: bool = False,
    older_than: int = PRUNE_AGE_MINUTES,
    deep: bool = False,
) -> HistoryOutcome:
    h = read_history(report_dir, deep=deep, older_than=older_than)
    h.flags = attention.flags(h)
    items: list[PruneItem] | None = None
    if prune_debris:
        items = prune_plan(h)
        if remove:
            items = prune(h, items)
    o = HistoryOutcome(h, items, not remove, older_than, {})
    o.payload = payload(o)
    return o


# -- the JSON document (docs/schemas/history.schema.json) ----------------------------------


def _state(s: FileState | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {
        "file": s.name,
        "exists": s.exists,
        "condition": s.condition,
        "detail": s.detail,
        "bytes": s.bytes,
        "quick_check": s.quick_check,
    }


def _run(r: Run) -> dict[str, Any]:
    return {
        "file": r.file,
        "kind": r.kind,
        "report_version": r.report_version,
        "readable": r.readable,
        "created_at": r.created_at,
        "status": r.status,
        "database": r.database,
        "registry": {"path": r.registry_path, "sha256": r.registry_sha256},
        "fingerprint": r.fingerprint,
        "counts": r.counts,
        "headline": r.headline,
        "backup": _state(r.backup),
        "companion": _state(r.companion),
        "refers_to": [
            {
                "field": ref.field,
                "path": ref.path,
                "file": ref.file,
                "kind": ref.kind,
                "created_at": ref.created_at,
            }
            for ref in r.refers_to
        ],
        "referenced_by": r.referenced_by,
        "note": r.note,
    }


def _file(f: DirFile) -> dict[str, Any]:
    return {
        "file": f.name,
        "role": f.role,
        "named_by": f.named_by,
        "bytes": f.bytes,
        "age_minutes": round(f.age_minutes, 1),
        "condition": f.state.condition if f.state else None,
        "detail": f.state.detail if f.state else None,
        "note": f.note,
    }


def _flag(f: Flag) -> dict[str, Any]:
    return {
        "issue": f.issue,
        "severity": f.severity,
        "file": f.file,
        "message": f.message,
        "action": f.action,
    }


def payload(o: HistoryOutcome) -> dict[str, Any]:
    h = o.history
    severities = [f.severity for f in h.flags]
    debris = [f for f in h.files if f.role not in ("backup", "companion")]
    prune_doc = None
    if o.pruned is not None:
        prune_doc = {
            "dry_run": o.dry_run,
            "older_than_minutes": o.older_than,
            "items": [
                {"file": i.file, "action": i.action, "reason": i.reason, "detail": i.detail}
                for i in o.pruned
            ],
            "removed": sum(1 for i in o.pruned if i.action == "removed"),
            "failed": sum(1 for i in o.pruned if i.action == "failed"),
        }
    return {
        "history_version": HISTORY_VERSION,
        "tool": "atocore-identity",
        "tool_version": __version__,
        "scanned_at": h.scanned_at.isoformat().replace("+00:00", "Z"),
        "report_dir": str(h.report_dir),
        "quick_check_budget_bytes": None if h.deep else QUICK_CHECK_BUDGET,
        "counts": {
            "runs": len(h.runs),
            "attention": len(h.flags),
            "errors": severities.count("error"),
            "warnings": severities.count("warning"),
            "notices": severities.count("notice"),
            "debris": len(debris),
            "ignored": len(h.ignored),
        },
        "runs": [_run(r) for r in h.runs],
        "files": [_file(f) for f in h.files],
        "attention": [_flag(f) for f in h.flags],
        "ignored": h.ignored,
        "prune": prune_doc,
    }


# -- the view ------------------------------------------------------------------------------


def _time(created_at: str | None) -> str:
    if not created_at:
        return "-"
    return created_at.replace("T", " ")[:19]


def _short(value: str | None) -> str | None:
    return value[:SHORT] if value else None


def _files_cell(r: Run) -> str:
    parts = []
    for label, s in (
        ("backup", r.backup),
        ("archive" if r.kind == "apply" else "companion", r.companion),
    ):
        if s is not None:
            parts.append(f"{label} {s.condition}")
    if (
        r.kind == "apply"
        and r.readable
        and r.backup is None
        and r.status in ("applied", "committing")
    ):
        parts.append("no backup")
    return ", ".join(parts) or "-"


def _links_cell(r: Run, h: History) -> str:
    parts = []
    for ref in r.refers_to:
        if ref.field != "apply_report":
            continue
        if ref.file is None:
            parts.append(f"{ref.path} (not in the report dir)")
        else:
            parts.append(f"-> {ref.file} ({_time(ref.created_at)})")
    by_file = {x.file: x for x in h.runs}
    for name in r.referenced_by:
        other = by_file.get(name)
        if other is not None and any(
            ref.field == "apply_report" and ref.file == r.file for ref in other.refers_to
        ):
            parts.append(f"<- {name} ({other.status or '-'})")
    return "; ".join(parts) or "-"


def view(o: HistoryOutcome) -> Doc:
    h = o.history
    doc = Doc()
    doc.heading(f"History of {h.report_dir}: {len(h.runs)} runs, newest first")
    _runs_table(doc, h)
    if h.files:
        doc.heading("Backups, companions and debris")
        doc.table(
            ["file", "role", "named by", "bytes", "condition"],
            [
                [
                    f.name,
                    f.role,
                    ", ".join(f.named_by) or "-",
                    f.bytes,
                    f"{f.state.condition}: {f.state.detail}" if f.state else f.note or "-",
                ]
                for f in h.files
            ],
        )
    _attention_section(doc, h)
    if o.pruned is not None:
        _prune_section(doc, o.pruned, o.dry_run)
    if h.ignored:
        doc.text(f"not reports, ignored: {', '.join(h.ignored)}")
    doc.text(
        "history writes no report" + ("" if o.pruned and not o.dry_run else " and changed nothing")
    )
    return doc


def _runs_table(doc: Doc, h: History) -> None:
    """One row per run; a database or registry every run shares is said once, above."""
    readable = [r for r in h.runs if r.readable]
    databases = {r.database for r in readable}
    registries = {r.registry_sha256 for r in readable}
    same_db = len(databases) == 1 and len(readable) > 1
    same_reg = len(registries) == 1 and len(readable) > 1
    if same_db or same_reg:
        common = []
        if same_db:
            common.append(f"database {next(iter(databases))}")
        if same_reg:
            common.append(f"registry sha256 {_short(next(iter(registries))) or '-'}")
        doc.text("every run: " + "; ".join(common))
    headers = ["time", "kind", "status", "report", "counts"]
    if not same_db:
        headers.append("database")
    if not same_reg:
        headers.append("registry")
    headers += ["fingerprint", "files", "refers to"]
    rows = []
    for r in h.runs:
        row: list[Any] = [_time(r.created_at), r.kind, r.status, r.file, r.note or r.headline]
        if not same_db:
            row.append(r.database)
        if not same_reg:
            row.append(_short(r.registry_sha256))
        row += [_short(r.fingerprint), _files_cell(r), _links_cell(r, h)]
        rows.append(row)
    if rows:
        doc.table(headers, rows)
    else:
        doc.text("no reports in this directory")


def _attention_section(doc: Doc, h: History) -> None:
    doc.heading(f"Needs attention ({len(h.flags)})")
    if not h.flags:
        doc.good("nothing needs attention")
    for flag in h.flags:
        line = f"{flag.file}: {flag.message}. To do: {flag.action}"
        if flag.severity == "error":
            doc.bad(line)
        else:
            doc.text(f"{flag.severity}: {line}")


def _prune_section(doc: Doc, pruned: list[PruneItem], dry_run: bool) -> None:
    title = "Prune: dry run, nothing removed (add --yes)" if dry_run else "Prune"
    doc.heading(title)
    if not pruned:
        doc.good("no debris")
    verbs = {"remove": "would remove", "keep": "keep"}
    doc.table(
        ["file", "action", "why"],
        [
            [
                i.file,
                verbs.get(i.action, i.action),
                i.reason + (f" ({i.detail})" if i.detail else ""),
            ]
            for i in pruned
        ],
    )
