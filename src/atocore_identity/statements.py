"""The migration's SQL: the TEMP tables that hold decisions, the writes, the streams.

Every statement is plain SQLite SQL with literal values, so the text that
``plan --format sql`` prints is the text that runs. ``planner`` decides when
each runs; apply executes ``write_statements`` inside its transaction; the
companion writer reads the ``iter_*`` streams, a chunk at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from atocore_identity.database import quote_ident, quote_literal
from atocore_identity.plan_objects import Decision, Group, Plan, Survey
from atocore_identity.targets import Target

CHUNK = 5000


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
FROM (
  SELECT ps."id" AS id, ps."project_id" AS project_id, ps."category" AS category,
         ps."key" AS key, ps."value" AS value, ps."status" AS status,
         ps."updated_at" AS updated_at, grp.canonical_id AS canonical_id,
         grp.is_canonical AS is_canonical, grp.target_row_id AS target_row_id,
         res.winner_id AS resolved_id,
    MIN(grp.is_canonical) OVER o AS canonical_only,
    COUNT(*) OVER o AS n_rows,
    SUM(ps."status" = 'active') OVER o AS n_active,
    MIN(CASE WHEN ps."status" = 'active' THEN ps."value" END) OVER o AS min_active,
    MAX(CASE WHEN ps."status" = 'active' THEN ps."value" END) OVER o AS max_active,
    ROW_NUMBER() OVER o AS rnk,
    FIRST_VALUE(ps."id") OVER o AS winner_id,
    FIRST_VALUE(ps."value") OVER o AS winner_value
  FROM temp.ident_groups AS grp
  JOIN main."project_state" AS ps ON ps."project_id" = grp.project_row_id
  LEFT JOIN temp.ident_resolutions AS res
    ON res.canonical_id = grp.canonical_id AND res.category IS ps."category"
   AND res.key IS ps."key"
  WINDOW o AS (PARTITION BY grp.canonical_id, ps."category", ps."key"
               ORDER BY COALESCE(ps."id" = res.winner_id, 0) DESC,
                        (ps."status" = 'active') DESC, grp.is_canonical DESC,
                        ps."updated_at" DESC, ps."id" ASC
               ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
  -- one window, one sort: the aggregates see the whole partition through the frame;
  -- canonical_only = 1: a key no shadow holds a row of, which the migration leaves
) WHERE canonical_only = 0"""

# Active memories that the rekey would put next to an active twin with the same
# (memory_type, content). Only partitions holding a rekeyed row matter; the
# newest stays active (ties: the row already canonical, then the lowest id).
MEMORY_DECISIONS = [
    "DROP TABLE IF EXISTS temp.ident_mem_rekeyed",
    "DROP TABLE IF EXISTS temp.ident_mem_dups",
    """CREATE TEMP TABLE ident_mem_rekeyed AS
SELECT k AS id, canonical, memory_type, content, updated_at
FROM temp."ident_rekey:memories.project" WHERE status = 'active'""",
    # content first: a probe's comparisons end at the first differing byte of
    # the content, where the project (about 50 names shared by every row)
    # would compare whole each time (the twin statement 0.69-0.80 -> 0.44-0.50 s)
    "CREATE INDEX temp.ident_mem_rekeyed_k ON ident_mem_rekeyed (content, memory_type, canonical)",
    """CREATE TEMP TABLE ident_mem_dups AS
WITH base AS MATERIALIZED (
  -- COLLATE BINARY: values compare exactly, whatever collation the columns declare
  SELECT m."id" AS id, m."project" COLLATE BINARY AS canonical,
         m."memory_type" COLLATE BINARY AS memory_type, m."content" COLLATE BINARY AS content,
         m."updated_at" AS updated_at, 0 AS rekeyed
  FROM main."memories" AS m
  WHERE m."status" = 'active'
    -- one probe of the index per active memory, no correlated subquery
    AND (m."content" COLLATE BINARY, m."memory_type" COLLATE BINARY, m."project" COLLATE BINARY)
        IN (SELECT content, memory_type, canonical FROM temp.ident_mem_rekeyed)
),
-- only sets that can hold two rows are ranked: those with an active canonical
-- twin, and those where two rekeyed rows meet; a lone rekeyed row is skipped
sets AS MATERIALIZED (
  SELECT canonical, memory_type, content FROM base
  UNION
  SELECT canonical, memory_type, content FROM temp.ident_mem_rekeyed
  GROUP BY content, memory_type, canonical HAVING COUNT(*) > 1
),
cand AS (
  SELECT id, canonical, memory_type, content, updated_at, rekeyed FROM base
  UNION ALL
  SELECT r.id, r.canonical, r.memory_type, r.content, r.updated_at, 1
  FROM sets AS s CROSS JOIN temp.ident_mem_rekeyed AS r
    ON r.canonical = s.canonical AND r.memory_type = s.memory_type AND r.content = s.content
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
    key = "t.rowid" if target.key == "rowid" else f"t.{quote_ident(target.key)}"
    extra = (
        ', t."status" AS status, t."updated_at" AS updated_at,'
        ' t."memory_type" AS memory_type, t."content" AS content'
        if target.dedupe
        else ""
    )
    # The IN list lets SQLite read the rows through an index on the column
    # (the reference schema has one on every default target) instead of
    # scanning the table; without an index it scans, as before. Rows come in
    # the order of the column's values, the same order for a given database.
    return [
        f"DROP TABLE IF EXISTS temp.{rekey_table(target)}",
        f"CREATE TEMP TABLE {rekey_table(target)} AS SELECT {key} AS k, n.raw AS raw,"
        f" n.canonical AS canonical{extra} FROM main.{tab} AS t"
        f" JOIN temp.ident_names AS n ON n.raw = t.{col} COLLATE BINARY"
        f" WHERE t.{col} COLLATE BINARY IN (SELECT raw FROM temp.ident_names)",
    ]


def rekey_rows_sql(target: Target) -> str:
    """The rows a target's rekey moves, with their identity and version (the
    fingerprint's share of them, ``rekeys.read_rekeys``)."""
    version = ", status, updated_at" if target.dedupe else ""
    # The TEMP table's own order (rowid) is the order the same statement read
    # the rows in: deterministic for a given database, and free.
    return f"SELECT k, raw{version} FROM temp.{rekey_table(target)} ORDER BY rowid"


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


def hash_rows(h: Any, cursor: sqlite3.Cursor) -> int:
    """Feed a query's rows into the hash ``h`` a chunk at a time (the query
    orders them by a unique key); returns how many there were."""
    rows = 0
    while chunk := cursor.fetchmany(CHUNK):
        rows += len(chunk)
        h.update(repr(chunk).encode("utf-8", "surrogatepass"))
    return rows


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
    conn: sqlite3.Connection,
    outcomes: Sequence[str] = ("moves", "duplicate", "history"),
    kept_by_renamed: bool = False,
) -> Iterator[dict[str, Any]]:
    """State rows the plan acts on, with the full row (every column, by name).

    ``kept_by_renamed`` adds the rows that stay under a shadow renamed into
    the canonical id: revert tells them apart from rows written since.
    """
    wanted = ", ".join(quote_literal(o) for o in outcomes)
    kept = (
        " OR (d.outcome = 'stays' AND d.project_id IN"
        " (SELECT project_row_id FROM temp.ident_groups WHERE role = 'renamed'))"
        if kept_by_renamed
        else ""
    )
    cur = conn.execute(
        "SELECT d.outcome, d.canonical_id, d.target_row_id, d.winner_id, ps.*"
        ' FROM temp.ident_state AS d JOIN main."project_state" AS ps ON ps."id" = d.id'
        f" WHERE d.outcome IN ({wanted}){kept}"
        " ORDER BY d.canonical_id, d.category, d.key, d.rnk"
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
) -> Iterator[tuple[str, list[Any], list[str], list[dict[str, Any]] | None]]:
    """(canonical id, [row keys], [their old values], [full rows] or None) in chunks
    of at most CHUNK rows. The full rows come only for tables keyed by rowid: a
    rowid can be re-used by a row written later, so revert compares the rest."""
    rowid = target.key == "rowid"
    full = f" JOIN main.{quote_ident(target.table)} AS t ON t.rowid = r.k" if rowid else ""
    cur = conn.execute(
        f"SELECT r.canonical, r.k, r.raw{', t.*' if rowid else ''}"
        f" FROM temp.{rekey_table(target)} AS r{full} ORDER BY r.canonical, r.rowid"
    )
    names = [c[0] for c in cur.description][3:]
    current: str | None = None
    keys: list[Any] = []
    olds: list[str] = []
    rows: list[dict[str, Any]] = []
    for canonical, key, raw, *rest in _stream(cur):
        if canonical != current or len(keys) >= CHUNK:
            if current is not None and keys:
                yield current, keys, olds, rows if rowid else None
            current, keys, olds, rows = canonical, [], [], []
        keys.append(key)
        olds.append(raw)
        if rowid:
            rows.append(dict(zip(names, rest, strict=True)))
    if current is not None and keys:
        yield current, keys, olds, rows if rowid else None


def iter_superseded(conn: sqlite3.Connection) -> Iterator[tuple[str, str, str]]:
    """(memory id, keeper id, canonical id) for memories de-duplication supersedes."""
    cur = conn.execute(
        "SELECT id, keeper_id, canonical FROM temp.ident_mem_dups WHERE rnk > 1 ORDER BY id"
    )
    for row in _stream(cur):
        yield str(row[0]), str(row[1]), str(row[2])


def iter_project_rows(conn: sqlite3.Connection) -> Iterator[tuple[str, str, Any, dict[str, Any]]]:
    """(role, canonical id, target row id, full row) of every projects row the
    plan renames (role ``renamed``) or deletes (role ``shadow``), every column by name."""
    cur = conn.execute(
        "SELECT g.role, g.canonical_id, g.target_row_id, p.* FROM temp.ident_groups AS g"
        ' JOIN main."projects" AS p ON p."id" = g.project_row_id'
        " WHERE g.role IN ('renamed', 'shadow') ORDER BY g.canonical_id, g.role, p.\"id\""
    )
    names = [c[0] for c in cur.description]
    for row in _stream(cur):
        yield str(row[0]), str(row[1]), row[2], dict(zip(names[3:], row[3:], strict=True))
