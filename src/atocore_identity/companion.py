"""The companion: a report's row-level detail as gzip JSON lines (SPEC §4).

One owner for the format: the record types, the streaming writer and the
typed streaming reader. plan and apply write the same records from the
planner's TEMP tables, the ``rekey`` records taken in as the JSON lines a
worker wrote beside the plan (``rekeys.py``); apply's companion is the
archive that verify and revert read back. Records, one JSON object a line:

- ``project``: a shadow ``projects`` row renamed into the canonical id
  (``action: rename``) or deleted (``action: delete``), with the full row;
- ``state``: a ``project_state`` row moved or archived, with the full row
  as it was before the apply; also (``stays``) every row that stays under a
  shadow renamed into the canonical id, so revert can tell rows written
  since from rows that were there;
- ``rekey``: a chunk of rows of one project-keyed column, their keys and
  their exact old spellings;
- ``supersede``: an active memory the apply marked ``superseded``;
- ``revert`` (a revert's companion): one row revert reverted or skipped.
"""

from __future__ import annotations

import gzip
import json
import os
import queue
import sqlite3
import threading
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from atocore_identity.errors import BadInput
from atocore_identity.plan_objects import Plan, RekeyRecords
from atocore_identity.reports import publish, temp_beside
from atocore_identity.statements import (
    iter_project_rows,
    iter_rekeyed,
    iter_state_rows,
    iter_superseded,
)
from atocore_identity.targets import Target

BATCH = 1000


@dataclass(frozen=True)
class ProjectRecord:
    action: str  # "rename" | "delete"
    id: str
    name: str
    canonical_id: str
    target_row_id: str | None
    row: dict[str, Any]  # every column of the row before the apply


@dataclass(frozen=True)
class StateRecord:
    outcome: str  # "moves" | "duplicate" | "history" | "stays" (kept by a renamed shadow)
    canonical_id: str
    to_project_row: str | None
    winner_id: str | None
    row: dict[str, Any]  # every column of the row before the apply

    @property
    def archived(self) -> bool:
        return self.outcome in ("duplicate", "history")


@dataclass(frozen=True)
class RekeyRecord:
    table: str
    column: str
    key: str  # the key column: "id" or "rowid"
    to: str
    ids: list[Any]
    old: list[Any]  # the exact spellings before the apply, one per id
    rows: list[dict[str, Any]] | None = None  # full rows, for tables keyed by rowid


@dataclass(frozen=True)
class SupersedeRecord:
    table: str
    id: str
    keeper_id: str
    canonical_id: str


@dataclass(frozen=True)
class RevertRecord:
    """What a revert did with one row the apply changed (a revert's companion)."""

    action: str  # "reverted" | "skipped"
    kind: str  # "delete" | "rename" | "moves" | "archived" | "rekey" | "supersede"
    canonical_id: str
    table: str
    column: str
    key_column: str
    key: Any
    old: Any  # the value before the apply, which a reverted row holds again
    new: Any  # the value the apply wrote
    why: str | None  # why a row was skipped


Record = ProjectRecord | StateRecord | RekeyRecord | SupersedeRecord | RevertRecord


def _encode(rec: Record) -> dict[str, Any]:
    if isinstance(rec, ProjectRecord):
        return {
            "record": "project",
            "action": rec.action,
            "id": rec.id,
            "name": rec.name,
            "canonical_id": rec.canonical_id,
            "target_row_id": rec.target_row_id,
            "row": rec.row,
        }
    if isinstance(rec, StateRecord):
        return {
            "record": "state",
            "outcome": rec.outcome,
            "canonical_id": rec.canonical_id,
            "to_project_row": rec.to_project_row,
            "winner_id": rec.winner_id,
            "row": rec.row,
        }
    if isinstance(rec, RekeyRecord):
        return {
            "record": "rekey",
            "table": rec.table,
            "column": rec.column,
            "key": rec.key,
            "to": rec.to,
            "ids": rec.ids,
            "from": rec.old,
            **({"rows": rec.rows} if rec.rows is not None else {}),
        }
    if isinstance(rec, RevertRecord):
        return {
            "record": "revert",
            "action": rec.action,
            "kind": rec.kind,
            "canonical_id": rec.canonical_id,
            "table": rec.table,
            "column": rec.column,
            "key_column": rec.key_column,
            "key": rec.key,
            "old": rec.old,
            "new": rec.new,
            "why": rec.why,
        }
    return {
        "record": "supersede",
        "table": rec.table,
        "id": rec.id,
        "keeper_id": rec.keeper_id,
        "canonical_id": rec.canonical_id,
    }


# The fields of a revert record, in _encode's order.
REVERT_FIELDS = (
    "action",
    "kind",
    "canonical_id",
    "table",
    "column",
    "key_column",
    "key",
    "old",
    "new",
    "why",
)


def revert_lines_sql(values: dict[str, str], source: str) -> str:
    """A SELECT of revert records encoded by SQLite's json_object: the same
    object ``_encode`` makes of a RevertRecord (compact separators aside),
    without a Python object per row. ``values`` gives the SQL expression of
    every field; ``source`` is the FROM ... ORDER BY clause.

    Only for text, integer and NULL values: SQLite writes a REAL with 15
    significant digits and refuses a BLOB, so the caller checks there are
    none (``JSON_EXACT_TYPES``) and writes ``RevertRecord``s otherwise.
    """
    pairs = ", ".join(f"'{name}', {values[name]}" for name in REVERT_FIELDS)
    return f"SELECT json_object('record', 'revert', {pairs}) {source}"


JSON_EXACT_TYPES = ("text", "integer", "null")


class MalformedRecord(ValueError):
    """A companion line that is not one of the record types."""


def _text(doc: dict[str, Any], key: str, optional: bool = False) -> Any:
    value = doc.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise MalformedRecord(f"{doc.get('record')!r} record lacks a text {key!r}")
    return value


def _row(doc: dict[str, Any]) -> dict[str, Any]:
    row = doc.get("row")
    if not isinstance(row, dict) or "id" not in row:
        raise MalformedRecord(f"{doc.get('record')!r} record lacks its full row")
    return row


def _decode(doc: Any) -> Record:
    if not isinstance(doc, dict):
        raise MalformedRecord("a line is not a JSON object")
    kind = doc.get("record")
    if kind == "project":
        return _decode_project(doc)
    if kind == "state":
        return _decode_state(doc)
    if kind == "rekey":
        return _decode_rekey(doc)
    if kind == "supersede":
        return _decode_supersede(doc)
    if kind == "revert":
        return _decode_revert(doc)
    raise MalformedRecord(f"unknown record type {kind!r}")


def _decode_project(doc: dict[str, Any]) -> ProjectRecord:
    action = _text(doc, "action")
    if action not in ("rename", "delete"):
        raise MalformedRecord(f"project record has unknown action {action!r}")
    return ProjectRecord(
        action,
        _text(doc, "id"),
        _text(doc, "name"),
        _text(doc, "canonical_id"),
        _text(doc, "target_row_id", optional=True),
        _row(doc),
    )


def _decode_state(doc: dict[str, Any]) -> StateRecord:
    outcome = _text(doc, "outcome")
    if outcome not in ("moves", "duplicate", "history", "stays"):
        raise MalformedRecord(f"state record has unknown outcome {outcome!r}")
    return StateRecord(
        outcome,
        _text(doc, "canonical_id"),
        _text(doc, "to_project_row", optional=True),
        _text(doc, "winner_id", optional=True),
        _row(doc),
    )


def _decode_rekey(doc: dict[str, Any]) -> RekeyRecord:
    ids, old = doc.get("ids"), doc.get("from")
    if not isinstance(ids, list) or not isinstance(old, list) or len(ids) != len(old):
        raise MalformedRecord("rekey record needs 'ids' and 'from' of equal length")
    key = _text(doc, "key")
    if key not in ("id", "rowid"):
        raise MalformedRecord(f"rekey record has unknown key column {key!r}")
    rows = doc.get("rows")
    if rows is not None and (
        not isinstance(rows, list)
        or len(rows) != len(ids)
        or not all(isinstance(r, dict) for r in rows)
    ):
        raise MalformedRecord("rekey record's 'rows' must be one object per id")
    return RekeyRecord(
        _text(doc, "table"), _text(doc, "column"), key, _text(doc, "to"), ids, old, rows
    )


def _decode_supersede(doc: dict[str, Any]) -> SupersedeRecord:
    return SupersedeRecord(
        _text(doc, "table"),
        _text(doc, "id"),
        _text(doc, "keeper_id"),
        _text(doc, "canonical_id"),
    )


def _decode_revert(doc: dict[str, Any]) -> RevertRecord:
    action = _text(doc, "action")
    if action not in ("reverted", "skipped"):
        raise MalformedRecord(f"revert record has unknown action {action!r}")
    return RevertRecord(
        action,
        _text(doc, "kind"),
        _text(doc, "canonical_id"),
        _text(doc, "table"),
        _text(doc, "column"),
        _text(doc, "key_column"),
        doc.get("key"),
        doc.get("old"),
        doc.get("new"),
        _text(doc, "why", optional=True),
    )


class _Compressing:
    """gzip on a thread of its own: zlib and the file write release the GIL,
    so the caller encodes the next batch of records meanwhile. Bounded: at
    most QUEUED batches wait. An error of the thread (a full disk) is raised
    to the caller at its next write or at ``close``."""

    QUEUED = 4

    def __init__(self, raw: BinaryIO) -> None:
        self._gz = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1)
        self._queue: queue.Queue[bytes | None] = queue.Queue(self.QUEUED)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="companion-gzip", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            # after an error, or once the file is abandoned, drain without writing
            if self._error is None and not self._cancelled:
                try:
                    self._gz.write(data)
                except BaseException as exc:  # handed to the caller
                    self._error = exc

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def stop(self, cancel: bool = False) -> None:
        """Let the thread write what is queued (``cancel``: drop it) and end;
        idempotent."""
        self._cancelled = self._cancelled or cancel
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def close(self) -> None:
        """Write out the member's end (its trailer); the file stays open."""
        self.stop()
        if self._error is not None:
            raise self._error
        self._gz.close()


class CompanionWriter:
    """Streams records into an open gzip file (one member); ``writing`` owns
    the file itself. ``compressed=False`` writes the bare JSON lines instead:
    a part another writer takes in with ``append_lines`` (``rekeys``)."""

    def __init__(self, raw: BinaryIO, compressed: bool = True) -> None:
        self._raw = raw
        self._gz = _Compressing(raw) if compressed else None
        self._pending: list[str] = []
        self.records = 0

    def write(self, rec: Record) -> None:
        # Lines are buffered and compressed in batches: one gzip call per
        # record costs more than encoding the record.
        self._pending.append(json.dumps(_encode(rec), ensure_ascii=False, default=str))
        self.records += 1
        if len(self._pending) >= BATCH:
            self._flush()

    def write_lines(self, lines: Iterable[str]) -> None:
        """Records already encoded, one JSON object each (``revert_lines_sql``)."""
        for line in lines:
            self._pending.append(line)
            self.records += 1
            if len(self._pending) >= BATCH:
                self._flush()

    def append_lines(self, part: RekeyRecords) -> None:
        """Records another writer wrote as bare JSON lines (``rekeys``), taken
        in as they are and closed. Compressed here, into this file's one gzip
        member: a companion cut anywhere never reads as complete."""
        self._flush()
        part.file.seek(0)
        while chunk := part.file.read(1 << 20):
            self._write(chunk)
        part.close()
        self.records += part.records

    def _flush(self) -> None:
        if self._pending:
            self._write(("\n".join(self._pending) + "\n").encode("utf-8", "surrogatepass"))
            self._pending = []

    def _write(self, data: bytes) -> None:
        if self._gz is not None:
            self._gz.write(data)
        else:
            self._raw.write(data)

    def end(self) -> None:
        """Write out what is buffered and close the gzip member; the file stays open."""
        self._flush()
        if self._gz is not None:
            self._gz.close()

    def abandon(self) -> None:
        """Stop the compressing thread of a companion that will not be finished
        (what is still queued is dropped: the file goes)."""
        if self._gz is not None:
            self._gz.stop(cancel=True)

    def finish(self) -> None:
        self.end()
        self._raw.flush()
        os.fsync(self._raw.fileno())


@contextmanager
def writing(final: Path) -> Iterator[CompanionWriter]:
    """A companion written to a private temp file and published as ``final``
    when the block ends normally; on any exit the temp file is gone."""
    with temp_beside(final.parent, ".jsonl.gz") as (tmp, fd), os.fdopen(fd, "wb") as raw:
        writer = CompanionWriter(raw)
        try:
            yield writer
            writer.finish()
        finally:
            writer.abandon()
        publish(tmp, final)


def read_records(path: Path) -> Iterator[Record]:
    """Stream a companion's records, typed. A missing, truncated or malformed
    file is BadInput naming the file and the line."""
    line_no = 0
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):  # noqa: B007 - used in the error
                if line.strip():
                    yield _decode(json.loads(line))
    except FileNotFoundError:
        raise BadInput(
            f"companion {path} does not exist", "pass the report it belongs to"
        ) from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise BadInput(
            f"companion {path} is unreadable at line {line_no + 1} ({exc})",
            "it is truncated or was edited; use the backup instead",
        ) from None


def write_plan_records(conn: sqlite3.Connection, plan: Plan, path: Path) -> Path:
    """Stream the plan's row-level detail (the archive, the moves) to ``path``."""
    with writing(path) as comp:
        if plan.groups:
            for role, canonical, target_row, row in iter_project_rows(conn):
                action = "rename" if role == "renamed" else "delete"
                comp.write(
                    ProjectRecord(
                        action,
                        str(row["id"]),
                        str(row["name"]),
                        canonical,
                        None if target_row is None else str(target_row),
                        row,
                    )
                )
        if plan.survey.has_state and plan.groups:
            for rec in iter_state_rows(conn, kept_by_renamed=True):
                comp.write(StateRecord(**rec))
        if plan.rekey_records is not None:
            comp.append_lines(plan.rekey_records)
        else:
            for target in plan.survey.targets:
                write_rekey_records(comp, conn, target)
        for mid, keeper, canonical in iter_superseded(conn):
            comp.write(SupersedeRecord("memories", mid, keeper, canonical))
    return path


def write_rekey_records(comp: CompanionWriter, conn: sqlite3.Connection, target: Target) -> None:
    """A target's ``rekey`` records, from its TEMP table on ``conn``."""
    for canonical, ids, olds, rows in iter_rekeyed(conn, target):
        comp.write(RekeyRecord(target.table, target.column, target.key, canonical, ids, olds, rows))
