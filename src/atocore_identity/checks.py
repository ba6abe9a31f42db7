"""Postcondition checks: the one ``Check`` type and the checks apply and verify share.

apply runs them inside its transaction before COMMIT; verify runs them on
the committed database. Same check, same name, same wording.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from atocore_identity.plan_objects import Discovery, Survey

DISCOVERY_CHECK = "no alias-keyed values in unconfigured columns"
DISCOVERY_SKIPPED = "discovery of unconfigured columns: drop --no-discover"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


def all_ok(checks: Iterable[Check]) -> bool:
    return all(c.ok for c in checks)


def no_shadow_rows(surv: Survey) -> Check:
    shadows = [r for r in surv.project_rows if r.role == "shadow"]
    detail = ", ".join(f"{r.name!r} (id {r.id})" for r in shadows[:10]) or "none"
    return Check("no shadow project rows", not shadows, detail)


def no_alias_names(surv: Survey) -> list[Check]:
    """One check per project-keyed column: no alias or variant spelling left."""
    out = []
    for target in surv.targets:
        bad = surv.moving(target)
        detail = ", ".join(f"{n.examples[0]!r}: {n.count}" for n in bad[:10]) or "none"
        out.append(Check(f"no alias or variant names in {target.label}", not bad, detail))
    return out


def no_unconfigured_alias_values(discovery: Discovery) -> Check:
    """SPEC §3: no column nobody configured holds an alias or a variant spelling.

    A forgotten project-keyed column would otherwise pass every other check;
    the detail names each column with the --column that migrates it and the
    --ignore-column that acknowledges it, and says which tables were sampled.
    """
    if discovery.columns:
        detail = "; ".join(c.describe() for c in discovery.columns[:10])
        if len(discovery.columns) > 10:
            detail += f"; and {len(discovery.columns) - 10} more columns"
        if discovery.sampled:
            detail += "; " + "; ".join(s.describe() for s in discovery.sampled)
        return Check(DISCOVERY_CHECK, False, detail)
    return Check(DISCOVERY_CHECK, True, "none in " + discovery.summary())


def one_canonical_row(surv: Survey, canonical_ids: Iterable[str] | None = None) -> Check:
    """Exactly one canonical row for each of ``canonical_ids``; without them,
    at most one for every registered project."""
    have = surv.groups()
    if canonical_ids is None:
        wrong = [g.canonical_id for g in have.values() if len(g.canonical_rows) > 1]
        return Check("at most one canonical row per project", not wrong, ", ".join(wrong) or "ok")
    ids = list(canonical_ids)
    wrong = [c for c in ids if c not in have or len(have[c].canonical_rows) != 1]
    return Check(
        "one canonical row for every migrated project",
        not wrong,
        ", ".join(wrong) or f"{len(ids)} projects",
    )


def rows_conserved(
    before: dict[str, int], after: dict[str, int], expected_delta: dict[str, int]
) -> list[Check]:
    """Every table's row count after equals before plus the expected change."""
    out = []
    for table, count in before.items():
        want = count + expected_delta.get(table, 0)
        got = after.get(table, -1)
        out.append(
            Check(
                f"rows conserved in {table}",
                got == want,
                f"before {count}, after {got}, expected {want}",
            )
        )
    return out
