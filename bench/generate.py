"""A deterministic generator of synthetic legacy AtoCore databases for the benchmark.

    .venv/bin/python bench/generate.py --size 100000 --out bench/out/base-100000.db

What one database holds, for ``--size N`` (every choice comes from one seeded
``random.Random``, so a seed and a size always give the same rows):

- 50 registered projects with 3 aliases each (the registry is written beside
  the database); 45 have a canonical ``projects`` row (every seventh spelled
  as a case variant, which *is* the canonical row), 5 have none and one of
  their shadows is renamed into it; every alias has a shadow row (150), and 5
  unregistered project rows exist.
- project_state: 500 (category, key) slots per project; the canonical row
  holds 60 % of them and each shadow 27 % (about 20,000 shadow rows), with
  statuses active 60 %, superseded 25 %, invalid 15 %. Every active row at a
  slot carries the slot's one value, so there is no collision; inactive rows
  carry it or another value half the time (duplicates and history).
- N memories and N interactions; 10 % of each alias-keyed with random casing
  and whitespace (one in five of those a variant spelling of the canonical
  id), 1 % of the rest unregistered names, the others canonical. Each alias
  and id has 16 fixed spellings (4 random casings, each bare or padded), so
  the number of distinct names (at most 3,200) does not grow with the rows and
  the sizes differ in rows only. 1 % of the
  memories are active duplicates (same memory_type and content) of an earlier
  active memory of the same project, written under an alias.

Names are ASCII with spaces and tabs only, so SQLite's ``lower``/``trim`` fold
them as Python does: the hand-written floor (bench/floor.py) relies on that.
Tables come from the packaged schema (``atocore_identity.demo.schema_sql``);
its indexes are created after the rows are in, which is faster and gives the
same database.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atocore_identity.demo import schema_sql

GENERATOR_VERSION = 2
DEFAULT_SEED = 4
N_PROJECTS = 50
KEYS_PER_PROJECT = 500  # 5 categories x 100 keys
CATEGORIES = ("status", "decision", "spec", "owner", "budget")
MEMORY_TYPES = ("fact", "preference", "decision", "episode", "procedure")
CLIENTS = ("claude-code", "cursor", "cli", "web")
_WORDS = (
    "alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega aurora basalt"
    " cobalt dynamo ember falcon glacier harbor indigo jasper kestrel lumen magnet nebula"
    " onyx pylon quartz raven saturn tundra umbra vortex willow xenon yarrow zephyr anchor"
    " beacon cipher drift echo flux granite helix ion juniper krypton lattice meridian"
    " nimbus orbit prism quasar ridge sonar tensor"
)
WORDS = tuple(_WORDS.split())
_VOCAB = (
    "the a mirror lens beam laser stage mount spec bench rig coating silver aluminium"
    " phase align drift noise gain offset filter sensor motor torque axis loop control"
    " firmware driver board cable link speed budget risk owner review test run batch"
    " sample target error margin tolerance thermal vacuum pump valve flow pressure"
    " calibrate measure log"
)
VOCAB = tuple(_VOCAB.split())
SPELLINGS = 16  # distinct spellings per alias or id in the alias-keyed rows
PADDINGS = (("", ""), (" ", ""), ("", "  "), ("\t", " "))
START = 1_704_067_200  # 2024-01-01 00:00:00 UTC
SPAN = 2 * 365 * 86_400


@dataclass(frozen=True)
class RegProject:
    id: str
    aliases: tuple[str, str, str]


def registry_projects() -> list[RegProject]:
    out = []
    for i in range(N_PROJECTS):
        word = WORDS[i]
        out.append(RegProject(f"p{i:02d}-{word}", (f"p{i:02d}", word, f"{word} lab")))
    return out


def registry_json(projects: list[RegProject]) -> dict[str, Any]:
    return {
        "projects": [
            {"id": p.id, "aliases": list(p.aliases), "description": f"synthetic project {p.id}"}
            for p in projects
        ]
    }


class Gen:
    """Row factories over one seeded random stream."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def uid(self) -> str:
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def ts(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(START + self.rng.randrange(SPAN)))

    def casing(self, name: str) -> str:
        return "".join(c.upper() if self.rng.random() < 0.5 else c for c in name)

    def spellings(self, name: str) -> list[str]:
        """SPELLINGS random casings of ``name``, each bare and with three paddings."""
        cased = [self.casing(name) for _ in range(SPELLINGS // 4)]
        return [f"{pre}{c}{post}" for c in cased for pre, post in PADDINGS]

    def text(self, n: int) -> str:
        return " ".join(self.rng.choice(VOCAB) for _ in range(n))


def _schema_parts() -> tuple[list[str], list[str]]:
    """The packaged schema split into table statements and index statements."""
    tables: list[str] = []
    indexes: list[str] = []
    for stmt in schema_sql().split(";"):
        lines = [ln for ln in stmt.splitlines() if not ln.strip().startswith("--")]
        sql = "\n".join(lines).strip()
        if not sql:
            continue
        (indexes if sql.upper().startswith("CREATE INDEX") else tables).append(sql)
    return tables, indexes


def generate(db: Path, registry: Path, size: int, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """Write a fresh database of ``size`` memories and interactions, and its registry."""
    if db.exists():
        db.unlink()
    g = Gen(seed)
    reg = registry_projects()
    registry.write_text(json.dumps(registry_json(reg), indent=1) + "\n", "utf-8")
    tables, indexes = _schema_parts()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB while building
        for sql in tables:
            conn.execute(sql)
        conn.execute("BEGIN")
        stats = _fill(conn, g, reg, size)
        for sql in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")  # no ANALYZE: AtoCore's own databases carry no statistics
    finally:
        conn.close()
    stats.update(size=size, seed=seed, generator_version=GENERATOR_VERSION)
    return stats


def _fill(conn: sqlite3.Connection, g: Gen, reg: list[RegProject], size: int) -> dict[str, Any]:
    rng = g.rng
    stats: dict[str, Any] = {}

    # -- projects: canonical rows, shadows, unregistered ------------------------
    project_rows: list[tuple[str, str, str]] = []
    holders: list[list[tuple[str, bool]]] = []  # per project: (row id, is canonical)
    for i, p in enumerate(reg):
        rows: list[tuple[str, bool]] = []
        if i % 10 != 9:
            name = p.id[0].upper() + p.id[1:] if i % 7 == 3 else p.id
            rid = g.uid()
            project_rows.append((rid, name, g.ts()))
            rows.append((rid, True))
        for alias in p.aliases:
            rid = g.uid()
            name = g.casing(alias) + (" " if rng.random() < 0.1 else "")
            project_rows.append((rid, name, g.ts()))
            rows.append((rid, False))
        holders.append(rows)
    unregistered = [f"scratch-{k}" for k in range(5)]
    for name in unregistered:
        project_rows.append((g.uid(), name, g.ts()))
    conn.executemany(
        "INSERT INTO projects (id, name, description, created_at, updated_at)"
        " VALUES (?, ?, '', ?, ?)",
        [(rid, name, ts, ts) for rid, name, ts in project_rows],
    )
    stats["projects"] = len(project_rows)

    # -- project_state: one active value per slot, so no collision ----------------
    statuses = ("active",) * 12 + ("superseded",) * 5 + ("invalid",) * 3
    state: list[tuple[Any, ...]] = []
    shadow_state = 0
    for rows in holders:
        for slot in range(KEYS_PER_PROJECT):
            category, key = CATEGORIES[slot % 5], f"k{slot // 5:03d}"
            value = f"v{slot}-{rng.randrange(10**6)}"
            for rid, canonical in rows:
                if rng.random() >= (0.6 if canonical else 0.27):
                    continue
                status = rng.choice(statuses)
                val = value
                if status != "active" and rng.random() < 0.5:
                    val = f"old-{rng.randrange(10**6)}"
                ts = g.ts()
                state.append((g.uid(), rid, category, key, val, status, ts, ts))
                shadow_state += not canonical
    conn.executemany(
        "INSERT INTO project_state (id, project_id, category, key, value, status, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        state,
    )
    stats["state_rows"] = len(state)
    stats["shadow_state_rows"] = shadow_state

    # -- memories and interactions ----------------------------------------------
    counter = {"alias_keyed": 0, "duplicates": 0}

    spelled = [([g.spellings(a) for a in p.aliases], g.spellings(p.id)) for p in reg]

    def project_name() -> tuple[int | None, str, bool]:
        r = rng.random()
        if r < 0.10:
            p = rng.randrange(N_PROJECTS)
            aliases, ids = spelled[p]
            names = ids if rng.random() < 0.2 else rng.choice(aliases)
            return p, rng.choice(names), True
        if r < 0.109:
            return None, rng.choice(unregistered), False
        p = rng.randrange(N_PROJECTS)
        return p, reg[p].id, False

    mem_status = ("active",) * 14 + ("candidate",) * 3 + ("superseded",) * 2 + ("invalid",)
    reservoir: list[list[tuple[str, str]]] = [[] for _ in range(N_PROJECTS)]

    def memories() -> Iterator[tuple[Any, ...]]:
        for i in range(size):
            p, name, alias = project_name()
            mtype = rng.choice(MEMORY_TYPES)
            content = f"{mtype} {i}: {g.text(8)}"
            status = rng.choice(mem_status)
            if alias and p is not None and reservoir[p] and rng.random() < 0.1:
                mtype, content = rng.choice(reservoir[p])
                status = "active"
                counter["duplicates"] += 1
            elif p is not None and status == "active":
                bucket = reservoir[p]
                if len(bucket) < 1000:
                    bucket.append((mtype, content))
                else:
                    bucket[rng.randrange(1000)] = (mtype, content)
            counter["alias_keyed"] += alias
            ts = g.ts()
            chunk = g.uid() if rng.random() < 0.5 else None
            conf = round(rng.random(), 3)
            yield (g.uid(), mtype, content, name, chunk, conf, status, ts, ts)

    conn.executemany(
        "INSERT INTO memories (id, memory_type, content, project, source_chunk_id, confidence,"
        " status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        memories(),
    )
    stats["memories"] = size
    stats["memories_alias_keyed"] = counter["alias_keyed"]
    stats["memory_duplicates_written"] = counter["duplicates"]

    counter["alias_keyed"] = 0

    def interactions() -> Iterator[tuple[Any, ...]]:
        for _ in range(size):
            _, name, alias = project_name()
            counter["alias_keyed"] += alias
            yield (
                g.uid(),
                "how do I " + g.text(7) + "?",
                g.text(14),
                name,
                rng.choice(CLIENTS),
                f"s{rng.randrange(10**6):06d}",
                g.ts(),
            )

    conn.executemany(
        "INSERT INTO interactions (id, prompt, response, project, client, session_id,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        interactions(),
    )
    stats["interactions"] = size
    stats["interactions_alias_keyed"] = counter["alias_keyed"]
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, required=True, help="memories (and interactions)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--out", type=Path, required=True, help="database path to (re)write")
    ap.add_argument("--registry", type=Path, help="default: <out>.registry.json")
    args = ap.parse_args(argv)
    registry = args.registry or args.out.with_suffix(".registry.json")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stats = generate(args.out, registry, args.size, args.seed)
    stats["seconds"] = round(time.perf_counter() - t0, 2)
    json.dump(stats, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
