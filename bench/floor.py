"""The floors: the least hand-written SQL that decides, or makes, apply's changes.

    .venv/bin/python bench/floor.py DB REGISTRY               # apply floor: migrate DB
    .venv/bin/python bench/floor.py --plan-only DB REGISTRY   # dry-run floor: count only
    .venv/bin/python bench/floor.py --print-sql [--plan-only] REGISTRY

Both build the same decisions as ``plan`` in TEMP tables, by SPEC §3 and
nothing else (no code of the tool's is imported or copied):

- ``alias``/``grp``/``tgt``: the registry's folded names, every recognised
  ``projects`` row, and per project with a shadow the row that stays (its
  canonical row, else the shadow with the lowest id, renamed).
- ``st``: one outcome per state row of every (project, category, key) that a
  shadow holds: ``collision`` (two or more active rows with different
  values), else the first row by (active, canonical, newest, lowest id)
  ``stays`` or ``moves``, the others are a ``duplicate`` of its value or
  ``history``.
- ``names``: every spelling in ``memories.project`` or ``interactions.project``
  that folds to an id or alias and is not the id itself, found by a loose
  index scan (one seek per distinct value, not one step per row).
- ``moved``: the active memories to rekey; ``tw``: the active memories already
  canonical that one of them will join (the one pass over active memories
  that no index can avoid); ``sup``: every set of two or more active twins,
  ranked newest first (ties: the row already canonical, then the lowest id),
  ``rn > 1`` is superseded. Only the sets that hold a rekeyed row and a
  second row are ranked.

``--plan-only`` (the dry-run floor) also builds the rekey sets (``rk_mem``,
``rk_int``: every row whose project is renamed, with its new name) driving
from ``names`` through ``idx_*_project``, and prints ONE JSON line: the
counts, named as in plan's report, plus seconds per statement. It opens the
database read-only (``mode=ro``) with ``PRAGMA temp_store = MEMORY``, so it
writes nothing to the database or to disk. run.py checks that its counts
equal ``plan``'s.

Without ``--plan-only`` (the apply floor) it skips the rekey sets (the
UPDATEs find those rows themselves) and makes the writes, in one
``BEGIN IMMEDIATE`` transaction with foreign keys on and the default page
cache. It refuses (exit 3) when there is a collision. run.py checks that it
leaves exactly the rows apply leaves.

No safety rail, backup, archive, report or fingerprint: the cost of deciding
(and of writing) and nothing else. Names are folded in SQL with
``lower(trim(x, ' ' || char(9)))``, which equals the tool's Unicode-aware
fold only for ASCII names padded with spaces and tabs: true of
bench/generate.py's data, not of AtoCore databases in general. A project with
two canonical rows (an integrity error for the tool) is not handled.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

FOLD = "lower(trim({x}, ' ' || char(9)))"
TEMP_STORE = "MEMORY"  # both floors: TEMP tables in memory, nothing to disk but the writes
APPLY_CACHE_KIB = 12288  # the apply floor gets apply's page cache (PRAGMA cache_size)

COUNTS = """SELECT
  (SELECT COUNT(*) FROM grp JOIN tgt USING (canonical) WHERE pid <> target),
  (SELECT COUNT(*) FROM tgt WHERE has_canonical = 0),
  (SELECT COUNT(*) FROM st WHERE outcome = 'moves'),
  (SELECT COUNT(*) FROM st WHERE outcome = 'duplicate'),
  (SELECT COUNT(*) FROM st WHERE outcome = 'history'),
  (SELECT COUNT(*) FROM st WHERE outcome = 'stays'),
  (SELECT COUNT(*) FROM st WHERE outcome = 'collision'),
  (SELECT COUNT(*) FROM (SELECT DISTINCT canonical, category, key FROM st
                         WHERE outcome = 'collision')),
  (SELECT COUNT(*) FROM rk_mem),
  (SELECT COUNT(*) FROM sup WHERE rn > 1),
  (SELECT COUNT(*) FROM rk_int)"""
COUNT_NAMES = (
    "shadow_rows_deleted",
    "shadow_rows_renamed",
    "state_moved",
    "state_archived_duplicate",
    "state_archived_history",
    "state_unchanged",
    "state_in_collision",
    "collisions",
    "memories_rekeyed",
    "memories_superseded",
    "interactions_rekeyed",
)


def alias_rows(registry: Path) -> list[tuple[str, str, int]]:
    """(folded name, canonical id, is the id itself) for every id and alias."""
    doc = json.loads(registry.read_text("utf-8"))
    out: list[tuple[str, str, int]] = []
    for p in doc["projects"]:
        out.append((p["id"].strip().lower(), p["id"], 1))
        out += [(a.strip().lower(), p["id"], 0) for a in p.get("aliases", [])]
    return out


def _loose_scan(table: str) -> str:
    """Distinct non-NULL values of TABLE.project, one index seek each."""
    return f"""{table}_names(p) AS (
  SELECT MIN(project) FROM {table}
  UNION ALL
  SELECT (SELECT MIN(project) FROM {table} WHERE project > d.p) FROM {table}_names AS d
  WHERE d.p IS NOT NULL)"""


def decide(registry: Path, plan_only: bool) -> list[str]:
    """The statements that build the decisions in TEMP tables."""
    fold_name = FOLD.format(x="p.name")
    fold_raw = FOLD.format(x="raw")
    values = ", ".join(
        "(" + ", ".join([_lit(f), _lit(c), str(i)]) + ")" for f, c, i in alias_rows(registry)
    )
    out = [
        "CREATE TEMP TABLE alias (folded TEXT PRIMARY KEY, canonical TEXT NOT NULL, is_id INT)",
        f"INSERT INTO alias VALUES {values}",
        f"""CREATE TEMP TABLE grp AS
SELECT p.id AS pid, a.canonical, a.is_id
FROM projects AS p JOIN alias AS a ON a.folded = {fold_name}""",
        """CREATE TEMP TABLE tgt AS
SELECT canonical, COALESCE(MAX(CASE WHEN is_id THEN pid END), MIN(pid)) AS target,
       MAX(is_id) AS has_canonical
FROM grp GROUP BY canonical HAVING MIN(is_id) = 0""",
        # project_state: every (project, category, key) a shadow holds, decided
        """CREATE TEMP TABLE st AS
SELECT id, project_id, target, canonical, category, key, outcome FROM (
  SELECT ps.id, ps.project_id, t.target, g.canonical, ps.category, ps.key,
    MIN(g.is_id) OVER w AS canonical_only,
    CASE
      WHEN SUM(ps.status = 'active') OVER w >= 2
           AND MIN(CASE WHEN ps.status = 'active' THEN ps.value END) OVER w
               <> MAX(CASE WHEN ps.status = 'active' THEN ps.value END) OVER w
        THEN 'collision'
      WHEN ROW_NUMBER() OVER w = 1
        THEN CASE WHEN ps.project_id = t.target THEN 'stays' ELSE 'moves' END
      WHEN ps.value = FIRST_VALUE(ps.value) OVER w THEN 'duplicate'
      ELSE 'history'
    END AS outcome
  FROM tgt AS t JOIN grp AS g ON g.canonical = t.canonical
  JOIN project_state AS ps ON ps.project_id = g.pid
  -- one window, one sort: the frame is the whole partition for every aggregate
  WINDOW w AS (PARTITION BY g.canonical, ps.category, ps.key
               ORDER BY ps.status = 'active' DESC, g.is_id DESC, ps.updated_at DESC, ps.id
               ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
) WHERE canonical_only = 0""",
        # the free-text columns: every spelling that folds to an id or alias
        "CREATE TEMP TABLE names (raw TEXT PRIMARY KEY, canonical TEXT NOT NULL)",
        f"""INSERT INTO names
WITH RECURSIVE {_loose_scan("memories")},
{_loose_scan("interactions")}
SELECT raw, a.canonical
FROM (SELECT p AS raw FROM memories_names WHERE p IS NOT NULL
      UNION SELECT p FROM interactions_names WHERE p IS NOT NULL)
JOIN alias AS a ON a.folded = {fold_raw} WHERE raw <> a.canonical""",
    ]
    if plan_only:
        out += [
            """CREATE TEMP TABLE rk_mem AS
SELECT m.id, n.raw, n.canonical, m.status, m.memory_type, m.content, m.updated_at
FROM names AS n CROSS JOIN memories AS m ON m.project = n.raw""",
            """CREATE TEMP TABLE rk_int AS
SELECT i.id, n.raw, n.canonical
FROM names AS n CROSS JOIN interactions AS i ON i.project = n.raw""",
            """CREATE TEMP TABLE moved AS
SELECT id, canonical, memory_type, content, updated_at FROM rk_mem WHERE status = 'active'""",
        ]
    else:
        out.append(
            """CREATE TEMP TABLE moved AS
SELECT m.id, n.canonical, m.memory_type, m.content, m.updated_at
FROM names AS n CROSS JOIN memories AS m ON m.project = n.raw WHERE +m.status = 'active'"""
        )
    out += [
        # content first: a probe ends at the content's first differing byte
        # (the tool's twin index, f77257d: the floor takes every gain it can)
        "CREATE INDEX temp.moved_k ON moved (content, memory_type, canonical)",
        # the one pass over the active memories: which are twins of a moved one
        """CREATE TEMP TABLE tw AS
SELECT m.id, m.project AS canonical, m.memory_type, m.content, m.updated_at
FROM memories AS m WHERE m.status = 'active'
  AND (m.content, m.memory_type, m.project)
      IN (SELECT content, memory_type, canonical FROM moved)""",
        "CREATE INDEX temp.tw_k ON tw (content, memory_type, canonical)",
        # rank the sets of two or more active rows that hold a moved one
        """CREATE TEMP TABLE sup AS
SELECT id, canonical, ROW_NUMBER() OVER s AS rn, FIRST_VALUE(id) OVER s AS keeper
FROM (SELECT id, canonical, memory_type, content, updated_at, 0 AS rekeyed FROM tw
      UNION ALL
      SELECT x.id, x.canonical, x.memory_type, x.content, x.updated_at, 1 FROM moved AS x
      WHERE EXISTS (SELECT 1 FROM tw AS t WHERE t.canonical = x.canonical
                      AND t.memory_type = x.memory_type AND t.content = x.content)
         OR EXISTS (SELECT 1 FROM moved AS y WHERE y.canonical = x.canonical
                      AND y.memory_type = x.memory_type AND y.content = x.content
                      AND y.id <> x.id))
WINDOW s AS (PARTITION BY canonical, memory_type, content
             ORDER BY updated_at DESC, rekeyed, id)""",
    ]
    return out


def companion(conn: sqlite3.Connection) -> list[str]:
    """``--companion``: the SELECTs of the records plan's companion holds,
    each line encoded by SQLite (json_object; a REAL with 15 digits, which
    the tool must not accept but a floor may): the shadow projects rows
    renamed or deleted, the state rows moved or archived (and those that
    stay under a renamed shadow), the rekeyed ids with their old spellings
    in records of at most 5,000 per canonical id, the superseded memories."""
    project_row = _row_object(conn, "projects", "p")
    state_row = _row_object(conn, "project_state", "ps")

    def rekey(table: str, rk: str) -> str:
        return f"""SELECT json_object('record', 'rekey', 'table', '{table}', 'column', 'project',
  'key', 'id', 'to', canonical, 'ids', json_group_array(id), 'from', json_group_array(raw))
FROM (SELECT id, raw, canonical,
             (ROW_NUMBER() OVER (PARTITION BY canonical ORDER BY rowid) - 1) / 5000 AS chunk
      FROM {rk})
GROUP BY canonical, chunk ORDER BY canonical, chunk"""

    return [
        f"""SELECT json_object('record', 'project',
  'action', CASE WHEN g.pid = t.target THEN 'rename' ELSE 'delete' END,
  'id', p.id, 'name', p.name, 'canonical_id', g.canonical,
  'target_row_id', CASE WHEN g.pid = t.target THEN NULL ELSE t.target END, 'row', {project_row})
FROM grp AS g JOIN tgt AS t USING (canonical) JOIN projects AS p ON p.id = g.pid
WHERE g.pid <> t.target OR t.has_canonical = 0 ORDER BY g.canonical, p.id""",
        "CREATE INDEX temp.st_k ON st (canonical, category, key)",
        f"""SELECT json_object('record', 'state', 'outcome', s.outcome,
  'canonical_id', s.canonical, 'to_project_row', s.target, 'winner_id', w.id, 'row', {state_row})
FROM st AS s JOIN project_state AS ps ON ps.id = s.id
LEFT JOIN st AS w ON w.canonical = s.canonical AND w.category IS s.category
  AND w.key IS s.key AND w.outcome IN ('stays', 'moves')
WHERE s.outcome IN ('moves', 'duplicate', 'history')
   OR (s.outcome = 'stays' AND s.project_id IN
       (SELECT target FROM tgt WHERE has_canonical = 0))
ORDER BY s.canonical, s.category, s.key""",
        rekey("memories", "rk_mem"),
        rekey("interactions", "rk_int"),
        """SELECT json_object('record', 'supersede', 'table', 'memories', 'id', id,
  'keeper_id', keeper, 'canonical_id', canonical)
FROM sup WHERE rn > 1 ORDER BY id""",
    ]


def _row_object(conn: sqlite3.Connection, table: str, alias: str) -> str:
    """json_object of every column of ``table`` (as ``alias``), by name."""
    cols = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    pairs = ", ".join(f'{_lit(c)}, {alias}."{c}"' for c in cols)
    return f"json_object({pairs})"


def write_companion(conn: sqlite3.Connection, path: Path, steps: list[float]) -> int:
    """The companion's records as gzip JSON lines (one member, level 1, fsynced,
    on this thread); how many records."""
    records = 0
    with path.open("wb") as raw:
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as gz:
            for sql in companion(conn):
                t = time.perf_counter()
                cur = conn.execute(sql)
                while rows := cur.fetchmany(5000):
                    records += len(rows)
                    gz.write(("\n".join(r[0] for r in rows) + "\n").encode("utf-8"))
                steps.append(round(time.perf_counter() - t, 4))
        raw.flush()
        os.fsync(raw.fileno())
    return records


def writes() -> list[str]:
    """apply's writes, from the decisions (losers before winners, shadows last)."""
    return [
        """UPDATE projects SET name = t.canonical FROM tgt AS t
WHERE projects.id = t.target AND t.has_canonical = 0""",
        "DELETE FROM project_state WHERE id IN"
        " (SELECT id FROM st WHERE outcome IN ('duplicate', 'history'))",
        """UPDATE project_state SET project_id = st.target FROM st
WHERE project_state.id = st.id AND st.outcome = 'moves'""",
        "UPDATE memories SET status = 'superseded' FROM sup"
        " WHERE memories.id = sup.id AND sup.rn > 1",
        # (UPDATE ... FROM names would scan the whole project index instead)
        "UPDATE memories SET project = (SELECT canonical FROM names WHERE raw = memories.project)"
        " WHERE project IN (SELECT raw FROM names)",
        "UPDATE interactions SET project ="
        " (SELECT canonical FROM names WHERE raw = interactions.project)"
        " WHERE project IN (SELECT raw FROM names)",
        "DELETE FROM projects WHERE id IN"
        " (SELECT g.pid FROM grp AS g JOIN tgt AS t USING (canonical) WHERE g.pid <> t.target)",
    ]


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _timed(conn: sqlite3.Connection, statements: list[str], steps: list[float]) -> None:
    for sql in statements:
        t = time.perf_counter()
        conn.execute(sql)
        steps.append(round(time.perf_counter() - t, 4))


def plan_only(db: Path, registry: Path, companion_path: Path | None = None) -> dict[str, Any]:
    """The dry-run floor: decisions and counts, read-only, TEMP tables in memory;
    with ``companion_path`` also the companion's records, written there."""
    t0 = time.perf_counter()
    uri = f"file:{db.absolute()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    steps: list[float] = []
    try:
        conn.execute(f"PRAGMA temp_store = {TEMP_STORE}")
        conn.execute("BEGIN")  # one read transaction: every statement sees one snapshot
        _timed(conn, decide(registry, plan_only=True), steps)
        t = time.perf_counter()
        row = conn.execute(COUNTS).fetchone()
        steps.append(round(time.perf_counter() - t, 4))
        records = None if companion_path is None else write_companion(conn, companion_path, steps)
        conn.execute("COMMIT")
    finally:
        conn.close()
    counts = dict(zip(COUNT_NAMES, (int(v) for v in row), strict=True))
    counts["collisions_unresolved"] = counts["collisions"]
    counts["extra_rekeyed"] = 0
    out = {"counts": counts, "seconds": round(time.perf_counter() - t0, 4), "steps": steps}
    if records is not None:
        out["records"] = records
    return out


def apply_floor(db: Path, registry: Path, archive: Path | None = None) -> dict[str, Any]:
    """The apply floor: decisions and writes in one transaction; with
    ``archive``, the companion's records written there (and fsynced) after
    the decisions and before the writes, as apply writes its archive (the
    rekey sets are built for it, as the dry-run floor builds them)."""
    t0 = time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    steps: list[float] = []
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA temp_store = {TEMP_STORE}")
        conn.execute(f"PRAGMA cache_size = {-APPLY_CACHE_KIB}")
        conn.execute("BEGIN IMMEDIATE")
        _timed(conn, decide(registry, plan_only=archive is not None), steps)
        (collisions,) = conn.execute(
            "SELECT COUNT(*) FROM st WHERE outcome = 'collision'"
        ).fetchone()
        if collisions:
            conn.execute("ROLLBACK")
            raise SystemExit(3)
        records = None if archive is None else write_companion(conn, archive, steps)
        _timed(conn, writes(), steps)
        t = time.perf_counter()
        conn.execute("COMMIT")
        steps.append(round(time.perf_counter() - t, 4))
    finally:
        conn.close()
    out: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 4), "steps": steps}
    if records is not None:
        out["records"] = records
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="apply's decisions and writes as hand-written SQL")
    ap.add_argument("--print-sql", action="store_true", help="print the script and exit")
    ap.add_argument(
        "--plan-only", action="store_true", help="decide and count only: read-only, no writes"
    )
    ap.add_argument(
        "--companion",
        type=Path,
        metavar="FILE",
        help="with --plan-only: also write the records of plan's companion to FILE",
    )
    ap.add_argument(
        "--archive",
        type=Path,
        metavar="FILE",
        help="without --plan-only: write apply's archive (the same records) to FILE first",
    )
    ap.add_argument("paths", nargs="+", type=Path, help="DB REGISTRY, or REGISTRY with --print-sql")
    args = ap.parse_args(argv)
    if args.print_sql:
        statements = decide(args.paths[-1], args.plan_only)
        if args.plan_only:
            print("PRAGMA temp_store = MEMORY;\nBEGIN;")
            print(";\n".join([*statements, COUNTS]) + ";\nCOMMIT;")
        else:
            print("PRAGMA foreign_keys = ON;\nBEGIN IMMEDIATE;")
            print(";\n".join([*statements, *writes()]) + ";\nCOMMIT;")
        return 0
    if len(args.paths) != 2:
        ap.error("give DB and REGISTRY")
    if args.companion is not None and not args.plan_only:
        ap.error("--companion goes with --plan-only")
    if args.archive is not None and args.plan_only:
        ap.error("--archive goes without --plan-only")
    if args.plan_only:
        done = plan_only(args.paths[0], args.paths[1], args.companion)
    else:
        done = apply_floor(args.paths[0], args.paths[1], args.archive)
    json.dump(done, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
