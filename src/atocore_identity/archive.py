"""An apply's archive read back: its report and companion checked, then loaded.

revert loads archive records into ``temp.rv_rec`` (``inverse.py``): a
streaming ``executemany`` of rows, and a rekey record's ids as one statement
that expands them in SQL; this
module owns the checks that come first: the report is an apply that changed
something, on this database, and its companion is the one it names (sha256)
holding what it counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atocore_identity.companion import (
    ProjectRecord,
    RekeyRecord,
    StateRecord,
    SupersedeRecord,
    read_records,
)
from atocore_identity.errors import BadInput
from atocore_identity.reports import (
    CHANGED_SOMETHING,
    companion_differs,
    companion_of,
    load_report,
)


@dataclass(frozen=True)
class Archive:
    """An apply report and its companion, checked against each other and the database."""

    path: Path
    report: dict[str, Any]
    companion: Path
    canonical_ids: tuple[str, ...]


def load_archive(path: Path, db: Path) -> Archive:
    """The apply report and its companion; BadInput for anything that cannot be reverted."""
    report = load_report(path, "apply")
    status = report.get("status")
    if status not in CHANGED_SOMETHING:
        raise BadInput(
            f"report {path} records an apply that changed nothing (status {status!r})",
            "pass the report of an apply that applied (`atocore-identity history` lists them)",
        )
    # reports record the absolute path too: a relative --db names a different
    # file from another working directory
    named = report.get("database_absolute") or report.get("database")
    if not isinstance(report.get("database"), str) or not isinstance(named, str):
        raise BadInput(f"report {path} is malformed: it names no database")
    if not _same_file(Path(named), db):
        raise BadInput(
            f"report {path} is from another database ({named}), not {db}",
            "pass the --db the apply ran on",
        )
    companion = companion_of(path, report)
    if companion is None:
        raise BadInput(f"report {path} names no archive companion", "it cannot be reverted")
    if not companion.is_file():
        raise BadInput(f"the archive {companion} of {path} is missing", "use the backup instead")
    if companion_differs(companion, report):
        raise BadInput(
            f"the archive {companion} does not match its report {path} (sha256 differs)",
            "it was changed or truncated; use the backup instead",
        )
    groups = report.get("groups")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise BadInput(f"report {path} is malformed: 'groups' is not a list of objects")
    ids = tuple(str(g.get("canonical_id")) for g in groups)
    return Archive(path, report, companion, ids)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


@dataclass
class Loaded:
    counts: dict[str, int] = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)  # kind -> archived columns
    targets: dict[tuple[str, str, str], None] = field(default_factory=dict)
    projects: set[str] = field(default_factory=set)  # canonical ids of every record
    grouped: set[str] = field(default_factory=set)  # canonical ids of projects records
    # (kind, key, column, value) of archived text holding U+0000 (inverse.INSERT_NUL)
    nul_values: list[tuple[str, Any, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class RekeyChunk:
    """A rekey record's (id, old value) pairs as one JSON array, which
    ``inverse.INSERT_REKEY`` expands into rv_rec rows in SQL (one statement per
    record instead of a Python tuple per id)."""

    params: tuple[Any, ...]


def _note_nul(seen: Loaded, kind: str, key: Any, row: dict[str, Any]) -> None:
    """Keep aside the text values of a row to restore that hold U+0000."""
    for col, value in row.items():
        if isinstance(value, str) and "\x00" in value:
            seen.nul_values.append((kind, key, col, value))


def _json_exact(values: list[Any]) -> bool:
    """Values that survive JSON into SQLite unchanged: integers, and text
    without NUL (SQLite 3.40's json_extract cuts a string at U+0000, so the
    id ``'m1\x00x'`` would come back as ``'m1'``, another row). A REAL could
    be parsed back differently, and a bool is not an integer here."""
    return all(type(v) is int or (type(v) is str and "\x00" not in v) for v in values)


def archive_rows(
    archive: Archive, selected: set[str] | None, seen: Loaded
) -> Iterator[tuple[Any, ...] | RekeyChunk]:
    """One rv_rec row per record (per id for rekey chunks with full rows or
    values JSON cannot carry exactly; a RekeyChunk otherwise), counting as it goes."""

    def sel(canonical: str) -> int:
        seen.projects.add(canonical)
        return 1 if selected is None or canonical in selected else 0

    def count(kind: str, n: int = 1) -> None:
        seen.counts[kind] = seen.counts.get(kind, 0) + n

    for rec in read_records(archive.companion):
        if isinstance(rec, ProjectRecord):
            kind = rec.action  # "delete" | "rename"
            count(kind)
            seen.grouped.add(rec.canonical_id)
            new = None if kind == "delete" else rec.canonical_id
            row = json.dumps(rec.row) if kind == "delete" else None
            if kind == "delete":
                seen.columns.setdefault(kind, list(rec.row))
                _note_nul(seen, kind, rec.id, rec.row)
            yield (kind, rec.canonical_id, "projects", "name", "id", rec.id, rec.name, new,
                   None, None, row, sel(rec.canonical_id))  # fmt: skip
        elif isinstance(rec, StateRecord):
            kind = {"duplicate": "archived", "history": "archived"}.get(rec.outcome, rec.outcome)
            count(kind)
            r = rec.row
            new = None if kind == "archived" else rec.to_project_row
            row = json.dumps(r) if kind == "archived" else None
            if kind == "archived":
                seen.columns.setdefault(kind, list(r))
                _note_nul(seen, kind, r["id"], r)
            yield (kind, rec.canonical_id, "project_state", "project_id", "id", r["id"],
                   r.get("project_id"), new, r.get("category"), r.get("key"), row,
                   sel(rec.canonical_id))  # fmt: skip
        elif isinstance(rec, RekeyRecord):
            count("rekey", len(rec.ids))
            seen.targets[(rec.table, rec.column, rec.key)] = None
            if rec.rows is None and _json_exact(rec.ids) and _json_exact(rec.old):
                pairs = json.dumps(list(zip(rec.ids, rec.old, strict=True)))
                yield RekeyChunk(
                    (rec.to, rec.table, rec.column, rec.key, pairs, rec.to, sel(rec.to))
                )
                continue
            fulls: list[str | None] = (
                [json.dumps(r) for r in rec.rows] if rec.rows is not None else [None] * len(rec.ids)
            )
            for key, old, full in zip(rec.ids, rec.old, fulls, strict=True):
                yield ("rekey", rec.to, rec.table, rec.column, rec.key, key, old, rec.to,
                       None, None, full, sel(rec.to))  # fmt: skip
        elif isinstance(rec, SupersedeRecord):
            count("supersede")
            yield ("supersede", rec.canonical_id, "memories", "status", "id", rec.id, "active",
                   "superseded", None, None, None, sel(rec.canonical_id))  # fmt: skip


def check_counts(archive: Archive, seen: Loaded, projects: tuple[str, ...] = ()) -> None:
    """The archive must hold what its report counted and name the same projects:
    an edited report or a companion of another apply is refused before anything
    is classified. ``projects`` (--project) must be projects the apply changed."""
    c = archive.report.get("counts")
    if not isinstance(c, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in c.values()
    ):
        raise BadInput(f"report {archive.path} is malformed: 'counts' is not a map of numbers")
    expected = {
        "delete": c.get("shadow_rows_deleted", 0),
        "rename": c.get("shadow_rows_renamed", 0),
        "moves": c.get("state_moved", 0),
        "archived": c.get("state_archived_duplicate", 0) + c.get("state_archived_history", 0),
        "rekey": sum(c.get(f"{b}_rekeyed", 0) for b in ("memories", "interactions", "extra")),
        "supersede": c.get("memories_superseded", 0),
    }
    for kind, want in expected.items():
        got = seen.counts.get(kind, 0)
        if got != want:
            raise BadInput(
                f"the archive {archive.companion} does not match its report {archive.path}:"
                f" {got} {kind} record(s) in the archive, {want} in the report",
                "the report or the archive was edited; use the backup instead",
            )
    if set(archive.canonical_ids) != seen.grouped:
        raise BadInput(
            f"the archive {archive.companion} does not match its report {archive.path}:"
            f" the report's projects ({', '.join(sorted(archive.canonical_ids))}) are not"
            f" the archive's ({', '.join(sorted(seen.grouped))})",
            "the report or the archive was edited; use the backup instead",
        )
    unknown = [p for p in projects if p not in seen.projects]
    if unknown:
        raise BadInput(
            f"--project {', '.join(unknown)}: not a project this apply changed",
            f"choose from {', '.join(sorted(seen.projects)) or 'none'}",
        )
