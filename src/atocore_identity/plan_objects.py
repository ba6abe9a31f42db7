"""The plan objects: what the survey found and what the migration will do.

Plain dataclasses, no SQL: ``survey`` fills a ``Survey``, ``planner`` a
``Plan``; commands, the applier, the verifier and the reverter read them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from atocore_identity.targets import MissingTarget, Target


@dataclass(frozen=True)
class ProjectRow:
    """A `projects` row the registry recognises."""

    id: str
    name: str
    canonical_id: str
    role: str  # "canonical" | "shadow"


@dataclass(frozen=True)
class NameCount:
    """A folded name in a project-keyed column: how many rows, in how many spellings.

    Names are counted per folded value, not per spelling: legacy data can
    hold a different casing or spacing of an alias on nearly every row.
    """

    table: str
    column: str
    name: str  # the folded name (repr of the value if it is not text)
    kind: str  # "canonical" | "variant" | "alias" | "unregistered"
    canonical_id: str | None
    count: int
    spellings: int
    examples: tuple[str, ...]  # up to EXAMPLES raw spellings


EXAMPLES = 5


@dataclass
class Group:
    """A registered project that has shadows: its canonical row and shadows."""

    canonical_id: str
    canonical_rows: list[ProjectRow] = field(default_factory=list)
    shadows: list[ProjectRow] = field(default_factory=list)

    @property
    def canonical_row(self) -> ProjectRow | None:
        return self.canonical_rows[0] if len(self.canonical_rows) == 1 else None

    @property
    def renamed_shadow(self) -> ProjectRow | None:
        """With no canonical row, the shadow with the lowest id becomes it."""
        if self.canonical_rows or not self.shadows:
            return None
        return min(self.shadows, key=lambda r: r.id.encode("utf-8"))

    @property
    def target_row_id(self) -> str | None:
        row = self.canonical_row or self.renamed_shadow
        return row.id if row else None

    @property
    def deleted_shadows(self) -> list[ProjectRow]:
        renamed = self.renamed_shadow
        return [s for s in self.shadows if renamed is None or s.id != renamed.id]


@dataclass(frozen=True)
class Candidate:
    """An active state row competing in a collision."""

    id: str
    project_row_id: str
    project_name: str
    is_canonical: bool
    status: str
    updated_at: str | None
    value: str

    @property
    def value_sha256(self) -> str:
        return hashlib.sha256(str(self.value).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Collision:
    """Two or more active rows with different values at one (category, key)."""

    canonical_id: str
    category: str
    key: str
    candidates: tuple[Candidate, ...]
    resolved_winner: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.category}/{self.key}"

    def as_dict(self) -> dict[str, Any]:
        """The collision as plan and resolve reports record it."""
        return {
            "project": self.canonical_id,
            "category": self.category,
            "key": self.key,
            "resolved_winner": self.resolved_winner,
            "candidates": [
                {
                    "id": x.id,
                    "project_row_id": x.project_row_id,
                    "project_name": x.project_name,
                    "canonical": x.is_canonical,
                    "status": x.status,
                    "updated_at": x.updated_at,
                    "value": x.value,
                    "value_sha256": x.value_sha256,
                }
                for x in self.candidates
            ],
        }


@dataclass(frozen=True)
class Decision:
    """An operator's pick for one collision, as read from a resolutions file."""

    canonical_id: str
    category: str
    key: str
    winner_id: str
    # (id, value sha256) of every candidate as the operator saw them
    candidates: tuple[tuple[str, str], ...]


@dataclass
class Survey:
    """The blast radius: what the registry recognises in this database."""

    targets: list[Target]
    missing: list[MissingTarget]
    project_rows: list[ProjectRow]
    unregistered_projects: int
    names: list[NameCount]
    # (project row id, status) -> count, for recognised project rows
    state_by_status: dict[tuple[str, str], int]
    # (folded name, status) -> count of memories, for alias and variant names
    memories_by_status: dict[tuple[str, str], int]
    has_state: bool
    rename: dict[str, str]  # every alias or variant spelling -> its canonical id

    def groups(self) -> dict[str, Group]:
        groups: dict[str, Group] = {}
        for row in self.project_rows:
            group = groups.setdefault(row.canonical_id, Group(row.canonical_id))
            (group.canonical_rows if row.role == "canonical" else group.shadows).append(row)
        return groups


@dataclass
class Plan:
    """What the migration will do, and whether apply may do it."""

    survey: Survey
    groups: list[Group]  # groups with shadows and at most one canonical row
    collisions: list[Collision]
    integrity_errors: list[str]
    stale_decisions: list[str]
    counts: dict[str, int]
    fingerprint: str
    prepare: list[str]  # the statements that build the plan's TEMP tables

    @property
    def unresolved(self) -> list[Collision]:
        return [c for c in self.collisions if c.resolved_winner is None]

    @property
    def blockers(self) -> list[str]:
        out = list(self.integrity_errors)
        out += [
            f"unresolved collision {c.canonical_id!r} {c.ref!r}: "
            + " vs ".join(f"{x.id}={x.value!r}" for x in c.candidates)
            for c in self.unresolved
        ]
        out += self.stale_decisions
        return out

    @property
    def is_empty(self) -> bool:
        return all(self.counts[k] == 0 for k in CHANGE_COUNTS)


CHANGE_COUNTS = (
    "shadow_rows_deleted",
    "shadow_rows_renamed",
    "state_moved",
    "state_archived_duplicate",
    "state_archived_history",
    "memories_rekeyed",
    "memories_superseded",
    "interactions_rekeyed",
    "extra_rekeyed",
)
