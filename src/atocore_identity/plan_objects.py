"""The plan objects: what the survey found and what the migration will do.

Plain dataclasses, no SQL: ``survey`` fills a ``Survey``, ``planner`` a
``Plan``; commands, the applier, the verifier and the reverter read them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO

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

    @property
    def moves(self) -> bool:
        """An alias or a variant spelling: its rows are what a rekey moves."""
        return self.kind in MOVING_KINDS


EXAMPLES = 5
MOVING_KINDS = ("alias", "variant")  # the kinds of name a rekey moves (NameCount.moves)


@dataclass(frozen=True)
class DiscoveredColumn:
    """A text column nobody configured that holds alias-keyed or variant-spelled
    names (SPEC §3 "discover"): apply would leave these rows as they are."""

    table: str
    column: str
    names: tuple[NameCount, ...]  # the alias and variant names found, per folded name
    rows_read: int  # rows of the table discovery read (all of them unless sampled)
    table_rows: int  # rows in the table

    @property
    def label(self) -> str:
        return f"{self.table}.{self.column}"

    @property
    def rows(self) -> int:
        """Rows holding an alias or a variant spelling (of the rows read)."""
        return sum(n.count for n in self.names)

    @property
    def sampled(self) -> bool:
        return self.rows_read < self.table_rows

    @property
    def hint(self) -> str:
        """The option that makes apply migrate the column."""
        return f"--column {self.label}"

    @property
    def examples(self) -> tuple[str, ...]:
        return tuple(e for n in self.names for e in n.examples)[:EXAMPLES]

    def describe(self) -> str:
        """One line: how many rows, where, which names, and both ways out."""
        shown = ", ".join(
            f"{n.examples[0]!r} -> {n.canonical_id}" for n in self.names[:3] if n.examples
        )
        if len(self.names) > 3:
            shown += f", +{len(self.names) - 3} more names"
        rows = f"{self.rows} alias-keyed row{'s' if self.rows != 1 else ''}"
        return (
            f"{rows} in {self.label} ({shown}): add {self.hint}, or acknowledge it"
            f" with --ignore-column {self.label}"
        )


@dataclass(frozen=True)
class SampledTable:
    """A table too large to read whole: discovery read its first ``rows_read`` rows."""

    table: str
    rows_read: int
    table_rows: int

    def describe(self) -> str:
        return f"sampled: first {self.rows_read} rows of {self.table_rows} in {self.table}"


@dataclass
class Discovery:
    """What discovery read and what it found outside the configured columns."""

    columns: list[DiscoveredColumn]  # flagged columns
    read: list[str]  # every TABLE.COLUMN read
    ignored: list[str]  # --ignore-column: never read
    sampled: list[SampledTable]
    sample_rows: int  # the per-table row limit
    length_window: tuple[int, int]  # trimmed lengths a registered name can have

    @property
    def rows(self) -> int:
        return sum(c.rows for c in self.columns)

    def warnings(self) -> list[str]:
        """What plan says apply would leave behind, and where discovery did not look."""
        out = [f"apply would leave {c.describe()}" for c in self.columns]
        out += [
            f"discovery {s.describe()}: rows after those were not searched" for s in self.sampled
        ]
        return out

    def summary(self) -> str:
        """What was read, for a passing check or an all-clear."""
        parts = [f"{len(self.read)} unconfigured column{'s' if len(self.read) != 1 else ''} read"]
        if self.ignored:
            parts.append("ignored: " + ", ".join(self.ignored))
        parts += [s.describe() for s in self.sampled]
        return "; ".join(parts)


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
    # alias-keyed values in columns nobody configured; None: discovery did not run
    discovery: Discovery | None = None

    def moving(self, target: Target) -> list[NameCount]:
        """The names in ``target``'s column that a rekey moves."""
        column = (target.table, target.column)
        return [n for n in self.names if n.moves and (n.table, n.column) == column]

    def groups(self) -> dict[str, Group]:
        groups: dict[str, Group] = {}
        for row in self.project_rows:
            group = groups.setdefault(row.canonical_id, Group(row.canonical_id))
            (group.canonical_rows if row.role == "canonical" else group.shadows).append(row)
        return groups


@dataclass(frozen=True)
class RekeySum:
    """The rows one target's rekey moves, as the fingerprint takes them: how
    many, and a hash of their identity and version (``rekeys.read_rekeys``)."""

    label: str
    rows: int
    digest: str


@dataclass(frozen=True)
class RekeyRecords:
    """A plan's ``rekey`` companion records, already encoded as JSON lines in
    an unlinked temporary file (``rekeys.rekeys_beside``); the companion
    writer takes them in and closes the file, ``Plan.close`` otherwise."""

    file: BinaryIO
    records: int

    def close(self) -> None:
        self.file.close()


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
    # the rekey records, written beside the planning (plan, apply); None: the
    # companion writer reads them from the TEMP tables
    rekey_records: RekeyRecords | None = None

    def close(self) -> None:
        """Close the rekey records' temporary file if no companion took it in
        (a refused or empty plan); it is unlinked already, so nothing is left."""
        if self.rekey_records is not None:
            self.rekey_records.close()

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
    def warnings(self) -> list[str]:
        """What apply would leave behind without refusing: alias-keyed values in
        columns nobody configured (SPEC §3 discovery), and where it only sampled."""
        return self.survey.discovery.warnings() if self.survey.discovery else []

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
