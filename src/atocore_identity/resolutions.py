"""Operator decisions for state collisions, and the file that carries them.

A decision names the collision (project, category, key), the winning row,
and every candidate row with a hash of its value as the operator saw it. The
planner refuses a decision whose rows or values have changed since (stale).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from atocore_identity.errors import BadInput
from atocore_identity.plan_objects import Candidate, Collision, Decision
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
    except KeyError as exc:
        raise BadInput(
            f"resolutions {path} is malformed: a decision lacks the field {exc}",
            "write it again with `atocore-identity resolve`",
        ) from None
    except (TypeError, AttributeError):
        raise BadInput(
            f"resolutions {path} is malformed: 'decisions' must be a list of decision objects",
            "write it again with `atocore-identity resolve`",
        ) from None
    return out


Chooser = Callable[[Collision], str | None]


def choose(
    collisions: Sequence[Collision],
    keep: str | None,
    picks: Sequence[tuple[str, str, str]],
    chooser: Chooser | None,
) -> tuple[list[dict[str, Any]], list[Collision]]:
    """Decide collisions: --pick first, then --keep, then the chooser (prompts).

    Returns the decision records and the collisions left undecided.
    """
    chosen: dict[int, tuple[str, str]] = {}  # collision index -> (winner id, rule)
    for category, key, row_id in picks:
        hits = [
            i
            for i, c in enumerate(collisions)
            if (c.category, c.key) == (category, key) and row_id in {x.id for x in c.candidates}
        ]
        if not hits:
            known = ", ".join(sorted({c.ref for c in collisions})) or "none"
            raise BadInput(
                f"--pick {category}/{key}={row_id}: no collision at {category}/{key} has a"
                f" candidate row {row_id}",
                f"current collisions: {known}",
            )
        for i in hits:
            chosen[i] = (row_id, "pick")
    for i, c in enumerate(collisions):
        if i in chosen:
            continue
        if keep is not None:
            winner = pick_by_rule(c, keep)
            if winner is not None:
                chosen[i] = (winner.id, keep)
        elif chooser is not None:
            answer = chooser(c)
            if answer is not None:
                chosen[i] = (answer, "interactive")
    decisions = []
    undecided = []
    for i, c in enumerate(collisions):
        if i not in chosen:
            undecided.append(c)
            continue
        winner_id, rule = chosen[i]
        winner = next(x for x in c.candidates if x.id == winner_id)
        decisions.append(decide(c, winner, rule))
    return decisions, undecided
