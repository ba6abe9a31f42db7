"""revert's companion: records encoded by SQLite equal records encoded by Python.

write_revert_records lets SQLite's json_object encode the records when every
value is text, integer or NULL, and falls back to Python's encoder for a
record holding a REAL (which json_object writes with 15 digits) or a BLOB.
Both must give the same records back to companion.read_records.
"""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

from atocore_identity import inverse
from atocore_identity.companion import RevertRecord, read_records
from atocore_identity.reverter import write_revert_records

ROWS = [
    # kind, canonical, tab, col, keycol, k, old, new, state, why
    (
        "rekey",
        "p05-interferometer",
        "memories",
        "project",
        "id",
        "m-1",
        "p05",
        "p05-interferometer",
        "left",
        None,
    ),
    (
        "rekey",
        "p05-interferometer",
        "interactions",
        "project",
        "rowid",
        42,
        " P05\t",
        "p05-interferometer",
        "changed",
        "holds 'x' now",
    ),
    (
        "moves",
        "p06-polisher",
        "project_state",
        "project_id",
        "id",
        "s-1",
        "shadow-row",
        "canon-row",
        "conflict",
        'a "quoted"\nline',
    ),
    (
        "delete",
        "p06-polisher",
        "projects",
        "name",
        "id",
        "shadow-row",
        "Pölisher ✓",
        None,
        "left",
        None,
    ),
    (
        "supersede",
        "p06-polisher",
        "memories",
        "status",
        "id",
        "m-2",
        "active",
        "superseded",
        "left",
        "\x00\x1f control",
    ),
    (
        "archived",
        "p06-polisher",
        "project_state",
        "project_id",
        "id",
        "s-2",
        None,
        None,
        "before",
        None,
    ),
]


def records(tmp_path: Path, rows: list[tuple[object, ...]], name: str) -> list[RevertRecord]:
    conn = sqlite3.connect(":memory:")
    try:
        for sql in inverse.SETUP:
            conn.execute(sql)
        conn.executemany(
            "INSERT INTO temp.rv_rec (kind, canonical, tab, col, keycol, k, old, new, state, why,"
            " sel) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
            rows,
        )
        path = write_revert_records(conn, tmp_path / name)
    finally:
        conn.close()
    out = [r for r in read_records(path) if isinstance(r, RevertRecord)]
    assert len(out) == len(list(read_records(path)))
    return out


def first_line(path: Path) -> str:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return handle.readline()


def test_sqlite_and_python_encode_the_same_records(tmp_path: Path) -> None:
    by_sqlite = records(tmp_path, ROWS, "sqlite.jsonl.gz")
    real = (
        "rekey",
        "p05-interferometer",
        "t",
        "project",
        "rowid",
        0.30000000000000004,
        "p05",
        "x",
        "left",
        None,
    )
    by_python = records(tmp_path, [*ROWS, real], "python.jsonl.gz")
    assert by_python[:-1] == by_sqlite
    assert len(by_sqlite) == 5  # the 'before' record is not written
    assert by_python[-1].key == 0.30000000000000004  # the fallback keeps all 17 digits
    actions = ["reverted", "skipped", "skipped", "reverted", "reverted"]
    assert [r.action for r in by_sqlite] == actions
    assert by_sqlite[1].key == 42 and by_sqlite[3].new is None
    assert by_sqlite[4].why == "\x00\x1f control"


def test_the_sqlite_encoding_is_the_one_used_when_it_is_exact(tmp_path: Path) -> None:
    """The SQLite-encoded file has json_object's compact separators; Python's has spaces."""
    records(tmp_path, ROWS, "sqlite.jsonl.gz")
    first = first_line(tmp_path / "sqlite.jsonl.gz")
    assert first.startswith('{"record":"revert","action":"reverted","kind":"rekey"')
    blob = (
        "rekey",
        "p05-interferometer",
        "t",
        "project",
        "rowid",
        b"\x01",
        "p05",
        "x",
        "left",
        None,
    )
    records(tmp_path, [*ROWS, blob], "python.jsonl.gz")
    first = first_line(tmp_path / "python.jsonl.gz")
    assert first.startswith('{"record": "revert", "action": "reverted"')
