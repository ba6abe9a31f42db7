"""Which columns hold a project name: the defaults plus what the operator adds.

SPEC §3: the defaults are memories.project (with de-duplication) and
interactions.project; operators add TABLE.COLUMN pairs on the command line or
in a TOML config file (``columns = ["conflicts.project"]``), and acknowledge
columns that legitimately hold such text (``--ignore-column``, ``ignore = [...]``)
so discovery neither reads nor flags them.
"""

from __future__ import annotations

import sqlite3
import tomllib
from dataclasses import dataclass
from pathlib import Path

from atocore_identity.database import quote_ident, read_regular_file, table_columns
from atocore_identity.errors import BadInput

# Tables and columns the migration owns through its own rules; an operator
# cannot add them as plain text columns.
OWNED = {("projects", "name"), ("projects", "id"), ("project_state", "project_id")}
DEFAULT_TARGETS = (("memories", "project"), ("interactions", "project"))


@dataclass(frozen=True)
class Target:
    """A project-keyed text column and how its rows are identified in reports."""

    table: str
    column: str
    key: str  # "id" when the table has one, else "rowid"
    named: bool  # named by the operator: missing is an error

    @property
    def label(self) -> str:
        return f"{self.table}.{self.column}"

    @property
    def bucket(self) -> str:
        """How reports count this column: memories, interactions, or extra."""
        return self.table if (self.table, self.column) in DEFAULT_TARGETS else "extra"

    @property
    def dedupe(self) -> bool:
        """Only memories get SPEC §3's active-duplicate supersession."""
        return self.bucket == "memories"


@dataclass(frozen=True)
class MissingTarget:
    table: str
    column: str
    reason: str

    @property
    def label(self) -> str:
        return f"{self.table}.{self.column}"


def parse_column(spec: str, option: str = "--column") -> tuple[str, str]:
    """Parse TABLE.COLUMN; raise BadInput with the fix on a malformed value."""
    table, dot, column = spec.strip().partition(".")
    if not dot or not table or not column or "." in column:
        raise BadInput(
            f"{option} {spec!r} is not TABLE.COLUMN",
            f"write it like {option} conflicts.project",
        )
    if (table.lower(), column.lower()) in OWNED:
        raise BadInput(
            f"{option} {spec!r} is owned by the migration's own rules",
            "name only free-text project columns such as conflicts.project",
        )
    return table, column


@dataclass(frozen=True)
class Config:
    """The TOML config file: extra project-keyed columns and acknowledged ones."""

    columns: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()


def _string_list(doc: dict[str, object], name: str, path: Path) -> tuple[str, ...]:
    value = doc.get(name, [])
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise BadInput(f'config {path}: "{name}" must be a list of "TABLE.COLUMN" strings')
    return tuple(value)


def load_config(path: Path) -> Config:
    """Read ``columns = [...]`` and ``ignore = [...]`` from a TOML config file."""
    # read_regular_file: a FIFO or a directory is bad input, never a hang
    raw = read_regular_file(path, "config", expected="a TOML file", hint="check --config")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"config {path} cannot be read: {exc}", "check --config") from None
    return Config(_string_list(doc, "columns", path), _string_list(doc, "ignore", path))


def _actual_table(conn: sqlite3.Connection, table: str) -> str | None:
    """The table's name as the database spells it (SQLite names ignore ASCII case)."""
    row = conn.execute(
        "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name = ? COLLATE NOCASE",
        (table,),
    ).fetchone()
    return None if row is None else str(row[0])


def _without_rowid(conn: sqlite3.Connection, table: str) -> bool:
    rows = conn.execute(f"PRAGMA main.table_list({quote_ident(table)})").fetchall()
    return bool(rows and rows[0][4])


def resolve_targets(
    conn: sqlite3.Connection, extra: list[str]
) -> tuple[list[Target], list[MissingTarget]]:
    """The targets present in this database, and the defaults that are missing.

    A missing default is reported; a missing operator-named column is an error.
    Names are matched as SQLite matches them, ignoring ASCII case, so
    ``MEMORIES.Project`` is the default column, not a second one.
    """
    wanted: list[tuple[str, str, bool]] = [(t, c, False) for t, c in DEFAULT_TARGETS]
    for spec in extra:
        table, column = parse_column(spec)
        wanted.append((table, column, True))

    found: list[Target] = []
    missing: list[MissingTarget] = []
    seen: set[tuple[str, str]] = set()
    for table, column, named in wanted:
        actual = _actual_table(conn, table)
        columns = table_columns(conn, actual) if actual else []
        match = [c for c in columns if c.lower() == column.lower()]
        reason = "no such table" if not actual else ("" if match else "no such column")
        if reason or actual is None:
            if named:
                raise BadInput(
                    f"--column {table}.{column}: {reason} in this database",
                    "check the spelling, or drop the option",
                )
            missing.append(MissingTarget(table, column, reason))
            continue
        key = (actual.lower(), match[0].lower())
        if key in seen:
            continue
        seen.add(key)
        key_column = "id" if "id" in columns else "rowid"
        if key_column == "rowid" and _without_rowid(conn, actual):
            raise BadInput(
                f"--column {table}.{column}: table {actual} is WITHOUT ROWID and has no id"
                " column, so its rows have no key the tool can record and check",
                f"migrate it by hand, or acknowledge it with --ignore-column {table}.{column}",
            )
        found.append(Target(actual, match[0], key_column, named))
    return found, missing


def resolve_ignored(
    conn: sqlite3.Connection, specs: list[str] | tuple[str, ...], targets: list[Target]
) -> list[tuple[str, str]]:
    """The acknowledged columns (--ignore-column, ``ignore = [...]``) as the
    database spells them: discovery neither reads nor flags them.

    The operator named each one, so (like a named --column) a malformed spec,
    a table or column this database lacks, and a column that is also a
    project-keyed target are errors, not silently ignored.
    """
    out: list[tuple[str, str]] = []
    configured = {(t.table.lower(), t.column.lower()) for t in targets}
    for spec in specs:
        table, column = parse_column(spec, "--ignore-column")
        actual = _actual_table(conn, table)
        columns = table_columns(conn, actual) if actual else []
        match = [c for c in columns if c.lower() == column.lower()]
        if actual is None or not match:
            reason = "no such table" if actual is None else "no such column"
            raise BadInput(
                f"--ignore-column {table}.{column}: {reason} in this database",
                "check the spelling, or drop it from --ignore-column and the config's ignore",
            )
        if (actual.lower(), match[0].lower()) in configured:
            raise BadInput(
                f"--ignore-column {table}.{column} is also a project-keyed column"
                " (a default or --column): it cannot be both migrated and ignored",
                "drop one of the two",
            )
        if (actual, match[0]) not in out:
            out.append((actual, match[0]))
    return out
