"""A reference model of SPEC §7 revert, written from the SPEC alone.

It does not read the archive or import the tool: it compares three full
snapshots of the database (``model.load``) — before the apply (B), right
after it (A), and now (N, after whatever was written since) — row by row in
Python, and says what revert must do: refuse (a conflict, or changed rows
without ``--skip-changed``), or which table contents result.

A row the apply changed is classified by its migrated field: ``left`` (holds
what the apply wrote), ``before`` (holds the old value again), ``changed``
(anything else, or gone). Conflicts: a shadow id or name (folded) another
row holds now, a renamed shadow referenced by state rows written since, a
state row whose (project_id, category, key) a row that stays holds now or
another restored row needs too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from model import fold

Tables = dict[str, dict[Any, dict[str, Any]]]


@dataclass
class RevertExpected:
    refusal: str | None  # "conflict" | "changed" | None
    tables: Tables  # what every table holds after the revert (N when it refuses)
    counts: dict[str, int] = field(default_factory=dict)  # left, before, changed, conflict


def _field_state(now: dict[str, Any] | None, col: str, after: Any, before: Any) -> str:
    if now is None:
        return "changed"
    if now[col] == after:
        return "left"
    if now[col] == before:
        return "before"
    return "changed"


def expected_revert(b: Tables, a: Tables, n: Tables, skip_changed: bool) -> RevertExpected:
    """What ``revert --yes [--skip-changed]`` of the apply B -> A must do to N."""
    recs: list[dict[str, Any]] = []  # kind, key, state (and what to restore)

    def add(kind: str, key: Any, state: str) -> None:
        recs.append({"kind": kind, "key": key, "state": state})

    bp, ap, np_ = b["projects"], a["projects"], n["projects"]
    for k, row in bp.items():
        if k not in ap:  # a deleted shadow
            now = np_.get(k)
            # back with its old name: before; its id taken by another row: a clash
            clash = "before" if now is not None and now["name"] == row["name"] else "conflict"
            add("delete", k, "left" if now is None else clash)
        elif ap[k]["name"] != row["name"]:  # renamed into the canonical id
            add("rename", k, _field_state(np_.get(k), "name", ap[k]["name"], row["name"]))
    bs, as_, ns = b.get("project_state", {}), a.get("project_state", {}), n.get("project_state", {})
    for k, row in bs.items():
        if k not in as_:  # archived
            now = ns.get(k)
            state = (
                "left"
                if now is None
                else ("before" if now["project_id"] == row["project_id"] else "changed")
            )
            add("archived", k, state)
        elif as_[k]["project_id"] != row["project_id"]:
            add(
                "moves",
                k,
                _field_state(ns.get(k), "project_id", as_[k]["project_id"], row["project_id"]),
            )
    for table in ("memories", "interactions"):
        for k, row in b.get(table, {}).items():
            after = a[table][k]
            if after["project"] != row["project"]:
                add(
                    f"rekey:{table}",
                    k,
                    _field_state(n[table].get(k), "project", after["project"], row["project"]),
                )
            if table == "memories" and after["status"] != row["status"]:
                add(
                    "supersede",
                    k,
                    _field_state(n[table].get(k), "status", after["status"], row["status"]),
                )

    # names: a restored or renamed-back shadow must not clash (folded) with a row now
    for r in recs:
        if r["kind"] in ("delete", "rename") and r["state"] == "left":
            old = fold(bp[r["key"]]["name"])
            if any(j != r["key"] and fold(p["name"]) == old for j, p in np_.items()):
                r["state"] = "conflict"
    # a renamed shadow referenced by state rows written since
    for r in recs:
        if r["kind"] == "rename" and r["state"] == "left":
            known = {s for s, row in as_.items() if row["project_id"] == r["key"]}
            new = {s for s, row in ns.items() if row["project_id"] == r["key"]} - known
            if new:
                r["state"] = "conflict"
    # a state row goes back to a projects row that will exist
    restored = {r["key"] for r in recs if r["kind"] == "delete" and r["state"] == "left"}
    for r in recs:
        if r["kind"] in ("moves", "archived") and r["state"] == "left":
            pid = bs[r["key"]]["project_id"]
            if pid not in np_ and pid not in restored:
                r["state"] = "changed"

    # UNIQUE (project_id, category, key): two restored rows that want one triple
    def target(r: dict[str, Any]) -> tuple[Any, ...]:
        src = ns[r["key"]] if r["kind"] == "moves" else bs[r["key"]]
        return (bs[r["key"]]["project_id"], src["category"], src["key"])

    wanted: dict[tuple[Any, ...], int] = {}
    for r in recs:
        if r["kind"] in ("moves", "archived") and r["state"] == "left":
            wanted[target(r)] = wanted.get(target(r), 0) + 1
    for r in recs:
        if r["kind"] in ("moves", "archived") and r["state"] == "left" and wanted[target(r)] > 1:
            r["state"] = "conflict"
    # UNIQUE (project_id, category, key) against the rows that stay
    moving = {r["key"] for r in recs if r["kind"] == "moves" and r["state"] == "left"}
    for r in recs:
        if r["kind"] in ("moves", "archived") and r["state"] == "left":
            src = ns[r["key"]] if r["kind"] == "moves" else bs[r["key"]]
            triple = (bs[r["key"]]["project_id"], src["category"], src["key"])
            for q, row in ns.items():
                if (
                    q != r["key"]
                    and q not in moving
                    and (row["project_id"], row["category"], row["key"]) == triple
                ):
                    r["state"] = "conflict"

    counts: dict[str, int] = {}
    for r in recs:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    if counts.get("conflict"):
        return RevertExpected("conflict", n, counts)
    if counts.get("changed") and not skip_changed:
        return RevertExpected("changed", n, counts)

    out = copy.deepcopy(n)
    for r in recs:
        if r["state"] != "left":
            continue
        k, kind = r["key"], r["kind"]
        if kind == "delete":
            out["projects"][k] = dict(bp[k])
        elif kind == "rename":
            out["projects"][k]["name"] = bp[k]["name"]
        elif kind == "archived":
            out["project_state"][k] = dict(bs[k])
        elif kind == "moves":
            out["project_state"][k]["project_id"] = bs[k]["project_id"]
        elif kind == "supersede":
            out["memories"][k]["status"] = b["memories"][k]["status"]
        else:
            table = kind.split(":", 1)[1]
            out[table][k]["project"] = b[table][k]["project"]
    return RevertExpected(None, out, counts)
