"""Time every statement of the tool's own SQL, and show its query plan.

    atocore-identity plan --db DB --registry REG --format sql > script.sql
    .venv/bin/python bench/statements.py DB script.sql             # read-only replay
    .venv/bin/python bench/statements.py --writes COPY script.sql  # also the writes

``plan --format sql`` prints the statements that build the plan's TEMP tables
(``planner`` prepare) and the writes apply runs after them. This replays that
text, statement by statement, on a connection set up like the tool's (TEMP
tables in a file, ``PRAGMA temp_store = FILE``; with ``--writes`` also
foreign keys on and apply's 12 MiB page cache), and prints one line per
statement: seconds, then EXPLAIN QUERY PLAN. It drives nothing but the
printed SQL, so it keeps working while the tool's modules move. Without
``--writes`` the database is opened read-only and the writes are only
explained; with ``--writes`` they run inside ``BEGIN IMMEDIATE`` and are
rolled back (``--commit`` commits instead, on a copy you can lose).

What the replay does not see: the tool's Python between statements (the
survey's GROUP BYs, the fingerprint, the companion). cProfile shows those.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

APPLY_CACHE_KIB = 12288  # apply's PRAGMA cache_size (KiB), see applier.py


def split_script(text: str) -> tuple[list[str], list[str]]:
    """(prepare statements, write statements) of a ``plan --format sql`` script."""
    prepare: list[str] = []
    writes: list[str] = []
    into = prepare
    buf = ""
    for line in text.splitlines(keepends=True):
        if not buf and line.startswith("--"):
            if line.strip() == "-- the writes":
                into = writes
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            sql = buf.strip().rstrip(";").strip()
            buf = ""
            if sql.upper() not in ("BEGIN IMMEDIATE", "COMMIT"):
                into.append(sql)
    return prepare, writes


def replay(db: Path, script: Path, writes: bool, commit: bool) -> list[dict[str, Any]]:
    prepare, write = split_script(script.read_text("utf-8"))
    mode = "rw" if writes else "ro"
    conn = sqlite3.connect(f"file:{db.absolute()}?mode={mode}", uri=True, isolation_level=None)
    out: list[dict[str, Any]] = []
    try:
        conn.execute("PRAGMA temp_store = FILE")
        if writes:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA cache_size = {-APPLY_CACHE_KIB}")
            conn.execute("BEGIN IMMEDIATE")
        for phase, statements in (("prepare", prepare), ("write", write)):
            for sql in statements:
                eqp = _explain(conn, sql)
                if phase == "write" and not writes:
                    out.append({"phase": phase, "seconds": None, "sql": sql, "plan": eqp})
                    continue
                t = time.perf_counter()
                cur = conn.execute(sql)
                while cur.fetchmany(10_000):
                    pass
                dt = time.perf_counter() - t
                out.append({"phase": phase, "seconds": round(dt, 4), "sql": sql, "plan": eqp})
        if writes:
            t = time.perf_counter()
            conn.execute("COMMIT" if commit else "ROLLBACK")
            verb = "COMMIT" if commit else "ROLLBACK"
            out.append({"phase": "end", "seconds": round(time.perf_counter() - t, 4), "sql": verb})
    finally:
        conn.close()
    return out


def _explain(conn: sqlite3.Connection, sql: str) -> list[str]:
    head = sql.lstrip().upper()
    if head.startswith(("DROP", "PRAGMA")):
        return []
    body = sql
    if head.startswith("CREATE"):
        # CREATE TABLE ... AS SELECT (or WITH ...): explain the query; other DDL has none
        cut = _as_select(sql)
        if cut is None:
            return []
        body = cut
    try:
        rows = conn.execute("EXPLAIN QUERY PLAN " + body).fetchall()
    except sqlite3.Error as exc:
        return [f"(no plan: {exc})"]
    depth = {0: 0}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, 0) + 1
        lines.append("  " * (depth[node] - 1) + str(detail))
    return lines


def _as_select(sql: str) -> str | None:
    upper = sql.upper()
    for marker in (" AS\nWITH", " AS WITH", " AS\nSELECT", " AS SELECT"):
        i = upper.find(marker)
        if i >= 0:
            return sql[i + 3 :].lstrip()
    return None


def render(rows: list[dict[str, Any]], top: int | None) -> str:
    lines = []
    ranked = sorted(
        (r for r in rows if r["seconds"] is not None), key=lambda r: r["seconds"], reverse=True
    )
    total = sum(r["seconds"] for r in ranked)
    lines.append(f"{len(rows)} statements, {total:.3f} s in all\n")
    for r in ranked[:top] if top else rows:
        flat = " ".join(r["sql"].split())
        secs = "   n/a " if r["seconds"] is None else f"{r['seconds']:7.3f}"
        lines.append(f"{secs} s  [{r['phase']}] {flat[:220]}")
        lines += [f"            {p}" for p in r.get("plan", [])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="time and explain every statement of plan's SQL")
    ap.add_argument("db", type=Path)
    ap.add_argument("script", type=Path, help="the output of `plan --format sql`")
    ap.add_argument("--writes", action="store_true", help="also run the writes (on a copy!)")
    ap.add_argument("--commit", action="store_true", help="with --writes: COMMIT, not ROLLBACK")
    ap.add_argument("--top", type=int, help="only the N slowest statements")
    ap.add_argument("--json", action="store_true", help="JSON instead of text")
    args = ap.parse_args(argv)
    rows = replay(args.db, args.script, args.writes, args.commit)
    if args.json:
        json.dump(rows, sys.stdout, indent=1)
        print()
    else:
        sys.stdout.write(render(rows, args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
