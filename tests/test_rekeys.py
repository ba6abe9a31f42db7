"""rekeys.rekeys_beside: the rows to rekey read, hashed and recorded in a
worker process beside the planning connection (decision 44).

Real SQLite files. What is checked is what the operator gets: the same
fingerprint and, line for line, the same companion as the rows read inline;
a worker that cannot run, or that read a file that changed since the survey,
leaves the plan to read them inline.
"""

from __future__ import annotations

import gc
import gzip
import os
import sqlite3
import warnings
import zlib
from pathlib import Path

import pytest

from atocore_identity import planner
from atocore_identity.companion import read_records, write_plan_records
from atocore_identity.database import open_database
from atocore_identity.errors import BadInput
from atocore_identity.plan_objects import Plan
from atocore_identity.planner import build_plan
from atocore_identity.registry import load_registry
from atocore_identity.survey import Survey
from atocore_identity.targets import resolve_targets
from conftest import DEFAULT_REGISTRY, Bulk, bulk_legacy, rows, run_cli, write_registry

BULK = Bulk(
    canonical=30,
    duplicates=10,
    moves=10,
    history=5,
    renamed=5,
    renamed_history=True,
    collision=False,
    memories=12_000,  # more than one CHUNK of rekeyed ids per name: several records
    twin_pairs=40,
    interactions=6_000,
    alias_every=2,
)


def legacy(tmp_path: Path) -> tuple[Path, Path]:
    """The bulk legacy database plus an extra project column keyed by rowid
    (its records carry full rows), and the default registry."""
    db = bulk_legacy(tmp_path / "atocore.db", BULK)
    conn = sqlite3.connect(db)
    try:
        conn.executescript(
            "CREATE TABLE notes (body TEXT, project TEXT);"
            " INSERT INTO notes VALUES ('a', 'p05'), ('b', 'polisher'), ('c', 'p04-gigabit'),"
            " ('d', 'P05-Interferometer');"
        )
    finally:
        conn.close()
    return db, write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY)


def planned(db: Path, registry: Path, beside: bool, out: Path) -> tuple[Plan, list[str]]:
    """build_plan (beside or inline) and the companion it writes, as lines."""
    conn = open_database(db, readonly=True)
    try:
        targets, missing = resolve_targets(conn, ["notes.project"])
        plan = build_plan(
            conn, load_registry(registry), targets, missing, beside=out.parent if beside else None
        )
        beside_ran = plan.rekey_records is not None
        write_plan_records(conn, plan, out)
    finally:
        conn.close()
    with gzip.open(out, "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    assert beside_ran == beside
    return plan, lines


def test_beside_gives_the_fingerprint_and_companion_inline_gives(tmp_path: Path) -> None:
    db, registry = legacy(tmp_path)
    inline, inline_lines = planned(db, registry, False, tmp_path / "inline.jsonl.gz")
    beside, beside_lines = planned(db, registry, True, tmp_path / "beside.jsonl.gz")

    assert beside.fingerprint == inline.fingerprint
    assert beside.counts == inline.counts
    assert beside_lines == inline_lines
    kinds = [type(r).__name__ for r in read_records(tmp_path / "beside.jsonl.gz")]
    assert kinds.count("RekeyRecord") > 3  # memories in chunks, interactions, notes
    ids = [
        i
        for r in read_records(tmp_path / "beside.jsonl.gz")
        if type(r).__name__ == "RekeyRecord" and r.table == "interactions"  # type: ignore[union-attr]
        for i in r.ids  # type: ignore[union-attr]
    ]
    assert len(ids) == beside.counts["interactions_rekeyed"] == 3_002
    notes = [
        r for r in read_records(tmp_path / "beside.jsonl.gz") if getattr(r, "table", "") == "notes"
    ]
    # a table keyed by rowid: the full rows come along, with their old spellings
    assert sorted((row["body"], row["project"]) for r in notes for row in r.rows) == [  # type: ignore[union-attr]
        ("a", "p05"),
        ("b", "polisher"),
        ("d", "P05-Interferometer"),
    ]


@pytest.mark.parametrize("executable", ["", "/nonexistent/python", "/bin/false"])
def test_a_worker_that_cannot_run_leaves_the_rows_to_the_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executable: str
) -> None:
    db, registry = legacy(tmp_path)
    inline, inline_lines = planned(db, registry, False, tmp_path / "inline.jsonl.gz")
    monkeypatch.setattr("sys.executable", executable)
    conn = open_database(db, readonly=True)
    try:
        targets, missing = resolve_targets(conn, ["notes.project"])
        plan = build_plan(conn, load_registry(registry), targets, missing, beside=tmp_path)
        assert plan.rekey_records is None  # read inline
        write_plan_records(conn, plan, tmp_path / "fallback.jsonl.gz")
    finally:
        conn.close()
    assert plan.fingerprint == inline.fingerprint
    with gzip.open(tmp_path / "fallback.jsonl.gz", "rt", encoding="utf-8") as handle:
        assert handle.read().splitlines() == inline_lines


def test_rows_written_between_the_survey_and_the_worker_are_read_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer commits an alias-keyed interaction after the survey counted
    them: the worker counts one more, so its records are dropped and the plan
    reads the rows itself, the companion holding every row its TEMP table holds."""

    db, registry = legacy(tmp_path)
    real = planner.survey

    def survey_then_a_write(*args, **kwargs) -> Survey:  # type: ignore[no-untyped-def]
        found = real(*args, **kwargs)
        writer = sqlite3.connect(db)
        try:
            writer.execute(
                "INSERT INTO interactions (id, prompt, project) VALUES ('late', 'q', 'p05')"
            )
            writer.commit()
        finally:
            writer.close()
        return found

    monkeypatch.setattr(planner, "survey", survey_then_a_write)
    conn = open_database(db, readonly=True)
    try:
        targets, missing = resolve_targets(conn, [])
        plan = build_plan(conn, load_registry(registry), targets, missing, beside=tmp_path)
        assert plan.rekey_records is None
        write_plan_records(conn, plan, tmp_path / "raced.jsonl.gz")
    finally:
        conn.close()
    ids = {
        i
        for r in read_records(tmp_path / "raced.jsonl.gz")
        if getattr(r, "table", "") == "interactions"
        for i in r.ids  # type: ignore[union-attr]
    }
    assert "late" in ids and len(ids) == 3_003


def test_plan_and_apply_record_every_rekeyed_row_and_revert_reads_them(tmp_path: Path) -> None:
    """End to end through the CLI: apply's archive (gzip members from the
    worker between the plan's own) lets verify pass and revert restore."""

    db, registry = legacy(tmp_path)
    reports = tmp_path / "reports"
    common = ["--db", db, "--registry", registry, "--report-dir", reports]
    common += ["--column", "notes.project"]
    alias_keyed = "SELECT COUNT(*) FROM interactions WHERE project = 'p05'"
    before = rows(db, alias_keyed)
    assert before[0][0] > 0
    assert run_cli("plan", *common, "--no-discover").code == 0
    applied = run_cli("apply", *common, "--yes", "--no-backup")
    assert applied.code == 0, applied.stderr
    [report] = reports.glob("apply-*Z.json")
    # the worker's records went into the archive; nothing else of them is left
    assert sorted(p.name.split("-")[0] for p in reports.iterdir()) == [
        "apply",
        "apply",
        "plan",
        "plan",
    ]
    assert run_cli("verify", *common, "--report", report).code == 0
    assert rows(db, alias_keyed) == [(0,)]
    reverted = run_cli("revert", *common, "--report", report, "--yes", "--no-backup")
    assert reverted.code == 0, reverted.stderr
    assert rows(db, alias_keyed) == before
    assert rows(db, "SELECT project FROM notes WHERE body = 'a'") == [("p05",)]


def test_a_companion_cut_anywhere_never_reads_as_complete(tmp_path: Path) -> None:
    """The worker's records are compressed into the companion's one gzip
    member: cut at any byte, reading it fails (a file of several members
    would read as whole when cut between two)."""

    db, registry = legacy(tmp_path)
    path = tmp_path / "beside.jsonl.gz"
    _, lines = planned(db, registry, True, path)
    data = path.read_bytes()
    member = zlib.decompressobj(31)  # one gzip member, and nothing after it
    assert member.decompress(data).count(b"\n") == len(lines) > 50
    assert member.eof and member.unused_data == b""
    cuts = sorted(
        {*range(10, len(data), max(1, len(data) // 97)), *range(len(data) - 12, len(data))}
    )
    for cut in cuts:
        path.write_bytes(data[:cut])
        with pytest.raises(BadInput):
            list(read_records(path))


def test_a_plan_nobody_writes_a_companion_for_leaves_no_file_open(tmp_path: Path) -> None:
    """A refused apply takes no archive: the worker's records are closed with
    the plan (Plan.close), not left to the garbage collector."""

    db, registry = legacy(tmp_path)
    conn = open_database(db, readonly=True)
    try:
        targets, missing = resolve_targets(conn, [])
        plan = build_plan(conn, load_registry(registry), targets, missing, beside=tmp_path)
        assert plan.rekey_records is not None
        records = plan.rekey_records.file
        assert not records.closed
        # unlinked from the start: no name in the report dir, even while open
        assert os.fstat(records.fileno()).st_nlink == 0
        plan.close()
        assert records.closed
    finally:
        conn.close()


def test_an_apply_refused_after_planning_closes_the_workers_records(tmp_path: Path) -> None:
    db, registry = legacy(tmp_path)
    conn = sqlite3.connect(db)
    try:  # an unresolved collision: apply refuses after planning
        conn.executescript(
            "INSERT INTO project_state VALUES ('x1', 'pc05', 'cfg', 'z', 'one', 'src', 1.0,"
            " 'active', '2025-01-01', '2025-01-01');"
            "INSERT INTO project_state VALUES ('x2', 'ps05', 'cfg', 'z', 'two', 'src', 1.0,"
            " 'active', '2025-01-01', '2025-01-01');"
        )
        conn.commit()
    finally:
        conn.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = run_cli("apply", "--db", db, "--registry", registry, "--report-dir",
                       tmp_path / "reports", "--yes", "--no-backup")  # fmt: skip
        gc.collect()
    assert done.code == 3, done.stderr
    assert "unresolved collision" in done.stderr
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_no_room_for_the_workers_records_means_reading_inline(tmp_path: Path) -> None:
    """The temporary file cannot be made (here: no such directory): no worker,
    the plan reads the rows itself and fingerprints them the same."""

    db, registry = legacy(tmp_path)
    inline, _ = planned(db, registry, False, tmp_path / "inline.jsonl.gz")
    conn = open_database(db, readonly=True)
    try:
        targets, missing = resolve_targets(conn, ["notes.project"])
        plan = build_plan(
            conn, load_registry(registry), targets, missing, beside=tmp_path / "missing"
        )
    finally:
        conn.close()
    assert plan.rekey_records is None
    assert plan.fingerprint == inline.fingerprint
