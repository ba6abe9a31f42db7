"""The read-only survey: what the registry recognises in a database (inspect).

A handful of GROUP BY statements whatever the row count, no TEMP tables:
inspect runs exactly what ``inspect --sql`` prints. ``planner.build_plan``
starts from a survey and decides in TEMP tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from atocore_identity.database import quote_ident, quote_literal, table_columns, table_exists
from atocore_identity.errors import DatabaseError
from atocore_identity.plan_objects import EXAMPLES, NameCount, ProjectRow, Survey
from atocore_identity.registry import Registry, fold
from atocore_identity.targets import MissingTarget, Target

STATE_REQUIRED = ("id", "project_id", "category", "key", "value", "status", "updated_at")
MEMORY_REQUIRED = ("id", "memory_type", "content", "project", "status", "updated_at")

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    return None


def in_list(values: Sequence[object]) -> str:
    """A SQL ``(...)`` list of literals: the printed SQL is the SQL run."""
    return "(" + ", ".join(quote_literal(v) for v in values) + ")"


def survey(
    conn: sqlite3.Connection,
    registry: Registry,
    targets: list[Target],
    missing: list[MissingTarget],
    progress: Progress = quiet,
    memory_statuses: bool = True,
) -> Survey:
    """Count what the registry recognises. A handful of GROUP BY statements.

    ``memory_statuses=False`` skips the per-status memory counts: build_plan
    takes them from its rekey table instead of reading the rows twice.
    """
    progress("reading projects")
    project_rows, unregistered_projects = _project_rows(conn, registry)
    has_state = table_exists(conn, "project_state")
    state_by_status = _state_by_status(conn, project_rows) if has_state else {}
    names: list[NameCount] = []
    rename: dict[str, str] = {}
    memories_by_status: dict[tuple[str, str], int] = {}
    for target in targets:
        progress(f"counting {target.label}")
        moving = _count_names(conn, registry, target, names, rename)
        if target.dedupe:
            require_columns(conn, "memories", MEMORY_REQUIRED)
            if memory_statuses and moving:
                sql = (
                    'SELECT "project", "status", COUNT(*) FROM main."memories"'
                    f' WHERE "project" COLLATE BINARY IN {in_list(moving)}'
                    ' GROUP BY "project", "status"'
                )
                add_statuses(memories_by_status, conn.execute(sql))
    return Survey(
        targets=targets,
        missing=missing,
        project_rows=project_rows,
        unregistered_projects=unregistered_projects,
        names=names,
        state_by_status=state_by_status,
        memories_by_status=memories_by_status,
        has_state=has_state,
        rename=rename,
    )


def _project_rows(conn: sqlite3.Connection, registry: Registry) -> tuple[list[ProjectRow], int]:
    """The projects rows the registry recognises, and how many it does not."""
    require_columns(conn, "projects", ("id", "name"))
    rows: list[ProjectRow] = []
    unregistered = 0
    for pid, name in conn.execute('SELECT "id", "name" FROM main."projects"'):
        found = registry.classify(name) if isinstance(name, str) else None
        if found is None:
            unregistered += 1
            continue
        role = "shadow" if found[0] == "alias" else "canonical"
        rows.append(ProjectRow(str(pid), name, found[1], role))
    return rows, unregistered


def _state_by_status(
    conn: sqlite3.Connection, project_rows: list[ProjectRow]
) -> dict[tuple[str, str], int]:
    require_columns(conn, "project_state", STATE_REQUIRED)
    out: dict[tuple[str, str], int] = {}
    if not project_rows:
        return out
    sql = (
        'SELECT "project_id", "status", COUNT(*) FROM main."project_state" '
        f'WHERE "project_id" IN {in_list([r.id for r in project_rows])}'
        ' GROUP BY "project_id", "status"'
    )
    for pid, status, count in conn.execute(sql):
        out[(str(pid), str(status))] = int(count)
    return out


def _count_names(
    conn: sqlite3.Connection,
    registry: Registry,
    target: Target,
    names: list[NameCount],
    rename: dict[str, str],
) -> list[str]:
    """Count a target's names per folded value into ``names``; record every alias
    or variant spelling in ``rename``; return the spellings that would move."""
    col, tab = quote_ident(target.column), quote_ident(target.table)
    # COLLATE BINARY: a column declared NOCASE would merge spellings here
    # and hide every variant; names are compared by fold() only.
    sql = f"SELECT {col}, COUNT(*) FROM main.{tab} GROUP BY {col} COLLATE BINARY"
    per_name: dict[tuple[str, str, str | None], list[Any]] = {}
    moving: list[str] = []
    for raw, count in conn.execute(sql):
        kind: str = "unregistered"
        canonical: str | None = None
        if isinstance(raw, str):
            hit = registry.classify(raw)
            if hit is not None:
                kind, canonical = hit
                if kind != "canonical":
                    rename[raw] = canonical
                    moving.append(raw)
        name = fold(raw) if isinstance(raw, str) else repr(raw)
        slot = per_name.setdefault((name, kind, canonical), [0, 0, []])
        slot[0] += int(count)
        slot[1] += 1
        if len(slot[2]) < EXAMPLES:
            slot[2].append(raw if isinstance(raw, str) else repr(raw))
    for (name, kind, canonical), (count, spellings, examples) in per_name.items():
        names.append(
            NameCount(
                target.table,
                target.column,
                name,
                kind,
                canonical,
                count,
                spellings,
                tuple(examples),
            )
        )
    return moving


def add_statuses(into: dict[tuple[str, str], int], rows: Iterable[tuple[Any, ...]]) -> None:
    """Accumulate (raw name, status, count) rows per folded name."""
    for raw, status, count in rows:
        key = (fold(str(raw)), str(status))
        into[key] = into.get(key, 0) + int(count)


def require_columns(conn: sqlite3.Connection, table: str, required: Sequence[str]) -> None:
    have = set(table_columns(conn, table))
    lacking = [c for c in required if c not in have]
    if lacking:
        raise DatabaseError(
            f"table {table} lacks column(s) {', '.join(lacking)}",
            "this does not look like an AtoCore schema the tool knows",
        )
