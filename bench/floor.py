"""The floor: the same writes as ``apply``, as a minimal hand-written SQL script.

    .venv/bin/python bench/floor.py DB REGISTRY          # migrate DB in place
    .venv/bin/python bench/floor.py --print-sql REGISTRY # show the script

What a DBA who knows the rules would type: an alias table from the registry,
set-based decisions, ``UPDATE ... FROM`` (or ``IN`` where that lets SQLite
drive from the small side) and deletes, in one ``BEGIN IMMEDIATE``
transaction with foreign keys on, through Python's sqlite3. No safety rails,
no backup, no archive, no report, no fingerprint: the cost of the writes and
of the least work that decides them. run.py checks after every
floor run that the database it leaves has the same rows as apply's.

It folds names in SQL with ``lower(trim(x, ' ' || char(9)))``, which matches
the tool's Unicode-aware fold only for ASCII names padded with spaces and
tabs: true of bench/generate.py's data, not of AtoCore databases in general.
It has no collision handling (the bench data has none).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

FOLD = "lower(trim({x}, ' ' || char(9)))"


def alias_rows(registry: Path) -> list[tuple[str, str, int]]:
    """(folded name, canonical id, is the id itself) for every id and alias."""
    doc = json.loads(registry.read_text("utf-8"))
    out: list[tuple[str, str, int]] = []
    for p in doc["projects"]:
        out.append((p["id"].strip().lower(), p["id"], 1))
        out += [(a.strip().lower(), p["id"], 0) for a in p.get("aliases", [])]
    return out


def script(registry: Path) -> list[str]:
    """The floor, statement by statement."""
    fold_name = FOLD.format(x="p.name")
    fold_raw = FOLD.format(x="raw")
    values = ", ".join(
        "(" + ", ".join([_lit(f), _lit(c), str(i)]) + ")" for f, c, i in alias_rows(registry)
    )
    return [
        "CREATE TEMP TABLE alias (folded TEXT PRIMARY KEY, canonical TEXT NOT NULL, is_id INT)",
        f"INSERT INTO alias VALUES {values}",
        # every recognised project row, and per project with a shadow the row that stays
        f"""CREATE TEMP TABLE grp AS
SELECT p.id AS pid, a.canonical, a.is_id
FROM projects AS p JOIN alias AS a ON a.folded = {fold_name}""",
        """CREATE TEMP TABLE tgt AS
SELECT canonical, COALESCE(MAX(CASE WHEN is_id THEN pid END), MIN(pid)) AS target,
       MAX(is_id) AS has_canonical
FROM grp GROUP BY canonical HAVING MIN(is_id) = 0""",
        """UPDATE projects SET name = t.canonical FROM tgt AS t
WHERE projects.id = t.target AND t.has_canonical = 0""",
        # project_state: rank each (project, category, key); the first stays or moves
        """CREATE TEMP TABLE st AS
SELECT ps.id, ps.project_id, t.target,
       ROW_NUMBER() OVER (PARTITION BY g.canonical, ps.category, ps.key
                          ORDER BY ps.status = 'active' DESC, g.is_id DESC,
                                   ps.updated_at DESC, ps.id) AS rn
FROM tgt AS t JOIN grp AS g ON g.canonical = t.canonical
JOIN project_state AS ps ON ps.project_id = g.pid""",
        "DELETE FROM project_state WHERE id IN (SELECT id FROM st WHERE rn > 1)",
        """UPDATE project_state SET project_id = st.target FROM st
WHERE project_state.id = st.id AND st.rn = 1 AND st.project_id <> st.target""",
        # the free-text columns: every spelling that folds to an id or alias
        "CREATE TEMP TABLE names (raw TEXT PRIMARY KEY, canonical TEXT NOT NULL)",
        f"""INSERT INTO names
SELECT raw, a.canonical FROM (SELECT DISTINCT project AS raw FROM memories
                              UNION SELECT DISTINCT project FROM interactions)
JOIN alias AS a ON a.folded = {fold_raw} WHERE raw <> a.canonical""",
        """CREATE TEMP TABLE moved AS
SELECT m.id, n.canonical, m.memory_type, m.content, m.updated_at
FROM names AS n CROSS JOIN memories AS m ON m.project = n.raw WHERE +m.status = 'active'""",
        "CREATE INDEX temp.moved_k ON moved (canonical, memory_type, content)",
        # active twins that a moved memory will join: the newest stays active
        """UPDATE memories SET status = 'superseded' FROM (
  SELECT id, ROW_NUMBER() OVER (PARTITION BY canonical, memory_type, content
                                ORDER BY updated_at DESC, rekeyed, id) AS rn
  FROM (SELECT id, canonical, memory_type, content, updated_at, 1 AS rekeyed FROM moved
        UNION ALL
        SELECT m.id, m.project, m.memory_type, m.content, m.updated_at, 0 FROM memories AS m
        WHERE m.status = 'active' AND EXISTS (SELECT 1 FROM moved AS x
          WHERE x.canonical = m.project AND x.memory_type = m.memory_type
            AND x.content = m.content))
) AS d WHERE memories.id = d.id AND d.rn > 1""",
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


def run(db: Path, registry: Path) -> dict[str, Any]:
    """Run the floor on ``db`` in one transaction; return per-statement seconds."""
    t0 = time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    steps: list[float] = []
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")
        for sql in script(registry):
            t = time.perf_counter()
            conn.execute(sql)
            steps.append(round(time.perf_counter() - t, 4))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return {"seconds": round(time.perf_counter() - t0, 4), "steps": steps}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="apply's writes as a hand-written SQL script")
    ap.add_argument("--print-sql", action="store_true", help="print the script and exit")
    ap.add_argument("paths", nargs="+", type=Path, help="DB REGISTRY, or REGISTRY with --print-sql")
    args = ap.parse_args(argv)
    if args.print_sql:
        print("PRAGMA foreign_keys = ON;\nBEGIN IMMEDIATE;")
        print(";\n".join(script(args.paths[-1])) + ";\nCOMMIT;")
        return 0
    if len(args.paths) != 2:
        ap.error("give DB and REGISTRY")
    json.dump(run(args.paths[0], args.paths[1]), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
