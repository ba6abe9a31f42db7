"""Planning is set-based (SPEC §4): the number of SQL statements it runs does
not grow with the number of rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from atocore_identity.database import open_database
from atocore_identity.demo import schema_sql
from atocore_identity.plan_objects import Plan
from atocore_identity.planner import build_plan
from atocore_identity.registry import load_registry
from atocore_identity.targets import resolve_targets
from conftest import DEFAULT_REGISTRY, write_registry

# Every group shape: canonical row plus several shadows, shadows only (a rename),
# a non-ASCII shadow, and unregistered rows.
PROJECTS = [
    ("c05", "p05-interferometer"),
    ("s05a", "p05"),
    ("s05b", "interferometer"),
    ("s05c", "P05"),
    ("s06a", "polisher"),
    ("s06b", "p06"),
    ("c07", "p07-étalon"),
    ("s07", "ÉTALON"),
    ("u", "p99-other"),
]
# The same set of distinct names at every size: only the row counts grow.
MEMORY_NAMES = [
    "p05-interferometer",
    "p05",
    "Interferometer",
    " p05-interferometer",
    "P05-Interferometer",
    "p06",
    "polisher",
    "ÉTALON",
    "p99",
]
INTERACTION_NAMES = ["P05", "p05-interferometer", "polisher", "p07", "nobody"]
STATUSES = ["active", "active", "candidate", "superseded", "invalid"]
GROUPS = [["c05", "s05a", "s05b", "s05c"], ["s06a", "s06b"], ["c07", "s07"], ["u"]]


def build_sized_db(path: Path, total: int) -> Path:
    n_state = total // 5
    n_memories = total * 2 // 5
    n_interactions = total - n_state - n_memories
    state = []
    for i in range(n_state):
        group = GROUPS[i % len(GROUPS)]
        key_no, member = divmod(i // len(GROUPS), len(group))
        project = group[member]
        # equal active values mostly (duplicates), some history, a few collisions
        value = f"v{key_no}" if key_no % 40 else f"v{key_no}-{member}"
        status = "active" if member < 2 else ("superseded" if key_no % 2 else "invalid")
        if member >= 2 and key_no % 3 == 0:
            value = f"old{key_no}"  # an inactive row with another value: history
        state.append(
            (f"st{i}", project, "cfg", f"k{key_no}", value, status, f"2025-{1 + i % 12:02d}-01")
        )
    memories = [
        (
            f"m{i}",
            "fact",
            f"content {i % (n_memories // 3 + 1)}",  # repeated contents: de-duplication
            MEMORY_NAMES[i % len(MEMORY_NAMES)],
            STATUSES[i % len(STATUSES)],
            f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}",
        )
        for i in range(n_memories)
    ]
    interactions = [
        (f"i{i}", INTERACTION_NAMES[i % len(INTERACTION_NAMES)]) for i in range(n_interactions)
    ]
    conn = sqlite3.connect(path)
    conn.executescript(schema_sql())
    conn.executemany("INSERT INTO projects (id, name) VALUES (?, ?)", PROJECTS)
    conn.executemany(
        "INSERT INTO project_state (id, project_id, category, key, value, status, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        state,
    )
    conn.executemany(
        "INSERT INTO memories (id, memory_type, content, project, status, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        memories,
    )
    conn.executemany(
        "INSERT INTO interactions (id, prompt, project) VALUES (?, 'q', ?)", interactions
    )
    conn.commit()
    conn.close()
    return path


def traced_plan(db: Path, registry_path: Path) -> tuple[Plan, list[str]]:
    registry = load_registry(registry_path)
    conn = open_database(db, readonly=True)
    try:
        targets, missing = resolve_targets(conn, [])
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        try:
            plan = build_plan(conn, registry, targets, missing)
        finally:
            conn.set_trace_callback(None)
    finally:
        conn.close()
    return plan, statements


def test_statement_count_does_not_grow_with_rows(tmp_path: Path) -> None:
    registry = write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY)
    small = build_sized_db(tmp_path / "small.db", 1_000)
    large = build_sized_db(tmp_path / "large.db", 20_000)

    small_plan, small_sql = traced_plan(small, registry)
    large_plan, large_sql = traced_plan(large, registry)

    # The databases really differ in size, and the plans really act on the rows.
    assert large_plan.counts["memories_rekeyed"] > 15 * small_plan.counts["memories_rekeyed"] > 0
    assert (
        large_plan.counts["interactions_rekeyed"] > 15 * small_plan.counts["interactions_rekeyed"]
    )
    moved = ("state_moved", "state_archived_duplicate", "state_archived_history")
    assert sum(large_plan.counts[k] for k in moved) > 15 * sum(small_plan.counts[k] for k in moved)
    assert large_plan.counts["state_archived_history"] > 0
    assert large_plan.counts["memories_superseded"] > small_plan.counts["memories_superseded"] > 0
    assert len(large_plan.collisions) > len(small_plan.collisions) > 0

    assert len(large_sql) == len(small_sql), _diff(small_sql, large_sql)
    assert len(small_sql) < 100  # a handful of statements, not one per row


def _diff(a: list[str], b: list[str]) -> str:
    def shape(sql: str) -> str:
        return sql.split("(")[0][:60]

    return f"small: {[shape(s) for s in a]}\nlarge: {[shape(s) for s in b]}"
