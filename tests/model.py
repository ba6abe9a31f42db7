"""A reference model of SPEC §2–§3, written from the SPEC alone.

It does not import the tool's planner: it reads every row of a database into
Python and applies the identity rules one row at a time, the slow and obvious
way, so the property tests can compare the tool's set-based SQL against it.

``expected(db, registry)`` answers two questions:

* must apply refuse? (``refusal``: "integrity" for two canonical rows of one
  project, "collision" for an unresolved collision, "empty" when there is
  nothing to migrate, else None);
* if not, what is in every table afterwards (full rows, every column, so a
  change to a column the migration does not own is caught too), and which
  project_state rows are deleted into the archive.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Row = dict[str, Any]

OWNED_TABLES = ("projects", "project_state", "memories", "interactions")


def fold(name: str) -> str:
    return name.strip().lower()


@dataclass(frozen=True)
class Names:
    """The registry as two lookups: folded id -> id, folded alias -> id."""

    ids: dict[str, str]
    aliases: dict[str, str]

    @classmethod
    def from_registry(cls, registry: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> Names:
        projects = registry["projects"] if isinstance(registry, Mapping) else list(registry)
        ids = {fold(p["id"]): p["id"] for p in projects}
        aliases: dict[str, str] = {}
        for p in projects:
            for alias in p.get("aliases", []):
                if fold(alias) not in ids:  # an alias spelled like its own id is the id
                    aliases[fold(alias)] = p["id"]
        return cls(ids, aliases)

    def canonical_of(self, name: object) -> str | None:
        """The registry id a canonical row name (any spelling of an id) belongs to."""
        return self.ids.get(fold(name)) if isinstance(name, str) else None

    def alias_of(self, name: object) -> str | None:
        """The registry id a shadow name (any spelling of an alias) belongs to."""
        return self.aliases.get(fold(name)) if isinstance(name, str) else None

    def rekey(self, value: object) -> str | None:
        """The id a project-keyed column value must become, or None to leave it."""
        if not isinstance(value, str):
            return None
        if self.alias_of(value) is not None:
            return self.alias_of(value)
        pid = self.canonical_of(value)
        if pid is not None and value != pid:  # a variant spelling: folded equal, bytes differ
            return pid
        return None


@dataclass
class Expected:
    refusal: str | None  # "integrity" | "collision" | "empty" | None
    reasons: list[str]
    tables: dict[str, dict[Any, Row]]  # table -> row key -> full row, after apply
    before: dict[str, dict[Any, Row]]  # the same, before
    archive: set[str] = field(default_factory=set)  # deleted project_state ids


def load(db: Path) -> dict[str, dict[Any, Row]]:
    """Every row of every table, keyed by `id` (or by rowid when there is none)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        out: dict[str, dict[Any, Row]] = {}
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            columns = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
            key = "id" if "id" in columns else "rowid"
            rows = conn.execute(f'SELECT rowid AS "__rowid", * FROM "{table}"').fetchall()
            out[table] = {}
            for r in rows:
                row = {c: r[c] for c in columns}
                out[table][row["id"] if key == "id" else r["__rowid"]] = row
        return out
    finally:
        conn.close()


def _newer(a: Row, b: Row, a_first: bool, b_first: bool) -> bool:
    """Is `a` newer than `b`? Greatest updated_at (NULL oldest), then the row
    that was already canonical (`*_first`), then the lowest id."""
    ua, ub = a["updated_at"], b["updated_at"]
    if ua != ub:
        if ua is None:
            return False
        if ub is None:
            return True
        return bool(ua > ub)
    if a_first != b_first:
        return a_first
    return bool(a["id"] < b["id"])


def _newest(rows: list[Row], first: set[Any]) -> Row:
    best = rows[0]
    for r in rows[1:]:
        if _newer(r, best, r["id"] in first, best["id"] in first):
            best = r
    return best


def expected(db: Path, registry: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> Expected:
    names = Names.from_registry(registry)
    before = load(db)
    after = {t: {k: dict(v) for k, v in rows.items()} for t, rows in before.items()}
    reasons: list[str] = []
    archive: set[str] = set()

    # -- projects: canonical rows and shadows, per registered project ---------
    canonical: dict[str, list[Row]] = {}
    shadows: dict[str, list[Row]] = {}
    for row in before["projects"].values():
        pid = names.canonical_of(row["name"])
        if pid is not None:
            canonical.setdefault(pid, []).append(row)
            continue
        pid = names.alias_of(row["name"])
        if pid is not None:
            shadows.setdefault(pid, []).append(row)
    for pid, rows in canonical.items():
        if len(rows) > 1:
            reasons.append(f"integrity: {pid} has {len(rows)} canonical rows")
    integrity = bool(reasons)

    # -- project_state, per group ------------------------------------------
    state = before.get("project_state", {})
    for pid, group_shadows in sorted(shadows.items()):
        if len(canonical.get(pid, [])) > 1:
            continue
        canon_row = canonical[pid][0] if pid in canonical else None
        if canon_row is not None:
            target = canon_row["id"]
        else:
            renamed = min(group_shadows, key=lambda r: r["id"])
            target = renamed["id"]
            after["projects"][target]["name"] = pid  # the renamed shadow becomes canonical
        for s in group_shadows:
            if s["id"] != target:
                del after["projects"][s["id"]]

        members = {s["id"] for s in group_shadows}
        if canon_row is not None:
            members.add(canon_row["id"])
        already = {
            r["id"] for r in state.values() if canon_row and r["project_id"] == canon_row["id"]
        }
        by_key: dict[tuple[Any, Any], list[Row]] = {}
        for r in state.values():
            if r["project_id"] in members:
                by_key.setdefault((r["category"], r["key"]), []).append(r)
        for (category, key), rows in sorted(by_key.items(), key=repr):
            if all(r["id"] in already for r in rows):
                continue  # only canonical rows: not the migration's business
            active = [r for r in rows if r["status"] == "active"]
            own = [r for r in rows if r["id"] in already]
            if len(rows) == 1:
                winner = rows[0]
            elif len({r["value"] for r in active}) > 1:
                reasons.append(f"collision: {pid} {category!r}/{key!r}")
                continue
            elif active:
                own_active = [r for r in own if r["status"] == "active"]
                winner = own_active[0] if own_active else _newest(active, already)
            else:
                winner = own[0] if own else _newest(rows, already)
            after["project_state"][winner["id"]]["project_id"] = target
            for r in rows:
                if r["id"] != winner["id"]:
                    del after["project_state"][r["id"]]
                    archive.add(r["id"])

    # -- memories: rekey, then supersede active duplicates ------------------
    memories = before.get("memories", {})
    rekeyed: set[Any] = set()
    for mid, row in memories.items():
        new = names.rekey(row["project"])
        if new is not None:
            after["memories"][mid]["project"] = new
            rekeyed.add(mid)
    twins: dict[tuple[Any, Any, Any], list[Row]] = {}
    for row in after.get("memories", {}).values():
        if row["status"] == "active":
            twins.setdefault((row["project"], row["memory_type"], row["content"]), []).append(row)
    for rows in twins.values():
        if len(rows) < 2 or not any(r["id"] in rekeyed for r in rows):
            continue
        not_rekeyed = {r["id"] for r in rows if r["id"] not in rekeyed}
        keeper = _newest(rows, not_rekeyed)
        for r in rows:
            if r["id"] != keeper["id"]:
                after["memories"][r["id"]]["status"] = "superseded"

    # -- interactions: rekey --------------------------------------------------
    for iid, row in before.get("interactions", {}).items():
        new = names.rekey(row["project"])
        if new is not None:
            after["interactions"][iid]["project"] = new

    refusal: str | None = None
    if integrity:
        refusal = "integrity"
    elif reasons:
        refusal = "collision"
    elif after == before:
        refusal = "empty"
    if refusal is not None:
        return Expected(refusal, reasons, before, before, set())
    return Expected(None, reasons, after, before, archive)
