"""Shared test helpers: real SQLite files built from the reference schema,
registries on disk, and an in-process runner for the CLI's ``main``."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from atocore_identity.cli import main
from atocore_identity.demo import schema_sql

TS = "2025-01-01 00:00:00"


def build_db(
    path: Path,
    projects: Iterable[tuple[str, str]] = (),
    state: Iterable[Sequence[Any]] = (),
    memories: Iterable[Sequence[Any]] = (),
    interactions: Iterable[Sequence[Any]] = (),
) -> Path:
    """A database from the reference schema.

    projects: (id, name); state: (id, project_id, category, key, value, status,
    updated_at); memories: (id, memory_type, content, project, status,
    updated_at); interactions: (id, project).
    """
    conn = sqlite3.connect(path)
    conn.executescript(schema_sql())
    conn.executemany("INSERT INTO projects (id, name) VALUES (?, ?)", list(projects))
    conn.executemany(
        "INSERT INTO project_state (id, project_id, category, key, value, status, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [tuple(r) for r in state],
    )
    conn.executemany(
        "INSERT INTO memories (id, memory_type, content, project, status, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [tuple(r) for r in memories],
    )
    conn.executemany(
        "INSERT INTO interactions (id, prompt, project) VALUES (?, 'q', ?)",
        [tuple(r) for r in interactions],
    )
    conn.commit()
    conn.close()
    return path


def write_registry(path: Path, projects: Sequence[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"projects": list(projects)}, ensure_ascii=False), "utf-8")
    return path


DEFAULT_REGISTRY = [
    {"id": "p04-gigabit", "aliases": ["p04", "gigabit"]},
    {"id": "p05-interferometer", "aliases": ["p05", "interferometer"]},
    {"id": "p06-polisher", "aliases": ["p06", "polisher"]},
    {"id": "p07-étalon", "aliases": ["p07", "Étalon"]},
]


def content_digest(path: Path) -> str:
    """sha256 over every row of every table, independent of page layout."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    h = hashlib.sha256()
    try:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        ]
        for t in tables:
            h.update(t.encode())
            for row in sorted(repr(r) for r in conn.execute(f'SELECT * FROM "{t}"')):
                h.update(row.encode())
    finally:
        conn.close()
    return h.hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(path: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(*args: str | Path) -> Result:
    """Run ``atocore-identity ARGS`` in-process, as a user would, no terminal."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    stdin = sys.stdin
    sys.stdin = io.StringIO("")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        sys.stdin = stdin
    return Result(code, out.getvalue(), err.getvalue())


@dataclass
class Env:
    """A database, a registry and a report dir in one temporary directory."""

    root: Path
    db: Path
    registry: Path
    reports: Path

    def args(self) -> list[str]:
        return [
            "--db",
            str(self.db),
            "--registry",
            str(self.registry),
            "--report-dir",
            str(self.reports),
        ]

    def run(self, command: str, *extra: str | Path) -> Result:
        return run_cli(command, *self.args(), *extra)


@pytest.fixture
def make_env(tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(registry: Sequence[dict[str, Any]] = DEFAULT_REGISTRY, **tables: Any) -> Env:
        db = build_db(tmp_path / "atocore.db", **tables)
        reg = write_registry(tmp_path / "registry.json", registry)
        return Env(tmp_path, db, reg, tmp_path / "reports")

    return make


def legacy_tables() -> dict[str, Any]:
    """make_env(**legacy_tables()): shadows, a renamed shadow, every state outcome,
    duplicate and variant memories, interactions and unregistered names; no collision.

    After apply: projects 7 -> 4 (ps05, ps05b, ps06b deleted; ps06 renamed to
    p06-polisher); state 11 -> 7 (s2, s4, s6, s8 archived; s3, s7, s9, s10 moved);
    memories m1, m3, m4, m7 rekeyed and m2 superseded; interactions i1, i2 rekeyed.
    """
    return {
        "projects": [
            ("pc05", "p05-interferometer"),
            ("ps05", "p05"),
            ("ps05b", "interferometer"),
            ("ps06", "p06"),
            ("ps06b", "polisher"),
            ("pc04", "p04-gigabit"),
            ("pu", "unregistered-x"),
        ],
        "state": [
            ("s1", "pc05", "cfg", "a", "x", "active", "2025-01-01"),
            ("s2", "ps05", "cfg", "a", "x", "active", "2025-02-01"),
            ("s3", "ps05", "cfg", "b", "only", "active", "2025-01-01"),
            ("s4", "ps05b", "cfg", "c", "old", "superseded", "2024-01-01"),
            ("s5", "pc05", "cfg", "c", "new", "active", "2025-01-01"),
            ("s6", "pc05", "cfg", "d", "v", "superseded", "2025-06-01"),
            ("s7", "ps05", "cfg", "d", "v", "active", "2025-01-01"),
            ("s8", "ps06", "cfg", "e", "e1", "active", "2025-01-01"),
            ("s9", "ps06b", "cfg", "e", "e1", "active", "2025-03-01"),
            ("s10", "ps06b", "cfg", "f", "f", "active", "2025-01-01"),
            ("su", "pu", "cfg", "a", "z", "active", "2025-01-01"),
        ],
        "memories": [
            ("m1", "fact", "alpha", "p05", "active", "2025-01-02"),
            ("m2", "fact", "alpha", "p05-interferometer", "active", "2025-01-01"),
            ("m3", "fact", "beta", "interferometer", "candidate", "2025-01-01"),
            ("m4", "fact", "gamma", "P05-Interferometer", "active", "2025-01-01"),
            ("m5", "fact", "delta", "p04-gigabit", "active", "2025-01-01"),
            ("m6", "fact", "eps", "unregistered-x", "active", "2025-01-01"),
            ("m7", "fact", "zeta", "Étalon", "active", "2025-01-01"),
        ],
        "interactions": [("i1", "p05"), ("i2", "polisher"), ("i3", "p04-gigabit"), ("i4", "other")],
    }


BULK_ALIASES = ["p05", "interferometer", "P05-Interferometer", "p06", "polisher"]
BULK_CANONICAL = ["p05-interferometer", "p04-gigabit", "p06-polisher", "unregistered-x"]


@dataclass(frozen=True)
class Bulk:
    """The bulk rows ``bulk_legacy`` adds to legacy_tables, in the same projects."""

    canonical: int  # active state rows of pc05 (c-k)
    duplicates: int  # ps05 rows with a canonical row's key and value (a-k, k < duplicates)
    moves: int  # ps05 rows with keys of their own (a-k from ``canonical`` on)
    history: int  # inactive ps05b rows, other values (b-k from ``duplicates`` on)
    renamed: int  # rows of ps06, renamed into p06-polisher (d-k)
    renamed_history: bool  # and an inactive ps06b row per key (e-k)
    collision: bool  # one active collision: pc05/ps05 cfg/collide
    memories: int  # plain memories; every ``alias_every``-th one alias-keyed
    twin_pairs: int  # active pairs of one alias-keyed and one canonical memory
    interactions: int  # every ``alias_every``-th one alias-keyed
    alias_every: int


def bulk_legacy(path: Path, bulk: Bulk) -> Path:
    """legacy_tables (every outcome, small) plus ``bulk``: the databases the
    kill trials of apply and revert run on."""
    legacy = legacy_tables()
    state = list(legacy["state"])
    if bulk.collision:
        state += [
            ("x-c", "pc05", "cfg", "collide", "one", "active", "2025-01-01"),
            ("x-s", "ps05", "cfg", "collide", "two", "active", "2025-02-01"),
        ]
    for k in range(bulk.canonical):
        state.append((f"c-{k}", "pc05", "bulk", f"k{k}", f"v{k}", "active", "2025-01-01"))
    for k in range(bulk.duplicates):
        state.append((f"a-{k}", "ps05", "bulk", f"k{k}", f"v{k}", "active", "2025-02-01"))
    for k in range(bulk.canonical, bulk.canonical + bulk.moves):
        state.append((f"a-{k}", "ps05", "bulk", f"k{k}", f"v{k}", "active", "2025-02-01"))
    for k in range(bulk.duplicates, bulk.duplicates + bulk.history):
        state.append((f"b-{k}", "ps05b", "bulk", f"k{k}", "old", "superseded", "2024-01-01"))
    for k in range(bulk.renamed):
        state.append((f"d-{k}", "ps06", "bulk", f"k{k}", f"w{k}", "active", "2025-01-01"))
        if bulk.renamed_history:
            state.append((f"e-{k}", "ps06b", "bulk", f"k{k}", "older", "superseded", "2024-01-01"))
    every = bulk.alias_every

    def memories() -> Iterator[Sequence[Any]]:
        yield from legacy["memories"]
        for i in range(bulk.memories):
            project = BULK_ALIASES[(i // every) % 5] if i % every == 0 else BULK_CANONICAL[i % 4]
            status = "candidate" if i % 7 == 0 else "active"
            yield (f"bm{i:06d}", "fact", f"memory {i}", project, status, "2025-01-01")
        for j in range(bulk.twin_pairs):
            yield (f"bd{j:05d}a", "fact", f"twin {j}", "p05", "active", "2025-03-01")
            yield (f"bd{j:05d}b", "fact", f"twin {j}", "p05-interferometer", "active", "2025-02-01")

    def interactions() -> Iterator[Sequence[Any]]:
        yield from legacy["interactions"]
        for i in range(bulk.interactions):
            yield (f"bi{i:05d}", BULK_ALIASES[i % 5] if i % every == 0 else BULK_CANONICAL[i % 4])

    return build_db(path, legacy["projects"], state, memories(), interactions())


import os  # noqa: E402  (appended: the reliability recorder below)


@pytest.fixture
def reliability(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """record(fault, outcome): one row of docs/reliability.md, appended as a JSON
    line to $RELIABILITY_OUT when it is set (tools/gen_reliability.py sets it)."""
    out = os.environ.get("RELIABILITY_OUT")

    def record(fault: str, outcome: str) -> None:
        if out:
            line = {"file": request.node.path.name, "test": request.node.name, "fault": fault}
            line["outcome"] = outcome
            with open(out, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")

    return record
