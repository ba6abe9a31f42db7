"""Shared test helpers: real SQLite files built from the reference schema,
registries on disk, and an in-process runner for the CLI's ``main``."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sqlite3
import sys
from collections.abc import Iterable, Sequence
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
