"""The core: every identity rule and every SQL statement of the migration.

``survey`` measures the blast radius (inspect); ``build_plan`` decides what
the migration does (plan, resolve, apply, verify all call it). Planning is
set-based: a fixed number of statements whatever the row count. Decisions
live in TEMP tables (``temp.ident_*``), which a read-only connection may
create without touching the database file, and which apply's write
statements then read. Row-level detail is streamed from those tables, never
loaded whole into Python.

Every statement is plain SQLite SQL with literal values: the text that
``inspect --sql`` and ``plan --format sql`` print is the text that runs.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from atocore_identity.database import (
    quote_ident,
    quote_literal,
    table_columns,
    table_exists,
    tables_referencing,
)
from atocore_identity.errors import DatabaseError
from atocore_identity.registry import Registry, fold
from atocore_identity.targets import MissingTarget, Target

STATE_REQUIRED = ("id", "project_id", "category", "key", "value", "status", "updated_at")
MEMORY_REQUIRED = ("id", "memory_type", "content", "project", "status", "updated_at")
CHUNK = 5000

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


# --------------------------------------------------------------------------
# Plan objects
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectRow:
    """A `projects` row the registry recognises."""

    id: str
    name: str
    canonical_id: str
    role: str  # "canonical" | "shadow"


@dataclass(frozen=True)
class NameCount:
    """A folded name in a project-keyed column: how many rows, in how many spellings.

    Names are counted per folded value, not per spelling: legacy data can
    hold a different casing or spacing of an alias on nearly every row.
    """

    table: str
    column: str
    name: str  # the folded name (repr of the value if it is not text)
    kind: str  # "canonical" | "variant" | "alias" | "unregistered"
    canonical_id: str | None
    count: int
    spellings: int
    examples: tuple[str, ...]  # up to EXAMPLES raw spellings


EXAMPLES = 5


@dataclass
class Group:
    """A registered project that has shadows: its canonical row and shadows."""

    canonical_id: str
    canonical_rows: list[ProjectRow] = field(default_factory=list)
    shadows: list[ProjectRow] = field(default_factory=list)

    @property
    def canonical_row(self) -> ProjectRow | None:
        return self.canonical_rows[0] if len(self.canonical_rows) == 1 else None

    @property
    def renamed_shadow(self) -> ProjectRow | None:
        """With no canonical row, the shadow with the lowest id becomes it."""
        if self.canonical_rows or not self.shadows:
            return None
        return min(self.shadows, key=lambda r: r.id.encode("utf-8"))

    @property
    def target_row_id(self) -> str | None:
        row = self.canonical_row or self.renamed_shadow
        return row.id if row else None

    @property
    def deleted_shadows(self) -> list[ProjectRow]:
        renamed = self.renamed_shadow
        return [s for s in self.shadows if renamed is None or s.id != renamed.id]


@dataclass(frozen=True)
class Candidate:
    """An active state row competing in a collision."""

    id: str
    project_row_id: str
    project_name: str
    is_canonical: bool
    status: str
    updated_at: str | None
    value: str

    @property
    def value_sha256(self) -> str:
        return hashlib.sha256(str(self.value).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Collision:
    """Two or more active rows with different values at one (category, key)."""

    canonical_id: str
    category: str
    key: str
    candidates: tuple[Candidate, ...]
    resolved_winner: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.category}/{self.key}"


@dataclass(frozen=True)
class Decision:
    """An operator's pick for one collision, as read from a resolutions file."""

    canonical_id: str
    category: str
    key: str
    winner_id: str
    # (id, value sha256) of every candidate as the operator saw them
    candidates: tuple[tuple[str, str], ...]


@dataclass
class Survey:
    """The blast radius: what the registry recognises in this database."""

    targets: list[Target]
    missing: list[MissingTarget]
    project_rows: list[ProjectRow]
    unregistered_projects: int
    names: list[NameCount]
    # (project row id, status) -> count, for recognised project rows
    state_by_status: dict[tuple[str, str], int]
    # (raw name, status) -> count of memories, for alias and variant names
    memories_by_status: dict[tuple[str, str], int]  # (folded name, status) -> rows
    has_state: bool
    rename: dict[str, str]  # every alias or variant spelling -> its canonical id

    def groups(self) -> dict[str, Group]:
        groups: dict[str, Group] = {}
        for row in self.project_rows:
            group = groups.setdefault(row.canonical_id, Group(row.canonical_id))
            (group.canonical_rows if row.role == "canonical" else group.shadows).append(row)
        return groups


@dataclass
class Plan:
    """What the migration will do, and whether apply may do it."""

    survey: Survey
    groups: list[Group]  # groups with shadows, or with integrity errors
    collisions: list[Collision]
    integrity_errors: list[str]
    stale_decisions: list[str]
    counts: dict[str, int]
    fingerprint: str
    prepare: list[str]  # the statements that build the plan's TEMP tables

    @property
    def unresolved(self) -> list[Collision]:
        return [c for c in self.collisions if c.resolved_winner is None]

    @property
    def blockers(self) -> list[str]:
        out = list(self.integrity_errors)
        out += [
            f"unresolved collision {c.canonical_id!r} {c.ref!r}: "
            + " vs ".join(f"{x.id}={x.value!r}" for x in c.candidates)
            for c in self.unresolved
        ]
        out += self.stale_decisions
        return out

    @property
    def is_empty(self) -> bool:
        return all(self.counts[k] == 0 for k in CHANGE_COUNTS)


CHANGE_COUNTS = (
    "shadow_rows_deleted",
    "shadow_rows_renamed",
    "state_moved",
    "state_archived_duplicate",
    "state_archived_history",
    "memories_rekeyed",
    "memories_superseded",
    "interactions_rekeyed",
    "extra_rekeyed",
)


# --------------------------------------------------------------------------
# Survey (inspect)
# --------------------------------------------------------------------------


def _in_list(values: Sequence[object]) -> str:
    return "(" + ", ".join(quote_literal(v) for v in values) + ")"


def survey(
    conn: sqlite3.Connection,
    registry: Registry,
    targets: list[Target],
    missing: list[MissingTarget],
    progress: Progress = _quiet,
    memory_statuses: bool = True,
) -> Survey:
    """Count what the registry recognises. A handful of GROUP BY statements.

    ``memory_statuses=False`` skips the per-status memory counts: build_plan
    takes them from its rekey table instead of reading the rows twice.
    """
    progress("reading projects")
    _require_columns(conn, "projects", ("id", "name"))
    project_rows: list[ProjectRow] = []
    unregistered_projects = 0
    for pid, name in conn.execute('SELECT "id", "name" FROM main."projects"'):
        found = registry.classify(name) if isinstance(name, str) else None
        if found is None:
            unregistered_projects += 1
            continue
        role = "shadow" if found[0] == "alias" else "canonical"
        project_rows.append(ProjectRow(str(pid), name, found[1], role))

    has_state = table_exists(conn, "project_state")
    state_by_status: dict[tuple[str, str], int] = {}
    if has_state:
        _require_columns(conn, "project_state", STATE_REQUIRED)
        if project_rows:
            ids = _in_list([r.id for r in project_rows])
            sql = (
                'SELECT "project_id", "status", COUNT(*) FROM main."project_state" '
                f'WHERE "project_id" IN {ids} GROUP BY "project_id", "status"'
            )
            for pid, status, count in conn.execute(sql):
                state_by_status[(str(pid), str(status))] = int(count)

    names: list[NameCount] = []
    rename: dict[str, str] = {}
    memories_by_status: dict[tuple[str, str], int] = {}
    for target in targets:
        progress(f"counting {target.label}")
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
        if target.dedupe:
            _require_columns(conn, "memories", MEMORY_REQUIRED)
        if target.dedupe and memory_statuses and moving:
            sql = (
                'SELECT "project", "status", COUNT(*) FROM main."memories"'
                f' WHERE "project" COLLATE BINARY IN {_in_list(moving)}'
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


def add_statuses(into: dict[tuple[str, str], int], rows: Iterable[tuple[Any, ...]]) -> None:
    """Accumulate (raw name, status, count) rows per folded name."""
    for raw, status, count in rows:
        key = (fold(str(raw)), str(status))
        into[key] = into.get(key, 0) + int(count)


def _require_columns(conn: sqlite3.Connection, table: str, required: Sequence[str]) -> None:
    have = set(table_columns(conn, table))
    lacking = [c for c in required if c not in have]
    if lacking:
        raise DatabaseError(
            f"table {table} lacks column(s) {', '.join(lacking)}",
            "this does not look like an AtoCore schema the tool knows",
        )


# --------------------------------------------------------------------------
# Planning statements
# --------------------------------------------------------------------------


def setup_statements(
    survey_: Survey, groups: list[Group], decisions: Sequence[Decision]
) -> list[str]:
    """TEMP tables holding the plan's inputs, as literal SQL."""
    out = [
        "DROP TABLE IF EXISTS temp.ident_names",
        "DROP TABLE IF EXISTS temp.ident_groups",
        "DROP TABLE IF EXISTS temp.ident_resolutions",
        "CREATE TEMP TABLE ident_names (raw PRIMARY KEY, canonical NOT NULL)",
        "CREATE TEMP TABLE ident_groups (project_row_id PRIMARY KEY, canonical_id NOT NULL,"
        " role NOT NULL, is_canonical NOT NULL, target_row_id)",
        "CREATE TEMP TABLE ident_resolutions (canonical_id, category, key, winner_id,"
        " PRIMARY KEY (canonical_id, category, key))",
    ]
    names = sorted(survey_.rename.items())
    if names:
        # One statement whatever the number of spellings (multi-row VALUES has
        # no row limit); literals keep names with NUL or quotes exact.
        values = ", ".join(f"({quote_literal(r)}, {quote_literal(c)})" for r, c in names)
        out.append(f"INSERT INTO temp.ident_names (raw, canonical) VALUES {values}")
    rows: list[str] = []
    for g in groups:
        target = g.target_row_id
        renamed = g.renamed_shadow
        for r in g.canonical_rows + g.shadows:
            role = r.role
            if renamed is not None and r.id == renamed.id:
                role = "renamed"
            rows.append(
                f"({quote_literal(r.id)}, {quote_literal(g.canonical_id)}, {quote_literal(role)},"
                f" {1 if r.role == 'canonical' else 0}, {quote_literal(target)})"
            )
    for i in range(0, len(rows), 500):
        out.append(
            "INSERT INTO temp.ident_groups (project_row_id, canonical_id, role, is_canonical,"
            " target_row_id) VALUES " + ", ".join(rows[i : i + 500])
        )
    decs = [
        f"({quote_literal(d.canonical_id)}, {quote_literal(d.category)},"
        f" {quote_literal(d.key)}, {quote_literal(d.winner_id)})"
        for d in decisions
    ]
    for i in range(0, len(decs), 500):
        out.append(
            "INSERT OR REPLACE INTO temp.ident_resolutions (canonical_id, category, key, winner_id)"
            " VALUES " + ", ".join(decs[i : i + 500])
        )
    return out


# The project_state decision table of SPEC §3, for every (category, key) of a
# group that holds at least one shadow row. Ordering gives the winner:
# an operator's pick, then active before inactive, then the canonical row's
# own, then the newest updated_at, then the lowest id. Values compare exactly
# (COLLATE BINARY), whatever collation the column declares.
STATE_DECISIONS = """CREATE TEMP TABLE ident_state AS
WITH g AS MATERIALIZED (
  SELECT ps."id" AS id, ps."project_id" AS project_id, ps."category" AS category,
         ps."key" AS key, ps."value" AS value, ps."status" AS status,
         ps."updated_at" AS updated_at, grp.canonical_id AS canonical_id,
         grp.is_canonical AS is_canonical, grp.target_row_id AS target_row_id
  FROM main."project_state" AS ps
  JOIN temp.ident_groups AS grp ON ps."project_id" = grp.project_row_id
),
touched AS (
  SELECT canonical_id, category, key FROM g
  GROUP BY canonical_id, category, key HAVING MIN(is_canonical) = 0
),
ranked AS (
  SELECT g.*, res.winner_id AS resolved_id,
    COUNT(*) OVER o AS n_rows,
    SUM(g.status = 'active') OVER o AS n_active,
    MIN(CASE WHEN g.status = 'active' THEN g.value END) OVER o AS min_active,
    MAX(CASE WHEN g.status = 'active' THEN g.value END) OVER o AS max_active,
    ROW_NUMBER() OVER o AS rnk,
    FIRST_VALUE(g.id) OVER o AS winner_id,
    FIRST_VALUE(g.value) OVER o AS winner_value
  FROM g
  JOIN touched AS t
    ON t.canonical_id = g.canonical_id AND t.category = g.category AND t.key = g.key
  LEFT JOIN temp.ident_resolutions AS res
    ON res.canonical_id = g.canonical_id AND res.category = g.category AND res.key = g.key
  WINDOW o AS (PARTITION BY g.canonical_id, g.category, g.key
               ORDER BY COALESCE(g.id = res.winner_id, 0) DESC, (g.status = 'active') DESC,
                        g.is_canonical DESC, g.updated_at DESC, g.id ASC
               ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
  -- one window, one sort: the aggregates see the whole partition through the frame
)
SELECT id, project_id, category, key, status, updated_at, canonical_id, is_canonical,
       target_row_id, n_rows, n_active, rnk, winner_id, resolved_id,
       (n_active >= 2 AND min_active IS NOT max_active) AS is_collision,
       CASE
         WHEN n_active >= 2 AND min_active IS NOT max_active AND resolved_id IS NULL
           THEN 'collision'
         WHEN rnk = 1 AND project_id IS target_row_id THEN 'stays'
         WHEN rnk = 1 THEN 'moves'
         WHEN value = winner_value COLLATE BINARY THEN 'duplicate'
         ELSE 'history'
       END AS outcome
FROM ranked"""

# Active memories that the rekey would put next to an active twin with the same
# (memory_type, content). Only partitions holding a rekeyed row matter; the
# newest stays active (ties: the row already canonical, then the lowest id).
MEMORY_DECISIONS = [
    "DROP TABLE IF EXISTS temp.ident_mem_rekeyed",
    "DROP TABLE IF EXISTS temp.ident_mem_dups",
    """CREATE TEMP TABLE ident_mem_rekeyed AS
SELECT k AS id, canonical, memory_type, content, updated_at
FROM temp."ident_rekey:memories.project" WHERE status = 'active'""",
    "CREATE INDEX temp.ident_mem_rekeyed_k ON ident_mem_rekeyed (canonical, memory_type, content)",
    """CREATE TEMP TABLE ident_mem_dups AS
WITH cand AS (
  SELECT id, canonical, memory_type, content, updated_at, 1 AS rekeyed
  FROM temp.ident_mem_rekeyed
  UNION ALL
  SELECT m."id", m."project", m."memory_type", m."content", m."updated_at", 0
  FROM main."memories" AS m
  WHERE m."project" COLLATE BINARY IN (SELECT DISTINCT canonical FROM temp.ident_mem_rekeyed)
    AND m."status" = 'active'
    AND EXISTS (SELECT 1 FROM temp.ident_mem_rekeyed AS r
                WHERE r.canonical = m."project" COLLATE BINARY
                  AND r.memory_type = m."memory_type" COLLATE BINARY
                  AND r.content = m."content" COLLATE BINARY)
),
ranked AS (
  SELECT id, canonical, rekeyed, updated_at,
    COUNT(*) OVER o AS n,
    ROW_NUMBER() OVER o AS rnk,
    FIRST_VALUE(id) OVER o AS keeper_id
  FROM cand
  WINDOW o AS (PARTITION BY canonical, memory_type, content
               ORDER BY updated_at DESC, rekeyed ASC, id ASC
               ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
)
SELECT id, canonical, rekeyed, updated_at, rnk, keeper_id FROM ranked WHERE n > 1""",
]


EMPTY_STATE = (
    "CREATE TEMP TABLE ident_state (id, project_id, category, key, status, updated_at,"
    " canonical_id, is_canonical, target_row_id, n_rows, n_active, rnk, winner_id,"
    " resolved_id, is_collision, outcome)"
)
EMPTY_MEM_DUPS = (
    "CREATE TEMP TABLE ident_mem_dups (id, canonical, rekeyed, updated_at, rnk, keeper_id)"
)


def apply_script(plan: Plan) -> str:
    """The SQL script apply executes, for a DBA to review (plan --format sql)."""
    lines = [
        "-- atocore-identity apply script",
        f"-- fingerprint {plan.fingerprint}",
        "-- apply also backs up the database, archives every deleted row to its report,",
        "-- and checks its postconditions before COMMIT; this script shows the SQL only.",
        "BEGIN IMMEDIATE;",
    ]
    lines += [sql + ";" for sql in plan.prepare]
    lines.append("-- the writes")
    lines += [sql + ";" for sql in write_statements(plan)]
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def rekey_table(target: Target) -> str:
    """The TEMP table holding the rows a target's rekey moves (quoted)."""
    return quote_ident(f"ident_rekey:{target.label}")


def rekey_statements(target: Target) -> list[str]:
    """Read once the rows a target's rekey moves; the plan's later steps (status
    counts, de-duplication, fingerprint, companion) read this table instead."""
    col, tab = quote_ident(target.column), quote_ident(target.table)
    key = "rowid" if target.key == "rowid" else f"t.{quote_ident(target.key)}"
    extra = (
        ', t."status" AS status, t."updated_at" AS updated_at,'
        ' t."memory_type" AS memory_type, t."content" AS content'
        if target.dedupe
        else ""
    )
    if target.key == "rowid":
        key = "t.rowid"
    return [
        f"DROP TABLE IF EXISTS temp.{rekey_table(target)}",
        f"CREATE TEMP TABLE {rekey_table(target)} AS SELECT {key} AS k, n.raw AS raw,"
        f" n.canonical AS canonical{extra} FROM temp.ident_names AS n"
        f" JOIN main.{tab} AS t ON t.{col} = n.raw COLLATE BINARY",
    ]


def write_statements(plan: Plan) -> list[str]:
    """The statements apply executes, in order, inside its transaction.

    Order matters: losing state rows go before winners move (UNIQUE per
    triple), and shadow rows go last, after their state has moved, so
    ON DELETE CASCADE has nothing left to delete.
    """
    out: list[str] = []
    if plan.groups:
        out.append(
            'UPDATE main."projects" SET "name" = (SELECT g.canonical_id FROM temp.ident_groups AS g'
            ' WHERE g.project_row_id = "projects"."id")'
            " WHERE \"id\" IN (SELECT project_row_id FROM temp.ident_groups WHERE role = 'renamed')"
        )
        if plan.survey.has_state:
            out.append(
                'DELETE FROM main."project_state" WHERE "id" IN (SELECT id FROM temp.ident_state'
                " WHERE outcome IN ('duplicate', 'history'))"
            )
            out.append(
                'UPDATE main."project_state" SET "project_id" = (SELECT d.target_row_id'
                ' FROM temp.ident_state AS d WHERE d.id = "project_state"."id")'
                " WHERE \"id\" IN (SELECT id FROM temp.ident_state WHERE outcome = 'moves')"
            )
    for target in plan.survey.targets:
        if target.dedupe:
            out.append(
                'UPDATE main."memories" SET "status" = \'superseded\''
                ' WHERE "id" IN (SELECT id FROM temp.ident_mem_dups WHERE rnk > 1)'
            )
        col, tab = quote_ident(target.column), quote_ident(target.table)
        out.append(
            f"UPDATE main.{tab} SET {col} = (SELECT n.canonical FROM temp.ident_names AS n"
            f" WHERE n.raw = {tab}.{col} COLLATE BINARY)"
            f" WHERE {col} COLLATE BINARY IN (SELECT raw FROM temp.ident_names)"
        )
    if plan.groups:
        out.append(
            'DELETE FROM main."projects" WHERE "id" IN'
            " (SELECT project_row_id FROM temp.ident_groups WHERE role = 'shadow')"
        )
    return out


# --------------------------------------------------------------------------
# build_plan
# --------------------------------------------------------------------------


def _hash_rows(h: Any, cursor: sqlite3.Cursor) -> None:
    """Feed a query's rows into ``h`` a chunk at a time (queries ORDER BY a unique key)."""
    while True:
        rows = cursor.fetchmany(CHUNK)
        if not rows:
            return
        h.update(repr(rows).encode("utf-8", "surrogatepass"))


def build_plan(
    conn: sqlite3.Connection,
    registry: Registry,
    targets: list[Target],
    missing: list[MissingTarget],
    decisions: Sequence[Decision] = (),
    progress: Progress = _quiet,
) -> Plan:
    """Decide everything the migration will do. Reads only; writes TEMP tables."""
    surv = survey(conn, registry, targets, missing, progress, memory_statuses=False)
    all_groups = surv.groups()
    integrity: list[str] = []
    for g in all_groups.values():
        if len(g.canonical_rows) > 1:
            rows = ", ".join(f"{r.name!r} (id {r.id})" for r in g.canonical_rows)
            integrity.append(
                f"project {g.canonical_id!r} has {len(g.canonical_rows)} canonical rows: {rows};"
                " merge them by hand first"
            )
    groups = [g for g in all_groups.values() if g.shadows and len(g.canonical_rows) <= 1]
    groups.sort(key=lambda g: g.canonical_id)

    # A shadow about to be deleted (or renamed, for a key on the name) must
    # not be referenced by rows the plan does not account for: ON DELETE or
    # ON UPDATE CASCADE would change them behind the plan's back.
    doomed = [s.id for g in groups for s in g.deleted_shadows]
    renamed = [g.renamed_shadow.id for g in groups if g.renamed_shadow is not None]
    for table, child, parent in tables_referencing(conn, "projects"):
        if (table, child, parent) == ("project_state", "project_id", "id"):
            continue
        touched = doomed + (renamed if parent.lower() != "id" else [])
        if touched:
            integrity += _referencing(
                conn,
                table,
                child,
                "projects",
                parent,
                f'"id" IN {_in_list(touched)}',
                "shadow project rows",
            )

    progress("planning project_state")
    prepare = setup_statements(surv, groups, decisions)
    prepare.append("DROP TABLE IF EXISTS temp.ident_state")
    if surv.has_state and groups:
        prepare.append(STATE_DECISIONS)
        # apply's UPDATE looks each moved row up by id: without this index it
        # scans the table once per row (quadratic).
        prepare.append("CREATE UNIQUE INDEX temp.ident_state_id ON ident_state (id)")
    else:
        prepare.append(EMPTY_STATE)
    for sql in prepare:
        conn.execute(sql)
    collisions = _collisions(conn)
    stale = _check_decisions(collisions, decisions)
    if surv.has_state and groups:
        for table, child, parent in tables_referencing(conn, "project_state"):
            integrity += _referencing(
                conn,
                table,
                child,
                "project_state",
                parent,
                '"id" IN (SELECT id FROM temp.ident_state'
                " WHERE outcome IN ('duplicate', 'history'))",
                "state rows the migration archives and deletes",
            )

    progress("reading the rows to rekey")
    for target in targets:
        statements = rekey_statements(target)
        for sql in statements:
            conn.execute(sql)
        prepare += statements
        if target.dedupe:
            sql = (
                f"SELECT raw, status, COUNT(*) FROM temp.{rekey_table(target)} GROUP BY raw, status"
            )
            add_statuses(surv.memories_by_status, conn.execute(sql))

    progress("planning memories")
    dedupe = any(t.dedupe for t in targets)
    memory = MEMORY_DECISIONS if dedupe else [*MEMORY_DECISIONS[:2], EMPTY_MEM_DUPS]
    for sql in memory:
        conn.execute(sql)
    prepare += memory

    counts = _counts(conn, surv, groups)
    counts["collisions"] = len(collisions)
    counts["collisions_unresolved"] = sum(1 for c in collisions if c.resolved_winner is None)
    progress("fingerprinting")
    fingerprint = _fingerprint(conn, registry, surv, groups, decisions)
    return Plan(
        survey=surv,
        groups=groups,
        collisions=collisions,
        integrity_errors=integrity,
        stale_decisions=stale,
        counts=counts,
        fingerprint=fingerprint,
        prepare=prepare,
    )


def _referencing(
    conn: sqlite3.Connection,
    table: str,
    child: str,
    parent_table: str,
    parent: str,
    which: str,
    what: str,
) -> list[str]:
    """An integrity error when rows of ``table`` reference the parent rows ``which``."""
    sql = (
        f"SELECT COUNT(*) FROM main.{quote_ident(table)} WHERE {quote_ident(child)} IN"
        f" (SELECT {quote_ident(parent)} FROM main.{quote_ident(parent_table)} WHERE {which})"
    )
    (count,) = conn.execute(sql).fetchone()
    if not count:
        return []
    return [
        f"{count} row(s) of {table}.{child} reference {what}; a cascade would change rows"
        " the plan does not account for: move or delete them by hand first"
    ]


def _collisions(conn: sqlite3.Connection) -> list[Collision]:
    sql = (
        'SELECT d.canonical_id, d.category, d.key, d.id, d.project_id, p."name",'
        ' d.is_canonical, d.status, d.updated_at, ps."value", d.resolved_id'
        " FROM temp.ident_state AS d"
        ' JOIN main."project_state" AS ps ON ps."id" = d.id'
        ' JOIN main."projects" AS p ON p."id" = d.project_id'
        " WHERE d.is_collision AND d.status = 'active'"
        " ORDER BY d.canonical_id, d.category, d.key, d.is_canonical DESC, d.id"
    )
    if not table_exists(conn, "project_state"):
        return []
    found: dict[tuple[str, str, str], list[Candidate]] = {}
    resolved: dict[tuple[str, str, str], str | None] = {}
    for row in conn.execute(sql):
        key = (str(row[0]), str(row[1]), str(row[2]))
        found.setdefault(key, []).append(
            Candidate(
                id=str(row[3]),
                project_row_id=str(row[4]),
                project_name=str(row[5]),
                is_canonical=bool(row[6]),
                status=str(row[7]),
                updated_at=None if row[8] is None else str(row[8]),
                value=str(row[9]),
            )
        )
        resolved[key] = None if row[10] is None else str(row[10])
    return [Collision(k[0], k[1], k[2], tuple(v), resolved[k]) for k, v in found.items()]


def _check_decisions(collisions: list[Collision], decisions: Sequence[Decision]) -> list[str]:
    """Stale decisions: the collision is gone, or its rows or values changed."""
    by_key = {(c.canonical_id, c.category, c.key): c for c in collisions}
    stale: list[str] = []
    for d in decisions:
        where = f"{d.canonical_id} {d.category}/{d.key}"
        c = by_key.get((d.canonical_id, d.category, d.key))
        if c is None:
            stale.append(f"stale resolution for {where}: it is no longer a collision")
            continue
        now = sorted((x.id, x.value_sha256) for x in c.candidates)
        if now != sorted(d.candidates):
            stale.append(f"stale resolution for {where}: its rows or values changed since resolve")
        elif d.winner_id not in {x.id for x in c.candidates}:
            stale.append(f"resolution for {where} picks row {d.winner_id}, not a candidate")
    return stale


def _counts(conn: sqlite3.Connection, surv: Survey, groups: list[Group]) -> dict[str, int]:
    counts = dict.fromkeys(CHANGE_COUNTS, 0)
    counts["shadow_rows_deleted"] = sum(len(g.deleted_shadows) for g in groups)
    counts["shadow_rows_renamed"] = sum(1 for g in groups if g.renamed_shadow is not None)
    for outcome, n in conn.execute(
        "SELECT outcome, COUNT(*) FROM temp.ident_state GROUP BY outcome"
    ):
        key = {
            "moves": "state_moved",
            "duplicate": "state_archived_duplicate",
            "history": "state_archived_history",
            "stays": "state_unchanged",
            "collision": "state_in_collision",
        }[str(outcome)]
        counts[key] = int(n)
    counts.setdefault("state_unchanged", 0)
    counts.setdefault("state_in_collision", 0)
    (counts["memories_superseded"],) = conn.execute(
        "SELECT COUNT(*) FROM temp.ident_mem_dups WHERE rnk > 1"
    ).fetchone()
    for n in surv.names:
        if n.kind not in ("alias", "variant"):
            continue
        if (n.table, n.column) == ("memories", "project"):
            counts["memories_rekeyed"] += n.count
        elif (n.table, n.column) == ("interactions", "project"):
            counts["interactions_rekeyed"] += n.count
        else:
            counts["extra_rekeyed"] += n.count
    return counts


def _fingerprint(
    conn: sqlite3.Connection,
    registry: Registry,
    surv: Survey,
    groups: list[Group],
    decisions: Sequence[Decision],
) -> str:
    """Hash the alias map and the identity and version of every row the plan reads.

    Any write that could change the plan changes one of these inputs: the
    projects rows of each group, every state row of each group, every row a
    rekey would touch, and every memory that takes part in de-duplication.
    """
    h = hashlib.sha256()
    h.update(registry.alias_map_digest().encode())
    h.update(repr(sorted(t.label for t in surv.targets)).encode())
    h.update(repr(sorted((r.id, r.name, r.role) for r in surv.project_rows)).encode())
    h.update(
        repr(sorted((d.canonical_id, d.category, d.key, d.winner_id) for d in decisions)).encode()
    )
    h.update(
        repr(
            sorted(
                (n.table, n.column, n.name, n.kind, n.count, n.spellings)
                for n in surv.names
                if n.kind != "unregistered"
            )
        ).encode()
    )
    if surv.has_state and groups:
        sql = (
            'SELECT ps."id", ps."project_id", ps."category", ps."key", ps."status",'
            ' ps."updated_at", ps."value" FROM main."project_state" AS ps'
            ' WHERE ps."project_id" IN (SELECT project_row_id FROM temp.ident_groups)'
            ' ORDER BY ps."id"'
        )
        _hash_rows(h, conn.execute(sql))
    for target in surv.targets:
        h.update(target.label.encode())
        _hash_rows(h, conn.execute(_rekey_rows_sql(target)))
    _hash_rows(h, conn.execute("SELECT id, updated_at, rnk FROM temp.ident_mem_dups ORDER BY id"))
    return h.hexdigest()


def _rekey_rows_sql(target: Target) -> str:
    """The rows a target's rekey moves, with their identity and version."""
    version = ", status, updated_at" if target.dedupe else ""
    # The TEMP table's own order (rowid) is the order the same statement read
    # the rows in: deterministic for a given database, and free.
    return f"SELECT k, raw{version} FROM temp.{rekey_table(target)} ORDER BY rowid"


def _stream(cursor: sqlite3.Cursor) -> Iterator[tuple[Any, ...]]:
    while True:
        rows = cursor.fetchmany(CHUNK)
        if not rows:
            return
        yield from rows


# --------------------------------------------------------------------------
# Row-level detail, streamed from the TEMP tables
# --------------------------------------------------------------------------


def iter_state_rows(
    conn: sqlite3.Connection, outcomes: Sequence[str] = ("moves", "duplicate", "history")
) -> Iterator[dict[str, Any]]:
    """State rows the plan acts on, with the full row (every column, by name)."""
    wanted = ", ".join(quote_literal(o) for o in outcomes)
    cur = conn.execute(
        "SELECT d.outcome, d.canonical_id, d.target_row_id, d.winner_id, ps.*"
        ' FROM temp.ident_state AS d JOIN main."project_state" AS ps ON ps."id" = d.id'
        f" WHERE d.outcome IN ({wanted}) ORDER BY d.canonical_id, d.category, d.key, d.rnk"
    )
    names = [c[0] for c in cur.description]
    for row in _stream(cur):
        rec = dict(zip(names[4:], row[4:], strict=True))
        yield {
            "outcome": row[0],
            "canonical_id": row[1],
            "to_project_row": row[2],
            "winner_id": row[3],
            "row": rec,
        }


def iter_rekeyed(
    conn: sqlite3.Connection, target: Target
) -> Iterator[tuple[str, list[Any], list[str]]]:
    """(canonical id, [row keys], [their old values]) in chunks of at most CHUNK rows."""
    cur = conn.execute(
        f"SELECT canonical, k, raw FROM temp.{rekey_table(target)} ORDER BY canonical, rowid"
    )
    current: str | None = None
    keys: list[Any] = []
    olds: list[str] = []
    for canonical, key, raw in _stream(cur):
        if canonical != current or len(keys) >= CHUNK:
            if current is not None and keys:
                yield current, keys, olds
            current, keys, olds = canonical, [], []
        keys.append(key)
        olds.append(raw)
    if current is not None and keys:
        yield current, keys, olds


def iter_superseded(conn: sqlite3.Connection) -> Iterator[tuple[str, str, str]]:
    """(memory id, keeper id, canonical id) for memories de-duplication supersedes."""
    cur = conn.execute(
        "SELECT id, keeper_id, canonical FROM temp.ident_mem_dups WHERE rnk > 1 ORDER BY id"
    )
    for row in _stream(cur):
        yield str(row[0]), str(row[1]), str(row[2])
