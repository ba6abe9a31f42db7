"""Operator decisions for state collisions, and the file that carries them.

A decision names the collision (project, category, key), the winning row,
and every candidate row with a hash of its value as the operator saw it. The
planner refuses a decision whose rows or values have changed since (stale).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from atocore_identity.errors import BadInput
from atocore_identity.planner import Candidate, Collision, Decision
from atocore_identity.reports import load_report

KEEP_RULES = ("shadow", "canonical", "newest")


def _newest(cands: Sequence[Candidate]) -> Candidate:
    # SPEC "newest": greatest updated_at, then the row already canonical, then lowest id.
    best = cands[0]
    for c in cands[1:]:
        a = (c.updated_at or "", c.is_canonical)
        b = (best.updated_at or "", best.is_canonical)
        if a > b or (a == b and c.id.encode() < best.id.encode()):
            best = c
    return best


def pick_by_rule(collision: Collision, rule: str) -> Candidate | None:
    """The candidate a --keep rule selects; None when the rule has no candidate."""
    cands = list(collision.candidates)
    if rule == "newest":
        return _newest(cands)
    if rule == "canonical":
        own = [c for c in cands if c.is_canonical]
        return own[0] if own else None
    if rule == "shadow":
        shadows = [c for c in cands if not c.is_canonical]
        return _newest(shadows) if shadows else None
    raise BadInput(f"unknown --keep rule {rule!r}", f"use one of {', '.join(KEEP_RULES)}")


def parse_pick(spec: str) -> tuple[str, str, str]:
    """CATEGORY/KEY=ROW_ID -> (category, key, row id). Keys may contain '/'."""
    ref, eq, row_id = spec.rpartition("=")
    category, slash, key = ref.partition("/")
    if not eq or not slash or not category or not key or not row_id:
        raise BadInput(
            f"--pick {spec!r} is not CATEGORY/KEY=ROW_ID",
            "list the collisions with `atocore-identity resolve` first",
        )
    return category, key, row_id


def decide(collision: Collision, winner: Candidate, rule: str) -> dict[str, Any]:
    """A decision record for the resolutions file."""
    return {
        "project": collision.canonical_id,
        "category": collision.category,
        "key": collision.key,
        "winner_id": winner.id,
        "rule": rule,
        "candidates": [
            {
                "id": c.id,
                "project_row_id": c.project_row_id,
                "project_name": c.project_name,
                "canonical": c.is_canonical,
                "status": c.status,
                "updated_at": c.updated_at,
                "value_sha256": c.value_sha256,
            }
            for c in collision.candidates
        ],
    }


def load_decisions(path: Path) -> list[Decision]:
    """Read a resolutions file written by `resolve`."""
    doc = load_report(path, "resolve")
    out: list[Decision] = []
    try:
        for d in doc["decisions"]:
            out.append(
                Decision(
                    canonical_id=str(d["project"]),
                    category=str(d["category"]),
                    key=str(d["key"]),
                    winner_id=str(d["winner_id"]),
                    candidates=tuple(
                        (str(c["id"]), str(c["value_sha256"])) for c in d["candidates"]
                    ),
                )
            )
    except (KeyError, TypeError) as exc:
        raise BadInput(f"resolutions {path} is malformed (missing {exc})") from None
    return out
