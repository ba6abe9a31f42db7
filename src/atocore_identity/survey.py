"""The read-only survey: what the registry recognises in a database (inspect).

A handful of GROUP BY statements whatever the row count, no TEMP tables:
inspect runs exactly what ``inspect --sql`` prints. ``planner.build_plan``
starts from a survey and decides in TEMP tables.

Discovery (SPEC §3, opt-in: inspect, plan and verify ask for it; apply's
postconditions do not) reads every other column that can hold text, one
GROUP BY per column, and lists those holding alias-keyed or variant-spelled
names: a forgotten column must never look clean. Its rules are here
(``discover_columns``); ``discovery.py`` decides where it runs.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Collection, Container, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from atocore_identity.database import quote_ident, quote_literal, table_columns, table_exists
from atocore_identity.errors import DatabaseError
from atocore_identity.plan_objects import (
    EXAMPLES,
    MOVING_KINDS,
    DiscoveredColumn,
    Discovery,
    NameCount,
    ProjectRow,
    SampledTable,
    Survey,
)
from atocore_identity.registry import Registry, fold
from atocore_identity.targets import OWNED, MissingTarget, Target

STATE_REQUIRED = ("id", "project_id", "category", "key", "value", "status", "updated_at")
MEMORY_REQUIRED = ("id", "memory_type", "content", "project", "status", "updated_at")

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    return None


def in_list(values: Sequence[object]) -> str:
    """A SQL ``(...)`` list of literals: the printed SQL is the SQL run."""
    return "(" + ", ".join(quote_literal(v) for v in values) + ")"


def survey(
    conn: sqlite3.Connection,
    registry: Registry,
    targets: list[Target],
    missing: list[MissingTarget],
    progress: Progress = quiet,
    memory_statuses: bool = True,
) -> Survey:
    """Count what the registry recognises. A handful of GROUP BY statements.

    ``memory_statuses=False`` skips the per-status memory counts: build_plan
    takes them from its rekey table instead of reading the rows twice. The
    survey's ``discovery`` is filled in by whoever asked for it
    (``discovery.py`` runs ``discover_columns`` beside the caller's work).
    """
    progress("reading projects")
    project_rows, unregistered_projects = _project_rows(conn, registry)
    has_state = table_exists(conn, "project_state")
    state_by_status = _state_by_status(conn, project_rows) if has_state else {}
    names: list[NameCount] = []
    rename: dict[str, str] = {}
    memories_by_status: dict[tuple[str, str], int] = {}
    for target in targets:
        progress(f"counting {target.label}")
        moving = _count_names(conn, registry, target, names, rename)
        if target.dedupe:
            require_columns(conn, "memories", MEMORY_REQUIRED)
            if memory_statuses and moving:
                sql = (
                    'SELECT "project", "status", COUNT(*) FROM main."memories"'
                    f' WHERE "project" COLLATE BINARY IN {in_list(moving)}'
                    ' GROUP BY "project", "status"'
                )
                add_statuses(memories_by_status, conn.execute(sql))
    return Survey(
        targets=targets,
        missing=missing,
        project_rows=project_rows,
        unregistered_projects=unregistered_projects,
        names=names,
        state_by_status=state_by_status,
        memories_by_status=memories_by_status,
        has_state=has_state,
        rename=rename,
    )


def _project_rows(conn: sqlite3.Connection, registry: Registry) -> tuple[list[ProjectRow], int]:
    """The projects rows the registry recognises, and how many it does not."""
    require_columns(conn, "projects", ("id", "name"))
    rows: list[ProjectRow] = []
    unregistered = 0
    for pid, name in conn.execute('SELECT "id", "name" FROM main."projects"'):
        found = registry.classify(name) if isinstance(name, str) else None
        if found is None:
            unregistered += 1
            continue
        role = "shadow" if found[0] == "alias" else "canonical"
        rows.append(ProjectRow(str(pid), name, found[1], role))
    return rows, unregistered


def _state_by_status(
    conn: sqlite3.Connection, project_rows: list[ProjectRow]
) -> dict[tuple[str, str], int]:
    require_columns(conn, "project_state", STATE_REQUIRED)
    out: dict[tuple[str, str], int] = {}
    if not project_rows:
        return out
    sql = (
        'SELECT "project_id", "status", COUNT(*) FROM main."project_state" '
        f'WHERE "project_id" IN {in_list([r.id for r in project_rows])}'
        ' GROUP BY "project_id", "status"'
    )
    for pid, status, count in conn.execute(sql):
        out[(str(pid), str(status))] = int(count)
    return out


def _count_names(
    conn: sqlite3.Connection,
    registry: Registry,
    target: Target,
    names: list[NameCount],
    rename: dict[str, str],
) -> list[str]:
    """Count a target's names per folded value into ``names``; record every alias
    or variant spelling in ``rename``; return the spellings that would move."""
    col, tab = quote_ident(target.column), quote_ident(target.table)
    # COLLATE BINARY: a column declared NOCASE would merge spellings here
    # and hide every variant; names are compared by fold() only.
    sql = f"SELECT {col}, COUNT(*) FROM main.{tab} GROUP BY {col} COLLATE BINARY"
    found, moving = tally(registry, target.table, target.column, conn.execute(sql))
    names += found
    rename.update(moving)
    return [raw for raw, _ in moving]


def tally(
    registry: Registry,
    table: str,
    column: str,
    rows: Iterable[tuple[Any, Any]],
    kinds: Container[str] = ("canonical", "variant", "alias", "unregistered"),
) -> tuple[list[NameCount], list[tuple[str, str]]]:
    """Count (raw value, rows) pairs per folded name, keeping the names of ``kinds``;
    also return (raw spelling, canonical id) for every alias or variant (what moves)."""
    per_name: dict[tuple[str, str, str | None], list[Any]] = {}
    moving: list[tuple[str, str]] = []
    for raw, count in rows:
        kind: str = "unregistered"
        canonical: str | None = None
        if isinstance(raw, str):
            hit = registry.classify(raw)
            if hit is not None:
                kind, canonical = hit
                if kind != "canonical":
                    moving.append((raw, canonical))
        if kind not in kinds:
            continue
        name = fold(raw) if isinstance(raw, str) else repr(raw)
        slot = per_name.setdefault((name, kind, canonical), [0, 0, []])
        slot[0] += int(count)
        slot[1] += 1
        if len(slot[2]) < EXAMPLES:
            slot[2].append(raw if isinstance(raw, str) else repr(raw))
    names = [
        NameCount(table, column, name, kind, canonical, count, spellings, tuple(examples))
        for (name, kind, canonical), (count, spellings, examples) in per_name.items()
    ]
    return names, moving


def add_statuses(into: dict[tuple[str, str], int], rows: Iterable[tuple[Any, ...]]) -> None:
    """Accumulate (raw name, status, count) rows per folded name."""
    for raw, status, count in rows:
        key = (fold(str(raw)), str(status))
        into[key] = into.get(key, 0) + int(count)


def require_columns(conn: sqlite3.Connection, table: str, required: Sequence[str]) -> None:
    have = set(table_columns(conn, table))
    lacking = [c for c in required if c not in have]
    if lacking:
        raise DatabaseError(
            f"table {table} lacks column(s) {', '.join(lacking)}",
            "this does not look like an AtoCore schema the tool knows",
        )


# -- discovery (SPEC §3) ---------------------------------------------------------

# Tables larger than this are read only up to this many rows (first by rowid,
# or by primary key WITHOUT ROWID), and every output says so.
SAMPLE_ROWS = 1_000_000
# The code points Python's str.strip() removes (str.isspace()).
# tests/test_discovery.py checks the list against Python.
WHITESPACE = (
    *(9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 133, 160, 5760),
    *range(8192, 8203),
    *(8232, 8233, 8239, 8287, 12288),
)
# str.lower() never shortens a character and lengthens one at most to two
# (only U+0130 'İ' -> 'i̇'); checked by tests/test_discovery.py.
LOWER_GROWTH = 2
# str.lower() changes no code point from here on (checked by tests/test_discovery.py).
NO_CASE_FROM = 0x20000
# The ASCII characters str.strip() removes (checked by tests/test_discovery.py).
ASCII_BLANK = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
# What discovery's lenient decoding reads a byte that is not UTF-8 as.
REPLACEMENT = "\ufffd"
# How much white space around a registered name discovery still finds.
PADDING = 64
# Column types of a STRICT table that cannot hold text.
STRICT_NOT_TEXT = frozenset({"INT", "INTEGER", "REAL", "BLOB"})
# The end of a CREATE TABLE statement that makes a WITHOUT ROWID table.
WITHOUT_ROWID = re.compile(r"\)\s*(STRICT\s*,\s*)?WITHOUT\s+ROWID\s*(,\s*STRICT\s*)?;?\s*$", re.I)


@dataclass(frozen=True)
class NameShape:
    """What a value must look like to fold to a registered name, in terms SQL
    can test exactly: its length and first character, and for a value that
    is all ASCII its fold itself."""

    lo: int  # shortest stripped length
    hi: int  # longest stripped length
    first: tuple[int, ...]  # code points whose lower() starts a registered name
    keys: tuple[str, ...]  # every registered name, folded

    def where(self, column: str) -> str:
        """The WHERE clause keeping only values that can fold to a registered name.

        A value is kept when it is text, between ``lo`` and ``hi + PADDING``
        characters long, and either starts with a character in ``first`` and
        is at most ``hi`` long or ends in white space, or starts with white
        space (every value that folds to a registered name passes, with at
        most PADDING characters of white space around it; these tests copy
        nothing and reject long free text by length). Of those, a value that
        is all ASCII (as many bytes as characters) is kept only when its fold
        is a registered name: on ASCII, ``lower(trim(v, ASCII_BLANK))`` is
        exactly ``v.strip().lower()``. Anything else goes to Python's fold.
        (A byte that is not UTF-8 reads as U+FFFD; it can only be part of a
        registered name holding U+FFFD, and with one registered every text
        value goes to Python.)
        """
        if any(REPLACEMENT in k for k in self.keys):
            # Bytes that are not UTF-8 read as U+FFFD in Python but count as
            # characters of their own in SQLite's length() and unicode() (a
            # stray 0x80 is 128): with such a name registered, no test on
            # length, first character or byte count is exact. Python decides.
            return f"typeof({column}) = 'text'"
        blank = "(" + ", ".join(str(c) for c in WHITESPACE) + ")"
        first = "(" + ", ".join(str(c) for c in self.first) + ")"
        shape = (
            f"typeof({column}) = 'text' AND length({column}) BETWEEN {self.lo}"
            f" AND {self.hi + PADDING} AND (unicode({column}) IN {blank}"
            f" OR (unicode({column}) IN {first} AND (length({column}) <= {self.hi}"
            f" OR unicode(substr({column}, -1)) IN {blank})))"
        )
        return (
            f"{shape} AND (length(CAST({column} AS BLOB)) <> length({column})"
            f" OR lower(trim({column}, {quote_literal(ASCII_BLANK)})) IN {in_list(self.keys)})"
        )


def name_shape(registry: Registry) -> NameShape:
    """The shape of the values that can fold to a registered name.

    fold(v) = v.strip().lower(); lower() maps a character to one or two (so a
    stripped length outside [ceil(min/2), max] of the names' lengths cannot
    match), and the first character of fold(v) is the first of the lower() of
    v's first non-blank character.
    """
    keys = [*registry.alias_to_id, *registry.folded_ids]
    lengths = [len(k) for k in keys]
    starts = {k[0] for k in keys}
    first = {c for c in range(NO_CASE_FROM) if chr(c).lower()[:1] in starts}
    first |= {ord(c) for c in starts if ord(c) >= NO_CASE_FROM}
    return NameShape(
        -(-min(lengths) // LOWER_GROWTH),
        max(lengths),
        tuple(sorted(first)),
        tuple(sorted(set(keys))),
    )


@dataclass(frozen=True)
class _Candidate:
    """A table with the columns discovery reads, and how to take its first rows."""

    table: str
    columns: tuple[str, ...]
    order: str  # ORDER BY of the sample: rowid, or the WITHOUT ROWID primary key


def _tables(conn: sqlite3.Connection) -> list[tuple[str, bool, bool]]:
    """(name, WITHOUT ROWID, STRICT) of every ordinary table, by name.

    ``PRAGMA table_list`` (SQLite 3.37) says which tables are virtual or
    shadow tables; an older SQLite, where an unknown PRAGMA silently returns
    nothing, is read from sqlite_master instead (it has no STRICT tables).
    """
    if sqlite3.sqlite_version_info >= (3, 37):
        found = [
            (str(r[1]), bool(r[4]), bool(r[5]))
            for r in conn.execute("PRAGMA main.table_list")
            if r[2] == "table"
        ]
    else:
        found = [
            (str(name), bool(WITHOUT_ROWID.search(str(sql or ""))), False)
            for name, sql in conn.execute(
                "SELECT name, sql FROM main.sqlite_master WHERE type = 'table'"
            )
            if not str(sql or "").upper().startswith("CREATE VIRTUAL")
        ]
    return sorted(t for t in found if not t[0].lower().startswith("sqlite_"))


def _candidates(conn: sqlite3.Connection, skip: set[tuple[str, str]]) -> Iterator[_Candidate]:
    """Every ordinary table's columns that can hold text, minus ``skip``
    (lower-cased TABLE, COLUMN) and the whole ``projects`` table.

    Views, virtual tables (FTS indexes and the like) and their shadow tables
    are derived data and are not read (an SQLite before 3.37 cannot tell a
    shadow table, and reads it); neither are SQLite's own sqlite_* tables.
    """
    for table, without_rowid, strict in _tables(conn):
        if table.lower() == "projects":
            continue
        info = conn.execute(f"PRAGMA main.table_info({quote_ident(table)})").fetchall()
        names = {str(r[1]).lower() for r in info}
        pk = [str(r[1]) for r in sorted(info, key=lambda r: int(r[5])) if int(r[5]) > 0]
        # a primary key that is the rowid has no index of its own
        # ("INTEGER PRIMARY KEY DESC" has one, and is an ordinary column)
        indexed_pk = any(
            r[3] == "pk" for r in conn.execute(f"PRAGMA main.index_list({quote_ident(table)})")
        )
        rowid_alias = len(pk) == 1 and not without_rowid and not indexed_pk
        columns = []
        for _cid, name, declared, _nn, _dflt, in_pk in info:
            kind = str(declared or "").strip().upper()
            if (table.lower(), str(name).lower()) in skip:
                continue
            if in_pk and rowid_alias and kind == "INTEGER":
                continue  # the rowid itself: an integer, never text
            if strict and kind in STRICT_NOT_TEXT:
                continue
            columns.append(str(name))
        if not columns:
            continue
        if without_rowid:
            order = ", ".join(quote_ident(c) for c in pk)
        else:
            free = [r for r in ("rowid", "_rowid_", "oid") if r not in names]
            order = free[0] if free else ""
        yield _Candidate(table, tuple(columns), order)


@contextmanager
def _lenient_text(conn: sqlite3.Connection) -> Iterator[None]:
    """Decode text leniently while reading columns nobody vouched for: a value
    that is not UTF-8 cannot be a registered name, and must not stop the run."""
    before = conn.text_factory
    conn.text_factory = lambda b: b.decode("utf-8", "replace")
    try:
        yield
    finally:
        conn.text_factory = before


def discover_columns(
    conn: sqlite3.Connection,
    registry: Registry,
    targets: Sequence[Target],
    ignore: Sequence[tuple[str, str]] = (),
    progress: Progress = quiet,
    sample_rows: int | None = None,
    only: Collection[tuple[str, str]] | None = None,
) -> Discovery:
    """Unconfigured text columns holding alias-keyed or variant-spelled names.

    Reads every column that can hold text outside ``projects``,
    ``project_state.project_id``, the ``targets`` and the ``ignore``d columns:
    one ``SELECT COUNT(*)`` per table and one GROUP BY per column, keeping only
    text values that can fold to a registered name (``NameShape.where``), so a
    huge free-text column returns nothing big. The distinct values are
    classified in Python with ``registry.classify`` (SQLite's lower() folds
    ASCII only: it is used on all-ASCII values only, ``NameShape.where``).
    Tables over ``sample_rows`` rows (default ``SAMPLE_ROWS``) are read up to
    that many rows, and the result says so. ``only`` limits it to those
    (table, column) pairs (a share of the work, ``discovery.py``).
    """
    skip = _skipped(targets, ignore)
    shape = name_shape(registry)
    limit = SAMPLE_ROWS if sample_rows is None else sample_rows
    found: list[DiscoveredColumn] = []
    read: list[str] = []
    sampled: list[SampledTable] = []
    with _lenient_text(conn):
        for cand in _candidates(conn, skip):
            if only is not None:
                mine = tuple(c for c in cand.columns if (cand.table, c) in only)
                if not mine:
                    continue
                cand = _Candidate(cand.table, mine, cand.order)
            progress(f"discovering names in {cand.table}")
            tab = f"main.{quote_ident(cand.table)}"
            (total,) = conn.execute(f"SELECT COUNT(*) FROM {tab}").fetchone()
            total = int(total)
            if total > limit:
                sampled.append(SampledTable(cand.table, min(total, limit), total))
            for column in cand.columns:
                column_found = _discover_column(conn, registry, shape, cand, column, total, limit)
                read.append(f"{cand.table}.{column}")
                if column_found is not None:
                    found.append(column_found)
    return Discovery(
        columns=found,
        read=read,
        ignored=[f"{t}.{c}" for t, c in ignore],
        sampled=sampled,
        sample_rows=limit,
        length_window=(shape.lo, shape.hi),
    )


def _skipped(targets: Sequence[Target], ignore: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """(table, column), lower-cased, that discovery does not read."""
    skip = {(t.lower(), c.lower()) for t, c in OWNED}
    skip |= {(t.table.lower(), t.column.lower()) for t in targets}
    skip |= {(t.lower(), c.lower()) for t, c in ignore}
    return skip


def discovery_columns(
    conn: sqlite3.Connection, targets: Sequence[Target], ignore: Sequence[tuple[str, str]] = ()
) -> list[tuple[str, str, int]]:
    """(table, column, about how many rows a read of it takes) for every
    column discovery reads, in its order. The row count is the table's
    largest rowid (one index seek), or its COUNT(*) without a rowid, capped
    at what discovery samples."""
    out: list[tuple[str, str, int]] = []
    for cand in _candidates(conn, _skipped(targets, ignore)):
        tab = f"main.{quote_ident(cand.table)}"
        sql = f"SELECT max({cand.order}) FROM {tab}" if cand.order == "rowid" else ""
        (rows,) = conn.execute(sql or f"SELECT COUNT(*) FROM {tab}").fetchone()
        out += [(cand.table, col, min(int(rows or 0), SAMPLE_ROWS)) for col in cand.columns]
    return out


def merge_discoveries(parts: Sequence[Discovery], order: Sequence[tuple[str, str]]) -> Discovery:
    """One Discovery from shares over disjoint columns, in discovery's order."""
    rank = {pair: i for i, pair in enumerate(order)}
    named = {f"{t}.{c}": i for (t, c), i in rank.items()}
    tables = {t: i for i, (t, _) in reversed(list(enumerate(order)))}
    last = len(rank)
    sampled: dict[str, SampledTable] = {}
    for part in parts:
        for s in part.sampled:
            sampled.setdefault(s.table, s)
    first = parts[0]
    return Discovery(
        columns=sorted(
            (c for p in parts for c in p.columns), key=lambda c: rank.get((c.table, c.column), last)
        ),
        read=sorted((r for p in parts for r in p.read), key=lambda r: named.get(r, last)),
        ignored=first.ignored,
        sampled=sorted(sampled.values(), key=lambda s: tables.get(s.table, last)),
        sample_rows=first.sample_rows,
        length_window=first.length_window,
    )


def _discover_column(
    conn: sqlite3.Connection,
    registry: Registry,
    shape: NameShape,
    cand: _Candidate,
    column: str,
    total: int,
    limit: int,
) -> DiscoveredColumn | None:
    """One GROUP BY over the column (its table's first ``limit`` rows when the
    table is bigger); None when it holds no alias or variant."""
    tab = f"main.{quote_ident(cand.table)}"
    col = quote_ident(column)
    source = tab
    if total > limit:
        order = f" ORDER BY {cand.order}" if cand.order else ""
        source = f"(SELECT {col} FROM {tab}{order} LIMIT {limit})"
    sql = (
        f"SELECT {col}, COUNT(*) FROM {source}"
        f" WHERE {shape.where(col)} GROUP BY {col} COLLATE BINARY"
    )
    names, _ = tally(registry, cand.table, column, conn.execute(sql), MOVING_KINDS)
    if not names:
        return None
    names.sort(key=lambda n: (-n.count, n.name))
    return DiscoveredColumn(cand.table, column, tuple(names), min(total, limit), total)
