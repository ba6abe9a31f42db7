"""The planner: decides what the migration does, in named steps.

``build_plan`` starts from the read-only survey (``survey.py``), runs the
statements of ``statements.py`` that fill the TEMP tables (``temp.ident_*``,
which a read-only connection may create without touching the database
file), and reads back collisions, counts and the fingerprint. plan, resolve,
apply, verify, revert and the completion of ``--pick`` all call it. Planning
is set-based: a fixed number of statements whatever the row count; row-level
detail stays in the TEMP tables and is streamed, never loaded whole.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

from atocore_identity.database import quote_ident, table_exists, tables_referencing
from atocore_identity.discovery import discovering
from atocore_identity.plan_objects import (
    CHANGE_COUNTS,
    Candidate,
    Collision,
    Decision,
    Group,
    Plan,
    RekeyRecords,
    RekeySum,
    Survey,
)
from atocore_identity.registry import Registry
from atocore_identity.rekeys import Beside, read_rekeys, rekeys_beside
from atocore_identity.statements import (
    EMPTY_MEM_DUPS,
    EMPTY_STATE,
    MEMORY_DECISIONS,
    STATE_DECISIONS,
    hash_rows,
    rekey_statements,
    rekey_table,
    setup_statements,
)
from atocore_identity.survey import Progress, add_statuses, in_list, quiet, survey
from atocore_identity.targets import MissingTarget, Target
from atocore_identity.workers import cpus

# --------------------------------------------------------------------------
# Planning statements
# --------------------------------------------------------------------------


def build_plan(
    conn: sqlite3.Connection,
    registry: Registry,
    targets: list[Target],
    missing: list[MissingTarget],
    decisions: Sequence[Decision] = (),
    progress: Progress = quiet,
    *,
    discover: bool = False,
    ignore: Sequence[tuple[str, str]] = (),
    meanwhile: Callable[[Plan], None] | None = None,
    beside: Path | None = None,
) -> Plan:
    """Decide everything the migration will do. Reads only; writes TEMP tables.

    ``discover`` (plan only: never inside apply's transaction) also looks for
    alias-keyed values in the columns nobody configured, what apply would
    leave, in a worker process while this connection plans (``discovery.py``).
    ``meanwhile`` gets the plan before discovery is collected into it: work
    that needs the decisions and not discovery (plan's companion) runs while
    the worker still reads.

    ``beside`` (plan and apply, which write a companion: their report dir)
    reads, hashes and writes the rows to rekey in a worker process while
    this connection decides the rest (``rekeys.py``), unless discovery's
    workers already take the other CPUs; the plan then carries their
    records, in a temporary file there, until ``meanwhile`` has run (or,
    without it, until the caller closes the plan).
    """
    # Two discovery workers sharing the columns, as inspect has: discovery is
    # the long pole of the default plan (4.74-5.08 s -> 3.90-4.38 s at 1M,
    # alternating); one on one CPU. verify keeps one: its integrity check
    # needs the CPU. A rekey worker as well only when every process has a
    # CPU: on two it slowed the default plan (4.9-5.1 s -> 5.3-5.7 s).
    available = cpus()
    shares = 2 if available >= 2 else 1
    if discover and available <= 1 + shares:
        beside = None
    with (
        discovering(conn, registry, targets, ignore, workers=shares) if discover else nullcontext()
    ) as found:
        plan = _plan(conn, registry, targets, missing, decisions, progress, beside)
        try:
            if meanwhile is not None:
                meanwhile(plan)
                plan.close()  # what meanwhile did not take in (an empty plan), nobody will
            if found is not None:
                progress("discovering names in unconfigured columns")
                plan.survey.discovery = found()
        except BaseException:
            plan.close()
            raise
    return plan


def _plan(
    conn: sqlite3.Connection,
    registry: Registry,
    targets: list[Target],
    missing: list[MissingTarget],
    decisions: Sequence[Decision],
    progress: Progress,
    beside: Path | None = None,
) -> Plan:
    """The plan's steps, in order, on ``conn``."""
    surv = survey(conn, registry, targets, missing, progress, memory_statuses=False)
    groups, integrity = _groups(conn, surv)
    setup = setup_statements(surv, groups, decisions)
    if not surv.rename:
        beside = None  # nothing to rekey (a migrated database): no worker to start
    with (
        rekeys_beside(conn, setup, surv.targets, beside) if beside is not None else nullcontext()
    ) as rekeys:
        progress("planning project_state")
        prepare = _decide_state(conn, surv, groups, setup)
        collisions = _collisions(conn)
        stale = _check_decisions(collisions, decisions)
        if surv.has_state and groups:
            integrity += _archived_state_referenced(conn)
        progress("reading the rows to rekey")
        prepare += _read_rekeys(conn, surv)
        progress("planning memories")
        memory = (
            MEMORY_DECISIONS
            if any(t.dedupe for t in targets)
            else [*MEMORY_DECISIONS[:2], EMPTY_MEM_DUPS]
        )
        for sql in memory:
            conn.execute(sql)
        prepare += memory
        counts = _counts(conn, surv, groups)
        counts["collisions"] = len(collisions)
        counts["collisions_unresolved"] = sum(1 for c in collisions if c.resolved_winner is None)
        sums, records = _rekey_sums(conn, surv, rekeys)
    progress("fingerprinting")
    try:
        fingerprint = _fingerprint(conn, registry, surv, groups, decisions, sums)
    except BaseException:
        if records is not None:
            records.close()
        raise
    return Plan(
        survey=surv,
        groups=groups,
        collisions=collisions,
        integrity_errors=integrity,
        stale_decisions=stale,
        counts=counts,
        fingerprint=fingerprint,
        prepare=prepare,
        rekey_records=records,
    )


def _rekey_sums(
    conn: sqlite3.Connection, surv: Survey, beside: Beside | None
) -> tuple[list[RekeySum], RekeyRecords | None]:
    """The worker's sums and records when it counted what the survey counted;
    else (no worker, or the file changed between the two reads) read inline."""
    got = beside() if beside is not None else None
    if got is not None:
        sums, records = got
        if [s.rows for s in sums] == [_rows_moving(surv, t) for t in surv.targets]:
            return sums, records
        records.close()
    made = frozenset(t.label for t in surv.targets if t.dedupe)
    return read_rekeys(conn, surv.targets, made), None


def _rows_moving(surv: Survey, target: Target) -> int:
    """How many rows of ``target`` the survey found keyed by an alias or variant."""
    return sum(n.count for n in surv.moving(target))


def _groups(conn: sqlite3.Connection, surv: Survey) -> tuple[list[Group], list[str]]:
    """The groups the migration acts on, and the integrity errors that block it:
    two canonical rows for one project, or cascades the plan cannot see."""
    integrity: list[str] = []
    all_groups = surv.groups()
    for g in all_groups.values():
        if len(g.canonical_rows) > 1:
            rows = ", ".join(f"{r.name!r} (id {r.id})" for r in g.canonical_rows)
            integrity.append(
                f"project {g.canonical_id!r} has {len(g.canonical_rows)} canonical rows: {rows};"
                " merge them by hand first"
            )
    groups = [g for g in all_groups.values() if g.shadows and len(g.canonical_rows) <= 1]
    groups.sort(key=lambda g: g.canonical_id)

    # A shadow about to be deleted (or renamed, for a key on the name) must
    # not be referenced by rows the plan does not account for: ON DELETE or
    # ON UPDATE CASCADE would change them behind the plan's back.
    doomed = [s.id for g in groups for s in g.deleted_shadows]
    renamed = [g.renamed_shadow.id for g in groups if g.renamed_shadow is not None]
    for table, child, parent in tables_referencing(conn, "projects"):
        if (table, child, parent) == ("project_state", "project_id", "id"):
            continue
        touched = doomed + (renamed if parent.lower() != "id" else [])
        if touched:
            integrity += _referencing(
                conn,
                table,
                child,
                "projects",
                parent,
                f'"id" IN {in_list(touched)}',
                "shadow project rows",
            )
    return groups, integrity


def _decide_state(
    conn: sqlite3.Connection, surv: Survey, groups: list[Group], setup: list[str]
) -> list[str]:
    """Run the statements that fill the input TEMP tables (``setup``) and ident_state."""
    prepare = list(setup)
    prepare.append("DROP TABLE IF EXISTS temp.ident_state")
    if surv.has_state and groups:
        prepare.append(STATE_DECISIONS)
        # apply's UPDATE looks each moved row up by id: without this index it
        # scans the table once per row (quadratic).
        prepare.append("CREATE UNIQUE INDEX temp.ident_state_id ON ident_state (id)")
    else:
        prepare.append(EMPTY_STATE)
    for sql in prepare:
        conn.execute(sql)
    return prepare


def _archived_state_referenced(conn: sqlite3.Connection) -> list[str]:
    """State rows the plan deletes must not be referenced by other tables."""
    integrity: list[str] = []
    for table, child, parent in tables_referencing(conn, "project_state"):
        integrity += _referencing(
            conn,
            table,
            child,
            "project_state",
            parent,
            "\"id\" IN (SELECT id FROM temp.ident_state WHERE outcome IN ('duplicate', 'history'))",
            "state rows the migration archives and deletes",
        )
    return integrity


def _read_rekeys(conn: sqlite3.Connection, surv: Survey) -> list[str]:
    """Read the rows to rekey of each de-duplicated target once into its TEMP
    table: de-duplication and the status counts need them. The other targets'
    rows are only hashed and recorded (``rekeys.py``); apply's writes find
    them through ``temp.ident_names``."""
    prepare: list[str] = []
    for target in surv.targets:
        if not target.dedupe:
            continue
        statements = rekey_statements(target)
        for sql in statements:
            conn.execute(sql)
        prepare += statements
        sql = f"SELECT raw, status, COUNT(*) FROM temp.{rekey_table(target)} GROUP BY raw, status"
        add_statuses(surv.memories_by_status, conn.execute(sql))
    return prepare


def _referencing(
    conn: sqlite3.Connection,
    table: str,
    child: str,
    parent_table: str,
    parent: str,
    which: str,
    what: str,
) -> list[str]:
    """An integrity error when rows of ``table`` reference the parent rows ``which``."""
    sql = (
        f"SELECT COUNT(*) FROM main.{quote_ident(table)} WHERE {quote_ident(child)} IN"
        f" (SELECT {quote_ident(parent)} FROM main.{quote_ident(parent_table)} WHERE {which})"
    )
    (count,) = conn.execute(sql).fetchone()
    if not count:
        return []
    return [
        f"{count} row(s) of {table}.{child} reference {what}; a cascade would change rows"
        " the plan does not account for: move or delete them by hand first"
    ]


def _collisions(conn: sqlite3.Connection) -> list[Collision]:
    sql = (
        'SELECT d.canonical_id, d.category, d.key, d.id, d.project_id, p."name",'
        ' d.is_canonical, d.status, d.updated_at, ps."value", d.resolved_id'
        " FROM temp.ident_state AS d"
        ' JOIN main."project_state" AS ps ON ps."id" = d.id'
        ' JOIN main."projects" AS p ON p."id" = d.project_id'
        " WHERE d.is_collision AND d.status = 'active'"
        " ORDER BY d.canonical_id, d.category, d.key, d.is_canonical DESC, d.id"
    )
    if not table_exists(conn, "project_state"):
        return []
    found: dict[tuple[str, str, str], list[Candidate]] = {}
    resolved: dict[tuple[str, str, str], str | None] = {}
    for row in conn.execute(sql):
        key = (str(row[0]), str(row[1]), str(row[2]))
        found.setdefault(key, []).append(
            Candidate(
                id=str(row[3]),
                project_row_id=str(row[4]),
                project_name=str(row[5]),
                is_canonical=bool(row[6]),
                status=str(row[7]),
                updated_at=None if row[8] is None else str(row[8]),
                value=str(row[9]),
            )
        )
        resolved[key] = None if row[10] is None else str(row[10])
    return [Collision(k[0], k[1], k[2], tuple(v), resolved[k]) for k, v in found.items()]


def _check_decisions(collisions: list[Collision], decisions: Sequence[Decision]) -> list[str]:
    """Stale decisions: the collision is gone, or its rows or values changed."""
    by_key = {(c.canonical_id, c.category, c.key): c for c in collisions}
    stale: list[str] = []
    for d in decisions:
        where = f"{d.canonical_id} {d.category}/{d.key}"
        c = by_key.get((d.canonical_id, d.category, d.key))
        if c is None:
            stale.append(f"stale resolution for {where}: it is no longer a collision")
            continue
        now = sorted((x.id, x.value_sha256) for x in c.candidates)
        if now != sorted(d.candidates):
            stale.append(f"stale resolution for {where}: its rows or values changed since resolve")
        elif d.winner_id not in {x.id for x in c.candidates}:
            stale.append(f"resolution for {where} picks row {d.winner_id}, not a candidate")
    return stale


def _counts(conn: sqlite3.Connection, surv: Survey, groups: list[Group]) -> dict[str, int]:
    counts = dict.fromkeys(CHANGE_COUNTS, 0)
    counts["shadow_rows_deleted"] = sum(len(g.deleted_shadows) for g in groups)
    counts["shadow_rows_renamed"] = sum(1 for g in groups if g.renamed_shadow is not None)
    for outcome, n in conn.execute(
        "SELECT outcome, COUNT(*) FROM temp.ident_state GROUP BY outcome"
    ):
        key = {
            "moves": "state_moved",
            "duplicate": "state_archived_duplicate",
            "history": "state_archived_history",
            "stays": "state_unchanged",
            "collision": "state_in_collision",
        }[str(outcome)]
        counts[key] = int(n)
    counts.setdefault("state_unchanged", 0)
    counts.setdefault("state_in_collision", 0)
    (counts["memories_superseded"],) = conn.execute(
        "SELECT COUNT(*) FROM temp.ident_mem_dups WHERE rnk > 1"
    ).fetchone()
    for target in surv.targets:
        counts[f"{target.bucket}_rekeyed"] += _rows_moving(surv, target)
    return counts


def _fingerprint(
    conn: sqlite3.Connection,
    registry: Registry,
    surv: Survey,
    groups: list[Group],
    decisions: Sequence[Decision],
    rekeys: Sequence[RekeySum],
) -> str:
    """Hash the alias map and the identity and version of every row the plan reads.

    Any write that could change the plan changes one of these inputs: the
    projects rows of each group, every state row of each group, every row a
    rekey would touch, and every memory that takes part in de-duplication.
    """
    h = hashlib.sha256()
    h.update(registry.alias_map_digest().encode())
    h.update(repr(sorted(t.label for t in surv.targets)).encode())
    h.update(repr(sorted((r.id, r.name, r.role) for r in surv.project_rows)).encode())
    h.update(
        repr(sorted((d.canonical_id, d.category, d.key, d.winner_id) for d in decisions)).encode()
    )
    h.update(
        repr(
            sorted(
                (n.table, n.column, n.name, n.kind, n.count, n.spellings)
                for n in surv.names
                if n.kind != "unregistered"
            )
        ).encode()
    )
    if surv.has_state and groups:
        sql = (
            'SELECT ps."id", ps."project_id", ps."category", ps."key", ps."status",'
            ' ps."updated_at", ps."value" FROM main."project_state" AS ps'
            ' WHERE ps."project_id" IN (SELECT project_row_id FROM temp.ident_groups)'
            ' ORDER BY ps."id"'
        )
        hash_rows(h, conn.execute(sql))
    for target in rekeys:
        h.update(f"{target.label}\n{target.rows}\n{target.digest}\n".encode())
    hash_rows(h, conn.execute("SELECT id, updated_at, rnk FROM temp.ident_mem_dups ORDER BY id"))
    return h.hexdigest()
