"""apply, like plan, runs a number of SQL statements independent of the row count.

SPEC §4: planning is set-based, a bounded number of statements whatever the
size of the database. The same holds for apply (its in-transaction planning,
its archive, its writes and its postconditions). Two databases with the same
shape (the same project rows and the same distinct names) but 40 times the
rows must cost the same number of statements; per-row queries would not.
Statements are counted with SQLite's own trace hook on the tool's real
connection, not by mocking sqlite3.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import atocore_identity.commands.base as base
import atocore_identity.database as database
import atocore_identity.transaction as transaction
from conftest import build_db, rows, run_cli, write_registry

REGISTRY = [
    {"id": "p04-gigabit", "aliases": ["p04", "gigabit"]},
    {"id": "p05-interferometer", "aliases": ["p05", "interferometer"]},
    {"id": "p06-polisher", "aliases": ["p06", "polisher"]},
]
PROJECTS = [
    ("c05", "p05-interferometer"),
    ("s05a", "p05"),
    ("s05b", "Interferometer"),
    ("c04", "P04-Gigabit"),  # a case variant: the canonical row
    ("s04", "gigabit"),
    ("s06", "p06"),  # no canonical row: renamed into it
    ("u1", "scratch"),  # unregistered
]
# every raw name in the free-text columns, the same set at every scale
NAMES = [
    "p05",
    " P05",
    "interferometer",
    "p05-interferometer",
    "P05-Interferometer ",
    "GIGABIT",
    "p04-gigabit",
    "p06",
    "polisher\t",
    "scratch",
]
TS = "2025-01-{:02d} 00:00:00"


def dataset(scale: int) -> dict[str, list[tuple[Any, ...]]]:
    """The same shape at every scale: ``scale`` multiplies every row count."""
    state: list[tuple[Any, ...]] = []
    for k in range(10 * scale):
        cat, key = ("spec", "decision")[k % 2], f"k{k}"
        value = f"v{k}"
        # canonical active, shadow active duplicate, shadow inactive history
        state.append((f"st{k}a", "c05", cat, key, value, "active", TS.format(1 + k % 9)))
        state.append((f"st{k}b", "s05a", cat, key, value, "active", TS.format(10)))
        state.append((f"st{k}c", "s05b", cat, key, f"old{k}", "superseded", TS.format(11)))
        # only under shadows: moves
        state.append((f"st{k}d", "s04", cat, key, value, "active", TS.format(12)))
        state.append((f"st{k}e", "s06", cat, key, value, "invalid", TS.format(13)))
    memories: list[tuple[Any, ...]] = []
    interactions: list[tuple[Any, ...]] = []
    for i in range(200 * scale):
        name = NAMES[i % len(NAMES)]
        status = ("active", "active", "candidate", "superseded", "invalid")[i % 5]
        content = f"note {i}"
        if i % 20 == 0:  # an alias-keyed twin of a canonical memory below
            name, status, content = "p05", "active", f"twin {i}"
        memories.append((f"m{i}", "fact", content, name, status, TS.format(1 + i % 28)))
        if i % 20 == 0:
            twin = (f"m{i}t", "fact", content, "p05-interferometer", "active", TS.format(28))
            memories.append(twin)
        interactions.append((f"i{i}", name))
    return {"state": state, "memories": memories, "interactions": interactions}


def counted(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Callable[[], None]]:
    """Trace every statement run on every connection the tool opens.

    ``open_database`` is wrapped where it is defined and wherever a module
    imported it by name; the connection it returns is the real one.
    """
    seen: list[str] = []
    real = database.open_database

    def traced_open(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real(*args, **kwargs)
        conn.set_trace_callback(seen.append)
        return conn

    modules = [m for m in (database, transaction, base) if hasattr(m, "open_database")]
    for module in modules:
        monkeypatch.setattr(module, "open_database", traced_open)

    def undo() -> None:
        for module in modules:
            monkeypatch.setattr(module, "open_database", real)

    return seen, undo


def run_counted(
    monkeypatch: pytest.MonkeyPatch, root: Path, scale: int, command: str, *extra: str
) -> tuple[list[str], Path, Path]:
    root.mkdir()
    db = build_db(root / "atocore.db", projects=PROJECTS, **dataset(scale))
    reg = write_registry(root / "registry.json", REGISTRY)
    reports = root / "reports"
    seen, undo = counted(monkeypatch)
    try:
        args = ("--db", db, "--registry", reg, "--report-dir", reports)
        result = run_cli(command, *args, *extra)
    finally:
        undo()
    assert result.code == 0, result.stderr
    return list(seen), db, reports


def test_plan_statement_count_is_independent_of_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small, _, _ = run_counted(monkeypatch, tmp_path / "small", 1, "plan")
    large, _, _ = run_counted(monkeypatch, tmp_path / "large", 40, "plan")
    assert small, "the trace saw no statement: the counting is broken"
    assert len(large) == len(small)


def test_apply_statement_count_is_independent_of_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small, small_db, small_reports = run_counted(
        monkeypatch, tmp_path / "small", 1, "apply", "--yes"
    )
    large, large_db, large_reports = run_counted(
        monkeypatch, tmp_path / "large", 40, "apply", "--yes"
    )

    # both really migrated, and the large one moved 40 times the rows (more
    # than the planner's 5,000-row fetch chunk in one stream)
    def report(reports: Path) -> dict[str, Any]:
        (path,) = sorted(reports.glob("apply-*.json"))
        doc: dict[str, Any] = json.loads(path.read_text("utf-8"))
        assert doc["status"] == "applied"
        return doc["counts"]

    s_counts, l_counts = report(small_reports), report(large_reports)
    for key in ("memories_rekeyed", "interactions_rekeyed", "memories_superseded", "state_moved"):
        assert s_counts[key] > 0
        assert l_counts[key] == 40 * s_counts[key], key
    assert l_counts["memories_rekeyed"] > 5000
    for db in (small_db, large_db):
        left = rows(
            db,
            "SELECT COUNT(*) FROM memories WHERE project NOT IN"
            " ('p04-gigabit', 'p05-interferometer', 'p06-polisher', 'scratch')",
        )
        assert left == [(0,)]
        assert rows(db, "SELECT COUNT(*) FROM projects") == [(4,)]

    assert small, "the trace saw no statement: the counting is broken"
    assert len(large) == len(small), _first_difference(small, large)


def _first_difference(small: list[str], large: list[str]) -> str:
    for i, (a, b) in enumerate(zip(small, large, strict=False)):
        if a != b:
            return f"statement #{i} differs:\n  small: {a[:300]}\n  large: {b[:300]}"
    return f"{len(small)} statements vs {len(large)}"
