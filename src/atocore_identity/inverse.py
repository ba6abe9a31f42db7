"""The inverse of an apply, as SQL over one TEMP table loaded from its archive.

``temp.rv_rec`` holds one row per thing the apply changed (a projects row
deleted or renamed, a state row moved, archived or kept, a rekeyed value, a
superseded memory) with the migrated field's value before (``old``) and
after (``new``) the apply. Set-based statements then classify every record
against the database as it is now (SPEC §7):

- ``left``: the migrated field holds what the apply wrote: revert it;
- ``before``: it holds the pre-apply value again: nothing to do;
- ``changed``: anything else, or the row is gone: never touched;
- ``conflict``: restoring it would clash with the database now.

and write the inverse. The statement count depends on the number of
project-keyed columns, never on the number of rows. Every value is a
literal or comes from ``rv_rec``: the SQL ``revert --format sql`` prints is
the SQL that runs.
"""

from __future__ import annotations

from atocore_identity.database import quote_ident, quote_literal

TABLE = "temp.rv_rec"

SETUP = [
    "DROP TABLE IF EXISTS temp.rv_rec",
    # k, old, new and cat/ckey have no declared type: they keep the type the
    # archive gave them, and comparisons take the database column's affinity.
    "CREATE TEMP TABLE rv_rec (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, canonical,"
    " tab, col, keycol, k, old, new, cat, ckey, row_json, sel INTEGER NOT NULL,"
    " state TEXT, why TEXT, after TEXT)",
    # Archived text holding U+0000, by row and column: SQLite 3.40's
    # json_extract cuts a string at NUL, so _restore takes these from here.
    "DROP TABLE IF EXISTS temp.rv_nul",
    "CREATE TEMP TABLE rv_nul (kind TEXT NOT NULL, k, col TEXT NOT NULL, value TEXT,"
    " PRIMARY KEY (kind, k, col))",
]
INSERT_NUL = "INSERT INTO temp.rv_nul (kind, k, col, value) VALUES (?, ?, ?, ?)"
INSERT = (
    "INSERT INTO temp.rv_rec (kind, canonical, tab, col, keycol, k, old, new, cat, ckey,"
    " row_json, sel) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# A rekey record's (id, old value) pairs as one JSON array, one row per id, in
# the record's order: the same rows INSERT would add one by one.
INSERT_REKEY = (
    "INSERT INTO temp.rv_rec (kind, canonical, tab, col, keycol, k, old, new, cat, ckey,"
    " row_json, sel) SELECT 'rekey', ?1, ?2, ?3, ?4, json_extract(p.value, '$[0]'),"
    " json_extract(p.value, '$[1]'), ?6, NULL, NULL, NULL, ?7 FROM json_each(?5) AS p"
    " ORDER BY p.key"
)
INDEX = [
    "CREATE INDEX temp.rv_rec_kind_k ON rv_rec (kind, k)",
    "CREATE INDEX temp.rv_rec_target ON rv_rec (tab, col, k)",
    "CREATE INDEX temp.rv_rec_triple ON rv_rec (old, cat, ckey)",
]


def _same_row(others: list[str]) -> str:
    """The row's other columns equal its archived copy (rowid-keyed rows only:
    a rowid re-used by a row written since is not the row the apply changed)."""
    same = " AND ".join(
        f"t.{quote_ident(c)} IS json_extract(r.row_json, {quote_literal('$.' + quote_ident(c))})"
        for c in others
    )
    return f"(r.row_json IS NULL OR ({same or '1'}))"


# long: one ordered list of UPDATEs; the fallbacks at the end rely on every match above
def classify(
    column: str,
    rekey_targets: list[tuple[str, str, str]],
    present: set[str],
    others: dict[tuple[str, str, str], list[str]] | None = None,
) -> list[str]:
    """Statements that set ``column`` (``state`` before the writes, ``after``
    once they ran) of every record from the database as it is now.
    ``present`` names the tables that exist (lower case): records of a table
    dropped since stay unmatched, that is changed."""
    c = column
    out = [f"UPDATE temp.rv_rec SET {c} = NULL"]
    if "projects" in present:
        out += [
            # a deleted projects row: back with its old name = before; its id
            # taken by another row is a clash
            f'UPDATE temp.rv_rec AS r SET {c} = CASE WHEN p."name" IS r.old COLLATE BINARY'
            " THEN 'before' ELSE 'conflict' END, why = CASE WHEN p.\"name\" IS r.old"
            " COLLATE BINARY THEN NULL ELSE 'another projects row now holds this id' END"
            ' FROM main."projects" AS p WHERE r.kind = \'delete\' AND p."id" = r.k',
            f'UPDATE temp.rv_rec AS r SET {c} = CASE WHEN p."name" IS r.new COLLATE BINARY'
            " THEN 'left' WHEN p.\"name\" IS r.old COLLATE BINARY THEN 'before' ELSE 'changed' END"
            ' FROM main."projects" AS p WHERE r.kind = \'rename\' AND p."id" = r.k',
        ]
    if "project_state" in present:
        out += [
            f'UPDATE temp.rv_rec AS r SET {c} = CASE WHEN s."project_id" IS r.new'
            " THEN 'left' WHEN s.\"project_id\" IS r.old THEN 'before' ELSE 'changed' END,"
            ' cat = s."category", ckey = s."key"'
            ' FROM main."project_state" AS s WHERE r.kind = \'moves\' AND s."id" = r.k',
            f'UPDATE temp.rv_rec AS r SET {c} = CASE WHEN s."project_id" IS r.old'
            " THEN 'before' ELSE 'changed' END"
            ' FROM main."project_state" AS s WHERE r.kind = \'archived\' AND s."id" = r.k',
        ]
    if "memories" in present:
        out.append(
            f"UPDATE temp.rv_rec AS r SET {c} = CASE WHEN m.\"status\" IS 'superseded'"
            " THEN 'left' WHEN m.\"status\" IS 'active' THEN 'before' ELSE 'changed' END"
            ' FROM main."memories" AS m WHERE r.kind = \'supersede\' AND m."id" = r.k'
        )
    for table, col, keycol in rekey_targets:
        if table.lower() not in present:
            continue
        t, k = quote_ident(table), "rowid" if keycol == "rowid" else quote_ident(keycol)
        same = "1"
        if keycol == "rowid":
            same = _same_row((others or {}).get((table, col, keycol), []))
        out.append(
            f"UPDATE temp.rv_rec AS r SET {c} = CASE WHEN NOT {same} THEN 'changed'"
            f" WHEN t.{quote_ident(col)} IS r.new COLLATE BINARY THEN 'left'"
            f" WHEN t.{quote_ident(col)} IS r.old COLLATE BINARY THEN 'before' ELSE 'changed' END"
            f" FROM main.{t} AS t WHERE r.kind = 'rekey' AND r.tab = {quote_literal(table)}"
            f" AND r.col = {quote_literal(col)} AND t.{k} = r.k"
        )
    out += [
        # not found: a deleted row is still absent (left), anything else is gone
        f"UPDATE temp.rv_rec SET {c} = 'left' WHERE {c} IS NULL AND kind IN ('delete', 'archived')",
        # NOT INDEXED: these kinds are nearly every record; one pass over the
        # table beats a lookup of each through rv_rec_kind_k (0.19 -> 0.05 s at 1M)
        f"UPDATE temp.rv_rec NOT INDEXED SET {c} = 'changed', why = 'deleted since the apply'"
        f" WHERE {c} IS NULL AND kind IN ('rename', 'moves', 'supersede', 'rekey')",
        f"UPDATE temp.rv_rec SET {c} = 'kept' WHERE kind = 'stays'",
    ]
    return out


# After classification: what would clash or lose its parent. ``sel`` limits
# everything to the --project groups.
CONFLICTS = [
    # a renamed shadow keeps its name while project_state rows written since
    # (neither moved there by the apply nor kept there) reference it
    "UPDATE temp.rv_rec AS r SET state = 'conflict',"
    " why = 'project_state rows written since the apply reference this row'"
    " WHERE r.kind = 'rename' AND r.state = 'left' AND r.sel AND EXISTS ("
    ' SELECT 1 FROM main."project_state" AS s WHERE s."project_id" = r.k AND NOT EXISTS ('
    " SELECT 1 FROM temp.rv_rec AS m WHERE m.kind IN ('moves', 'stays') AND m.k = s.\"id\"))",
    # a state row goes back to a projects row that will not exist
    "UPDATE temp.rv_rec AS r SET state = 'changed', why = 'its project row is gone'"
    " WHERE r.kind IN ('moves', 'archived') AND r.state = 'left' AND r.sel"
    ' AND NOT EXISTS (SELECT 1 FROM main."projects" AS p WHERE p."id" = r.old)'
    " AND NOT EXISTS (SELECT 1 FROM temp.rv_rec AS d WHERE d.kind = 'delete'"
    " AND d.state = 'left' AND d.sel AND d.k = r.old)",
    # UNIQUE (project_id, category, key): two restored rows want one triple
    "UPDATE temp.rv_rec AS r SET state = 'conflict',"
    " why = 'another restored row needs the same (project_id, category, key)'"
    " WHERE r.kind IN ('moves', 'archived') AND r.state = 'left' AND r.sel AND EXISTS ("
    " SELECT 1 FROM temp.rv_rec AS o WHERE o.old = r.old AND o.cat = r.cat"
    " AND o.ckey = r.ckey AND o.seq <> r.seq AND o.kind IN ('moves', 'archived')"
    " AND o.state = 'left' AND o.sel)",
    # UNIQUE (project_id, category, key): a row that stays holds the triple
    "UPDATE temp.rv_rec AS r SET state = 'conflict',"
    " why = 'a project_state row now holds its (project_id, category, key)'"
    " WHERE r.kind IN ('moves', 'archived') AND r.state = 'left' AND r.sel AND EXISTS ("
    ' SELECT 1 FROM main."project_state" AS q WHERE q."project_id" = r.old'
    ' AND q."category" = r.cat AND q."key" = r.ckey AND q."id" IS NOT r.k AND NOT EXISTS ('
    " SELECT 1 FROM temp.rv_rec AS m WHERE m.kind = 'moves' AND m.k = q.\"id\""
    " AND m.state = 'left' AND m.sel))",
]

# The names a restored or renamed-back shadow takes: checked in Python with
# the Unicode fold (SQLite's lower() folds ASCII only).
NAMES = (
    "SELECT seq, k, old FROM temp.rv_rec"
    " WHERE kind IN ('delete', 'rename') AND state = 'left' AND sel"
)
PROJECT_NAMES = 'SELECT "id", "name" FROM main."projects"'

# NOT INDEXED: a scan and a small GROUP BY B-tree beat walking rv_rec_kind_k
# and looking up every row for its state (0.29 -> 0.08 s at 1M)
SUMMARY = "SELECT kind, state, sel, COUNT(*) FROM temp.rv_rec NOT INDEXED GROUP BY kind, state, sel"
LISTED = (
    "SELECT kind, tab, col, k, old, new, state, why FROM temp.rv_rec"
    # conflicts first: they refuse even with --skip-changed and must be named
    " WHERE sel AND state IN ('changed', 'conflict') ORDER BY state = 'conflict' DESC, seq"
    " LIMIT ?"
)
# The records of revert's own companion: every selected row it reverts or skips.
_RECORD_ROWS = "FROM temp.rv_rec WHERE sel AND state IN ('left', 'changed', 'conflict')"
RECORDS = (
    f"SELECT kind, canonical, tab, col, keycol, k, old, new, state, why {_RECORD_ROWS} ORDER BY seq"
)
# The same records as companion.revert_lines_sql encodes them, and the test
# that every value they carry is one json_object writes exactly.
RECORD_SOURCE = f"{_RECORD_ROWS} ORDER BY seq"
RECORD_VALUES = {
    "action": "CASE state WHEN 'left' THEN 'reverted' ELSE 'skipped' END",
    "kind": "kind",
    "canonical_id": "CAST(canonical AS TEXT)",
    "table": "tab",
    "column": "col",
    "key_column": "keycol",
    "key": "k",
    "old": "old",
    "new": "new",
    "why": "why",
}


def records_not_exact(exact_types: tuple[str, ...]) -> str:
    """A count of the records holding a value json_object would not write exactly."""
    types = ", ".join(quote_literal(t) for t in exact_types)
    return (
        f"SELECT COUNT(*) {_RECORD_ROWS}"
        f" AND (typeof(k) NOT IN ({types}) OR typeof(old) NOT IN ({types})"
        f" OR typeof(new) NOT IN ({types}) OR typeof(tab) NOT IN ({types})"
        f" OR typeof(col) NOT IN ({types}) OR typeof(keycol) NOT IN ({types}))"
    )


NOT_REVERTED = (
    "SELECT COUNT(*) FROM temp.rv_rec WHERE sel AND state = 'left' AND after IS NOT 'before'"
)


def _restore(table: str, columns: list[str], kind: str) -> str:
    """INSERT the archived rows of ``kind`` back, every archived column by name
    (a text value holding U+0000 from ``temp.rv_nul``, exactly)."""
    cols = ", ".join(quote_ident(c) for c in columns)
    # rv_nul holds only text (never NULL): a hit there wins over json_extract
    values = ", ".join(
        f"COALESCE((SELECT v.value FROM temp.rv_nul AS v WHERE v.kind = r.kind AND v.k = r.k"
        f" AND v.col = {quote_literal(c)}),"
        f" json_extract(r.row_json, {quote_literal(chr(36) + '.' + quote_ident(c))}))"
        for c in columns
    )
    return (
        f"INSERT INTO main.{quote_ident(table)} ({cols}) SELECT {values} FROM temp.rv_rec AS r"
        f" WHERE r.kind = {quote_literal(kind)} AND r.state = 'left' AND r.sel ORDER BY r.seq"
    )


def writes(
    project_columns: list[str],
    state_columns: list[str],
    rekey_targets: list[tuple[str, str, str]],
) -> list[str]:
    """The inverse, in order: shadows back first (state rows reference them),
    winners back before the archived rows take their keys again."""
    left = "r.state = 'left' AND r.sel"
    out: list[str] = []
    if project_columns:
        out.append(_restore("projects", project_columns, "delete"))
    out += [
        'UPDATE main."projects" SET "name" = r.old FROM temp.rv_rec AS r'
        f' WHERE r.kind = \'rename\' AND {left} AND "projects"."id" = r.k',
        'UPDATE main."project_state" SET "project_id" = r.old FROM temp.rv_rec AS r'
        f' WHERE r.kind = \'moves\' AND {left} AND "project_state"."id" = r.k',
    ]
    if state_columns:
        out.append(_restore("project_state", state_columns, "archived"))
    for table, col, keycol in rekey_targets:
        t = quote_ident(table)
        k = "rowid" if keycol == "rowid" else quote_ident(keycol)
        out.append(
            f"UPDATE main.{t} SET {quote_ident(col)} = r.old FROM temp.rv_rec AS r"
            f" WHERE r.kind = 'rekey' AND r.tab = {quote_literal(table)}"
            f" AND r.col = {quote_literal(col)} AND {left} AND {t}.{k} = r.k"
        )
    out.append(
        'UPDATE main."memories" SET "status" = \'active\' FROM temp.rv_rec AS r'
        f' WHERE r.kind = \'supersede\' AND {left} AND "memories"."id" = r.k'
    )
    return out
