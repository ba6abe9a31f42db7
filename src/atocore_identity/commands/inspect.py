"""inspect: the blast radius, read-only, with the SQL it ran."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atocore_identity.commands.base import (
    Inputs,
    publish_report,
    read_session,
    registry_summary,
    report_envelope,
)
from atocore_identity.database import traced
from atocore_identity.discovery import discovering_shared
from atocore_identity.errors import EXIT_OK, Refused
from atocore_identity.plan_objects import Discovery, NameCount, Survey
from atocore_identity.registry import Registry, fold
from atocore_identity.render import Doc
from atocore_identity.survey import SAMPLE_ROWS, survey
from atocore_identity.targets import resolve_ignored

STATUSES = ("active", "superseded", "invalid", "candidate")


@dataclass
class InspectOutcome:
    survey: Survey
    registry: Registry
    statements: list[str]
    payload: dict[str, Any]
    report: Path | None
    warning: str | None = None
    exit_code: int = EXIT_OK


def run(inputs: Inputs) -> InspectOutcome:
    statements: list[str] = []
    with read_session(inputs) as s:
        ignore = resolve_ignored(s.conn, inputs.ignore, s.targets)
        with (
            traced(s.conn, statements.append),
            discovering_shared(s.conn, s.registry, s.targets, ignore, workers=2, trace=True)
            if inputs.discover
            else nullcontext() as found,
        ):
            # discovery reads in two worker processes while the survey runs here
            surv = survey(s.conn, s.registry, s.targets, s.missing, inputs.progress)
            if found is not None:
                inputs.progress("discovering names in unconfigured columns")
                surv.discovery, theirs = found()
                statements += theirs
    # The trace also caught the introspection PRAGMAs; keep only what measures.
    statements = [
        q
        for q in statements
        if q.lstrip().upper().startswith("SELECT") and "sqlite_master" not in q
    ]
    payload = report_envelope(
        "inspect", inputs, s.registry, None, survey_counts(surv), survey_payload(surv)
    )
    payload["registry_summary"] = registry_summary(s.registry)
    payload["sql"] = statements
    report: Path | None = None
    warning = None
    try:
        report = publish_report(inputs, "inspect", payload)
    except Refused as exc:
        # inspect is a diagnosis: it still answers when it cannot keep a report
        warning = f"no inspect report written: {exc}"
    return InspectOutcome(surv, s.registry, statements, payload, report, warning)


# -- payload -------------------------------------------------------------------


def survey_payload(surv: Survey) -> dict[str, Any]:
    """The survey's part of inspect and plan reports."""
    state: dict[str, dict[str, int]] = {}
    for (pid, status), n in surv.state_by_status.items():
        state.setdefault(pid, {})[status] = n
    mem: dict[str, dict[str, int]] = {}
    for (name, status), n in surv.memories_by_status.items():
        mem.setdefault(name, {})[status] = n
    buckets = {(t.table, t.column): t.bucket for t in surv.targets}
    return {
        "project_rows": [
            {
                "id": r.id,
                "name": r.name,
                "canonical_id": r.canonical_id,
                "role": r.role,
                "state_by_status": state.get(r.id, {}),
            }
            for r in surv.project_rows
        ],
        "unregistered_project_rows": surv.unregistered_projects,
        "names": [
            {
                "table": n.table,
                "column": n.column,
                **name_fields(n),
                **(
                    {"by_status": mem.get(n.name, {})}
                    if buckets.get((n.table, n.column)) == "memories" and n.moves
                    else {}
                ),
            }
            for n in surv.names
            if n.kind != "canonical"
        ],
        "targets": [t.label for t in surv.targets],
        "missing_targets": [{"target": m.label, "reason": m.reason} for m in surv.missing],
        **discovery_payload(surv.discovery),
    }


def name_fields(n: NameCount) -> dict[str, Any]:
    """One name as the reports show it, in a configured or a discovered column."""
    return {
        "name": n.name,
        "kind": n.kind,
        "canonical_id": n.canonical_id,
        "rows": n.count,
        "spellings": n.spellings,
        "examples": list(n.examples),
    }


def discovery_payload(discovery: Discovery | None) -> dict[str, Any]:
    """``discovered`` (the flagged columns) and ``discovery`` (what was read)."""
    if discovery is None:
        return {
            "discovered": [],
            "discovery": {
                "ran": False,
                "columns_read": [],
                "ignored": [],
                "sampled": [],
                "sample_rows": SAMPLE_ROWS,
                "length_window": None,
            },
        }
    return {
        "discovered": [
            {
                "table": c.table,
                "column": c.column,
                "hint": c.hint,
                "rows": c.rows,
                "sampled": c.sampled,
                "rows_read": c.rows_read,
                "table_rows": c.table_rows,
                "names": [name_fields(n) for n in c.names],
            }
            for c in discovery.columns
        ],
        "discovery": {
            "ran": True,
            "columns_read": discovery.read,
            "ignored": discovery.ignored,
            "sampled": [
                {"table": s.table, "rows_read": s.rows_read, "table_rows": s.table_rows}
                for s in discovery.sampled
            ],
            "sample_rows": discovery.sample_rows,
            "length_window": list(discovery.length_window),
        },
    }


def survey_counts(surv: Survey) -> dict[str, int]:
    def rows(kind: str) -> int:
        return sum(n.count for n in surv.names if n.kind == kind)

    shadows = {r.id for r in surv.project_rows if r.role == "shadow"}
    return {
        "shadow_project_rows": len(shadows),
        "shadow_state_rows": sum(
            n for (pid, _), n in surv.state_by_status.items() if pid in shadows
        ),
        "alias_keyed_rows": rows("alias"),
        "variant_spelled_rows": rows("variant"),
        "unregistered_rows": rows("unregistered"),
        "discovered_columns": len(surv.discovery.columns) if surv.discovery else 0,
        "discovered_rows": surv.discovery.rows if surv.discovery else 0,
    }


# -- view ----------------------------------------------------------------------


def by_status(counts: dict[str, int]) -> str:
    if not counts:
        return "0"
    parts = [f"{counts[s]} {s}" for s in STATUSES if counts.get(s)]
    parts += [f"{n} {s}" for s, n in sorted(counts.items()) if s not in STATUSES]
    return ", ".join(parts)


# One slot per (canonical id, alias or variant): its kind, counts per column
# bucket ("shadow", "state", "memories", "interactions", "extra") and spellings.
_Slots = dict[tuple[str, str], dict[str, Any]]


def _slot(per: _Slots, canonical: str, name: str, kind: str) -> dict[str, Any]:
    return per.setdefault(
        (canonical, name),
        {
            "kind": kind,
            "shadow": 0,
            "state": {},
            "memories": {},
            "interactions": 0,
            "extra": 0,
            "spellings": [],
            "more": 0,
        },
    )


def _spelled(s: dict[str, Any], examples: Sequence[str], total: int) -> None:
    s["spellings"] += [e for e in examples if e not in s["spellings"]]
    s["more"] += max(0, total - len(examples))


def _name_slots(surv: Survey) -> _Slots:
    """Shadow project rows (under their folded name) and alias or variant names, merged."""
    per: _Slots = {}
    for r in surv.project_rows:
        if r.role == "shadow":
            s = _slot(per, r.canonical_id, fold(r.name), "alias")
            s["shadow"] += 1
            _spelled(s, [r.name], 1)
            for (pid, status), count in surv.state_by_status.items():
                if pid == r.id:
                    s["state"][status] = s["state"].get(status, 0) + count
    buckets = {(t.table, t.column): t.bucket for t in surv.targets}
    for n in surv.names:
        if not n.moves or n.canonical_id is None:
            continue
        s = _slot(per, n.canonical_id, n.name, n.kind)
        _spelled(s, n.examples, n.spellings)
        bucket = buckets[(n.table, n.column)]
        if bucket == "memories":
            s["memories"] = {
                st: c for (name, st), c in surv.memories_by_status.items() if name == n.name
            } or {"?": n.count}
        else:
            s[bucket] += n.count
    return per


def _name_row(canonical: str, name: str, s: dict[str, Any]) -> list[Any]:
    shown = ", ".join(repr(e) for e in s["spellings"][:4])
    extra = len(s["spellings"]) - 4 + s["more"]
    if extra > 0:
        shown += f" (+{extra} more)"
    return [
        name,
        s["kind"],
        canonical,
        shown,
        s["shadow"],
        by_status(s["state"]),
        by_status(s["memories"]),
        s["interactions"],
        s["extra"],
    ]


def _names_table(doc: Doc, surv: Survey) -> None:
    """Per alias (folded) or variant: where it appears, how much, in which spellings."""
    per = _name_slots(surv)
    rows = [_name_row(canonical, name, per[(canonical, name)]) for canonical, name in sorted(per)]
    doc.heading("Alias-keyed and variant-spelled names")
    if not rows:
        read = ", ".join(t.label for t in surv.targets) or "none"
        doc.good(f"none in the project-keyed columns ({read}): every registered name is canonical")
        return
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


def discovery_section(doc: Doc, discovery: Discovery | None) -> None:
    """The columns nobody configured that hold registered names (inspect, plan)."""
    doc.heading("Other columns holding registered names (discovery)")
    if discovery is None:
        doc.bad(
            "discovery skipped (--no-discover): columns nobody configured were not"
            " searched for alias-keyed values"
        )
        return
    if discovery.columns:
        doc.table(
            ["table.column", "rows", "names", "add"],
            [
                [
                    c.label,
                    f"{c.rows} (of the first {c.rows_read})" if c.sampled else c.rows,
                    ", ".join(
                        f"{e!r} -> {n.canonical_id}" for n in c.names for e in n.examples[:1]
                    ),
                    c.hint,
                ]
                for c in discovery.columns
            ],
        )
        doc.bad(
            "apply leaves these as they are and verify fails while they exist: add the"
            " --column, or acknowledge a column that legitimately names aliases with"
            " --ignore-column TABLE.COLUMN"
        )
    else:
        doc.good("none: no other column holds an alias or a variant spelling")
    doc.text(discovery.summary())


def view(o: InspectOutcome) -> Doc:
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
    discovery_section(doc, surv.discovery)
    if o.report:
        doc.text(f"\nreport: {o.report}")
    return doc
