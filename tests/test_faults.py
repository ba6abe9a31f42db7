"""Fault injection: apply is killed, runs out of space, meets a broken report
dir, a broken backup, a damaged database, a WAL database with live
connections, or a lock held past --busy-timeout.

Each test asserts the same contract: afterwards the database is either
unchanged or completely migrated, never a mix, and the tool said so in one
clear line. Faults are real (SIGKILL, RLIMIT_FSIZE, damaged bytes, live
SQLite connections), never mocks of sqlite3. Each test also records what it
observed through the ``reliability`` fixture, which tools/gen_reliability.py
turns into docs/reliability.md.
"""

from __future__ import annotations

import ctypes
import gzip
import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Result, content_digest, file_digest, run_cli

Recorder = Callable[[str, str], None]  # the reliability fixture
PY = sys.executable
SEED = int(os.environ.get("FAULT_SEED", "20250101"))

# Runs the real CLI in a child process and kills it with SIGKILL at a chosen
# moment: the N-th progress tick of SQLite's VM (every 100 instructions, on
# every connection apply opens), the N-th file apply opens in the report dir
# (through a Python audit hook), or just before the COMMIT statement runs.
# With N = 0 it only counts, and writes the count to COUNT_FILE on exit.
KILLER = r"""
import os, signal, sqlite3, sys
mode, at, count_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
args = sys.argv[4:]
seen = 0
def hit():
    global seen
    seen += 1
    if seen == at:
        os.kill(os.getpid(), signal.SIGKILL)
connect = sqlite3.connect
def instrumented(*a, **k):
    conn = connect(*a, **k)
    if mode == "vm":
        conn.set_progress_handler(lambda: hit() or 0, 100)
    elif mode == "sql":
        conn.set_trace_callback(lambda s: s.strip().upper() == "COMMIT" and hit())
    return conn
sqlite3.connect = instrumented
if mode == "open":
    reports = args[args.index("--report-dir") + 1]
    def hook(event, a):
        if event == "open" and isinstance(a[0], (str, bytes, os.PathLike)):
            if os.fsdecode(a[0]).startswith(reports):
                hit()
    sys.addaudithook(hook)
from atocore_identity.cli import main
try:
    main(args)
finally:
    with open(count_file, "w") as handle:
        handle.write(str(seen))
"""


@dataclass
class Demo:
    """The demo database (pristine), its registry and resolutions, and the
    content digests of the database before and after a full migration."""

    root: Path
    db: Path
    registry: Path
    resolutions: Path
    before: str
    migrated: str

    def copy(self, name: str) -> tuple[Path, Path]:
        """A fresh copy of the database in its own directory, and a report dir."""
        where = self.root / name
        where.mkdir()
        db = where / "atocore.db"
        shutil.copyfile(self.db, db)
        return db, where / "reports"

    def args(self, db: Path, reports: Path, command: str = "apply") -> list[str]:
        out = [command, "--db", str(db), "--registry", str(self.registry)]
        out += ["--report-dir", str(reports), "--column", "conflicts.project"]
        if command == "apply":
            out += ["--resolutions", str(self.resolutions), "--yes"]
        return out


@pytest.fixture
def demo(tmp_path: Path) -> Demo:
    src = tmp_path / "demo"
    assert run_cli("demo", src).code == 0
    db, registry = src / "atocore.db", src / "registry.json"
    resolutions = tmp_path / "resolutions.json"
    resolved = run_cli(
        "resolve", "--db", db, "--registry", registry, "--report-dir", tmp_path / "resolve",
        "--keep", "canonical", "--out", resolutions,
    )  # fmt: skip
    assert resolved.code == 0, resolved.stderr
    d = Demo(tmp_path, db, registry, resolutions, content_digest(db), "")
    done, reports = d.copy("reference")
    assert run_cli(*d.args(done, reports)).code == 0
    d.migrated = content_digest(done)
    assert d.migrated != d.before
    return d


def recover(db: Path) -> None:
    """Open read-write and read once: SQLite rolls back a hot journal, as the
    next writer (AtoCore, or apply again) would."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()


def state_of(db: Path, demo: Demo) -> str:
    recover(db)
    digest = content_digest(db)
    if digest == demo.before:
        return "unchanged"
    if digest == demo.migrated:
        return "migrated"
    return "MIXED"


def one_line(stderr: str) -> bool:
    return stderr.startswith("Error: ") and stderr.count("\n") == 1 and "Traceback" not in stderr


def first_line(stderr: str) -> str:
    return stderr.strip().splitlines()[0] if stderr.strip() else "(nothing on stderr)"


def child(args: list[str], preexec: Callable[[], None] | None = None) -> Result:
    proc = subprocess.run(
        [PY, "-m", "atocore_identity", *args],
        capture_output=True,
        text=True,
        preexec_fn=preexec,
        timeout=120,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def journal_of(db: Path) -> Path:
    return db.with_name(db.name + "-journal")


# --------------------------------------------------------------------------
# SIGKILL
# --------------------------------------------------------------------------


def killed_apply(demo: Demo, name: str, mode: str, at: int) -> tuple[int, Path, Path, int]:
    db, reports = demo.copy(name)
    script = demo.root / "killer.py"
    if not script.exists():
        script.write_text(KILLER, "utf-8")
    count = demo.root / f"{name}.count"
    proc = subprocess.run(
        [PY, str(script), mode, str(at), str(count), *demo.args(db, reports)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    seen = int(count.read_text()) if count.exists() else -1
    return proc.returncode, db, reports, seen


def test_sigkill_at_random_moments_of_apply(demo: Demo, reliability: Recorder) -> None:
    code, _, _, ticks = killed_apply(demo, "count-vm", "vm", 0)
    assert code == 0 and ticks > 10
    code, _, _, opens = killed_apply(demo, "count-open", "open", 0)
    assert code == 0 and opens >= 3
    rng = random.Random(SEED)
    quarter = ticks // 4
    moments = [("vm", rng.randint(q * quarter + 1, (q + 1) * quarter)) for q in range(4)]
    moments += [("vm", ticks), ("sql", 1)]
    moments += [("open", n) for n in range(1, opens + 1)]

    for mode, at in moments:
        code, db, reports, _ = killed_apply(demo, f"kill-{mode}-{at}", mode, at)
        assert code == -signal.SIGKILL, (mode, at, code)
        hot = journal_of(db).exists()
        state = state_of(db, demo)
        assert state in ("unchanged", "migrated"), (mode, at, state)
        if state == "migrated":
            # committed but perhaps killed before the report: the archive of
            # every deleted row was written before the first write
            companions = list(reports.glob("apply-*.rows.jsonl.gz"))
            assert len(companions) == 1
            with gzip.open(companions[0], "rt", encoding="utf-8") as handle:
                recs = [json.loads(line) for line in handle]
            archived = {
                r["row"]["id"]
                for r in recs
                if r["record"] == "state" and r["outcome"] in ("duplicate", "history")
            }
            before = {r[0] for r in _ids(demo.db, "project_state")}
            after = {r[0] for r in _ids(db, "project_state")}
            assert archived == before - after
        # with the report missing, can verify still prove conservation? (observed)
        vb = None
        if state == "migrated" and not list(reports.glob("apply-*.json")):
            backup = next(reports.glob("backup-*.db"))
            vb = run_cli(*demo.args(db, reports, "verify"), "--backup", backup)
        # the operator's next step works: apply finishes (or finds nothing), verify passes
        again = run_cli(*demo.args(db, reports))
        assert again.code == (0 if state == "unchanged" else 3), again.stderr
        verified = run_cli(*demo.args(db, reports, "verify"))
        assert verified.code == 0, verified.stdout
        assert content_digest(db) == demo.migrated
        where = {"vm": "SQLite VM tick", "sql": "statement", "open": "report-dir file open"}[mode]
        what = "COMMIT" if mode == "sql" else f"#{at}"
        reliability(
            f"SIGKILL at {where} {what} of apply (of {ticks} ticks, {opens} opens)",
            f"killed; database {state}; hot journal left: {'yes' if hot else 'no'};"
            f" rerun apply exit {again.code}; verify exit {verified.code}"
            + (
                f"; apply report missing, verify --backup exit {vb.code}"
                f" ({_failed_checks(vb.stdout)})"
                if vb
                else ""
            ),
        )


def _failed_checks(stdout: str) -> str:
    failed = [line.strip() for line in stdout.splitlines() if "[FAIL]" in line.upper()]
    return "; ".join(failed) or "no failed check"


def _ids(db: Path, table: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(f'SELECT "id" FROM "{table}"').fetchall()
    finally:
        conn.close()


# --------------------------------------------------------------------------
# Out of space
# --------------------------------------------------------------------------


def file_size_limit(limit: int) -> Callable[[], None]:
    """RLIMIT_FSIZE in the child: a write past `limit` bytes of any file fails
    (a short write gives SQLite SQLITE_FULL; Python ignores SIGXFSZ)."""

    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return set_limit


def clear_about_space(stderr: str) -> bool:
    text = stderr.lower()
    return (
        one_line(stderr)
        and "unexpected" not in text
        and "cannot rollback" not in text
        and any(w in text for w in ("full", "disk", "space", "too large"))
    )


def test_file_size_limit_during_apply(demo: Demo, reliability: Recorder) -> None:
    """A sweep of file size limits (EFBIG, which SQLite reports as a disk I/O
    error): from one where the companion cannot be written, through ones where
    the rollback journal or the database file cannot grow, to one that is
    large enough."""
    size = demo.db.stat().st_size
    messages, problems = [], []
    for fraction in (0.007, 0.27, 0.54, 0.81, 3.0):
        limit = int(size * fraction)
        db, reports = demo.copy(f"limit-{limit}")
        res = child([*demo.args(db, reports), "--no-backup"], file_size_limit(limit))
        hot = journal_of(db).exists()
        readonly = run_cli(*demo.args(db, reports, "plan")) if hot else None
        state = state_of(db, demo)
        reliability(
            f"files limited to {limit} bytes (RLIMIT_FSIZE, db {size} bytes), apply --no-backup",
            f"exit {res.code}: {first_line(res.stderr)}; database {state}"
            + (
                f"; hot journal left, read-only plan exit {readonly.code}:"
                f" {first_line(readonly.stderr)}"
                if readonly
                else ""
            ),
        )
        if res.code == 0:
            if state != "migrated":
                problems.append((limit, "exit 0 but database", state))
            continue
        messages.append(res.stderr)
        if state != "unchanged":
            problems.append((limit, "failed and left the database", state))
        if not clear_about_space(res.stderr):
            problems.append((limit, "unclear error", res.stderr))
        # with the space back, apply completes and verify passes
        again = run_cli(*demo.args(db, reports))
        backup = next(reports.glob("backup-*.db"), None)
        verified = run_cli(*demo.args(db, reports, "verify"), "--backup", backup or "none")
        if again.code != 0 or verified.code != 0:
            problems.append((limit, "no recovery", again.stderr, verified.stdout))
    assert not problems, problems
    assert any("rolled back" in m for m in messages), messages  # the write phase was reached


TMPFS_SCRIPT = r"""
set -e
mount -t tmpfs -o size="$SIZE" tmpfs "$MNT"
cp "$SRC" "$MNT/atocore.db"
set +e
"$PY" -m atocore_identity "$@" --db "$MNT/atocore.db" 2> "$OUT/stderr"
echo $? > "$OUT/code"
cp "$MNT"/atocore.db* "$OUT/"
"""


def apply_on_tmpfs(demo: Demo, name: str, size: int) -> tuple[Result, Path] | None:
    """apply with the database on a tmpfs of `size` bytes, in a private mount
    namespace (``unshare``; as an unprivileged user too, where user namespaces
    are allowed). Returns None when no tmpfs can be mounted here."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    out, mnt = demo.root / name, demo.root / f"{name}-mnt"
    out.mkdir()
    mnt.mkdir()
    args = demo.args(out / "unused.db", out / "reports")
    args = args[:1] + args[3:]  # --db is added by the script, on the tmpfs
    env = dict(os.environ, SIZE=str(size), MNT=str(mnt), SRC=str(demo.db), OUT=str(out), PY=PY)
    userns = [] if os.geteuid() == 0 else ["-r"]
    proc = subprocess.run(
        [unshare, *userns, "-m", "sh", "-c", TMPFS_SCRIPT, "sh", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0 or not (out / "code").exists():
        return None
    code = int((out / "code").read_text())
    return Result(code, "", (out / "stderr").read_text()), out / "atocore.db"


def test_sqlite_full_during_apply(demo: Demo, reliability: Recorder) -> None:
    """A real full disk: the database on a tmpfs with a few free pages, so the
    rollback journal cannot be written (ENOSPC, SQLITE_FULL)."""
    size = demo.db.stat().st_size
    page = 4096
    seen = []
    for free_pages in (1, 4, 8, 64):
        ran = apply_on_tmpfs(demo, f"tmpfs-{free_pages}", size + free_pages * page)
        if ran is None:
            pytest.skip(
                "cannot mount a tmpfs here (needs root or unprivileged user namespaces);"
                " test_file_size_limit_during_apply covers EFBIG instead"
            )
        res, db = ran
        hot = journal_of(db).exists()
        state = state_of(db, demo)
        reliability(
            f"database on a full tmpfs: {free_pages} free page(s) beside a {size}-byte database",
            f"exit {res.code}: {first_line(res.stderr)}; database {state};"
            f" hot journal left: {'yes' if hot else 'no'}",
        )
        seen.append(res.stderr)
        if res.code == 0:
            assert state == "migrated"
            continue
        assert res.code == 3, res.stderr
        assert state == "unchanged", res.stderr
        assert clear_about_space(res.stderr), res.stderr
    assert any("database or disk is full" in m for m in seen), seen  # SQLITE_FULL, named
    assert seen[-1] == "", seen[-1]  # with room to spare, apply succeeds


# --------------------------------------------------------------------------
# Report dir and backup
# --------------------------------------------------------------------------


def without_dac_override() -> None:
    """Drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so a
    root child honours file modes like any operator account would."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.parametrize("how", ["read-only directory", "a regular file", "under a regular file"])
def test_unwritable_report_dir_refuses_before_any_write(
    demo: Demo,
    how: str,
    reliability: Recorder,
) -> None:
    db, _ = demo.copy("db")
    blocker = demo.root / "blocker"
    blocker.write_text("not a directory")
    reports = {
        "read-only directory": demo.root / "ro-reports",
        "a regular file": blocker,
        "under a regular file": blocker / "reports",
    }[how]
    preexec = None
    if how == "read-only directory":
        reports.mkdir(mode=0o500)
        reports.chmod(0o500)
        if os.geteuid() == 0:
            preexec = without_dac_override
    raw, mtime = file_digest(db), db.stat().st_mtime_ns
    res = child(demo.args(db, reports), preexec)
    reliability(f"report dir is {how}", f"exit {res.code}: {first_line(res.stderr)}")
    # a path that is a file is caught by option parsing (usage, exit 2); a
    # directory that cannot be written is a safety rail (exit 3)
    assert res.code == (2 if how == "a regular file" else 3), res.stderr
    assert one_line(res.stderr) and "report-dir" in res.stderr.replace(" ", "-"), res.stderr
    assert file_digest(db) == raw and db.stat().st_mtime_ns == mtime
    assert not journal_of(db).exists()
    if how == "read-only directory":
        assert list(reports.iterdir()) == []


def test_backup_that_cannot_be_written(demo: Demo, reliability: Recorder) -> None:
    """The backup path is unpredictable (microseconds), so the fault is a file
    size limit below the database size: the backup write fails for real."""
    db, reports = demo.copy("db")
    size = db.stat().st_size
    raw = file_digest(db)
    res = child(demo.args(db, reports), file_size_limit(size // 2))
    left = sorted(p.name for p in reports.glob("backup-*"))
    reliability(
        f"backup cannot be written (files limited to {size // 2} bytes, db {size} bytes)",
        f"exit {res.code}: {first_line(res.stderr)}; backup files left: "
        + (", ".join(f"{n} ({(reports / n).stat().st_size} bytes)" for n in left) or "none"),
    )
    assert res.code == 3, res.stderr
    assert one_line(res.stderr) and "backup" in res.stderr, res.stderr
    assert file_digest(db) == raw and not journal_of(db).exists()
    # nothing that passes for a backup may be left behind: a file named
    # backup-*.db must be a complete copy, or not exist
    for name in left:
        assert content_digest(reports / name) == demo.before, f"partial backup left: {name}"


# --------------------------------------------------------------------------
# Damaged database files
# --------------------------------------------------------------------------

COMMANDS = ("inspect", "plan", "apply", "verify")


def damaged_outcomes(demo: Demo, db: Path, commands: tuple[str, ...]) -> dict[str, Result]:
    """Run each command on the damaged file; note if any wrote to it."""
    raw = file_digest(db)
    out = {}
    for command in commands:
        res = run_cli(*demo.args(db, demo.root / "reports", command))
        if file_digest(db) != raw or journal_of(db).exists():
            res.stdout += f"\n[the file changed under {command}]"
            raw = file_digest(db)
        out[command] = res
    return out


def wrote(res: Result) -> bool:
    return "[the file changed under" in res.stdout


@pytest.mark.parametrize("keep", [0, 10, 16, 100, 4096, "half"])
def test_truncated_database(demo: Demo, keep: int | str, reliability: Recorder) -> None:
    db, _ = demo.copy("db")
    size = db.stat().st_size
    length = size // 2 if keep == "half" else int(keep)
    with db.open("r+b") as handle:
        handle.truncate(length)
    results = damaged_outcomes(demo, db, COMMANDS)
    reliability(
        f"database truncated to {length} of {size} bytes",
        "; ".join(f"{c} exit {r.code}" for c, r in results.items())
        + f": {first_line(results['apply'].stderr)}",
    )
    for command, res in results.items():
        assert not wrote(res), command  # never written, never "repaired"
        assert res.code == 2, (command, res.stderr)
        assert one_line(res.stderr), (command, res.stderr)
        assert any(w in res.stderr for w in ("corrupt", "not an SQLite", "not a database")), (
            command,
            res.stderr,
        )


# The b-tree pages of every table and index the migration owns.
OWNED_OBJECTS = [
    "sqlite_master",
    "projects",
    "sqlite_autoindex_projects_1",
    "sqlite_autoindex_projects_2",
    "project_state",
    "sqlite_autoindex_project_state_1",
    "sqlite_autoindex_project_state_2",
    "idx_project_state_project",
    "memories",
    "sqlite_autoindex_memories_1",
    "idx_memories_project",
    "idx_memories_status",
    "idx_memories_type",
    "interactions",
    "sqlite_autoindex_interactions_1",
    "idx_interactions_project",
]


@pytest.mark.parametrize("damaged", OWNED_OBJECTS)
def test_corrupted_database(demo: Demo, damaged: str, reliability: Recorder) -> None:
    """16 bytes of 0xFF over the b-tree page header of one table or index."""
    db, _ = demo.copy("db")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = 1
    if damaged != "sqlite_master":
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (damaged,))
        root = root.fetchone()[0]
    conn.close()
    with db.open("r+b") as handle:
        handle.seek((root - 1) * page_size + (100 if root == 1 else 0))
        handle.write(b"\xff" * 16)
    # every command must see a broken schema or projects table; apply must
    # refuse whatever page is damaged: it must never write into a corrupt file
    commands = COMMANDS if damaged in ("sqlite_master", "projects") else ("apply",)
    results = damaged_outcomes(demo, db, commands)
    reliability(
        f"corrupted b-tree page {root} ({damaged})",
        "; ".join(
            f"{c} exit {r.code}: {first_line(r.stderr)}"
            + ("; THE FILE WAS WRITTEN" if wrote(r) else "")
            for c, r in results.items()
        ),
    )
    for command, res in results.items():
        assert not wrote(res), command  # apply must not write into a corrupt file
        assert res.code == 2, (command, res.stdout, res.stderr)
        assert one_line(res.stderr) and "corrupt" in res.stderr, (command, res.stderr)


# --------------------------------------------------------------------------
# Live connections
# --------------------------------------------------------------------------


def test_wal_database_with_live_reader_and_writer(demo: Demo, reliability: Recorder) -> None:
    db, reports = demo.copy("wal")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    conn.close()
    reader = sqlite3.connect(db, isolation_level=None)
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        reader.execute("BEGIN")
        (seen,) = reader.execute("SELECT COUNT(*) FROM memories").fetchone()
        writer.execute(
            "INSERT INTO memories (id, memory_type, content, project, status)"
            " VALUES ('live-1', 'fact', 'written live', ' P05 ', 'active')"
        )  # autocommit: committed before apply starts; the writer stays open
        applied = run_cli(*demo.args(db, reports))
        assert applied.code == 0, applied.stderr
        # the reader's snapshot is undisturbed; the writer can go on writing
        assert reader.execute("SELECT COUNT(*) FROM memories").fetchone() == (seen,)
        reader.execute("COMMIT")
        writer.execute("UPDATE memories SET content = 'still writable' WHERE id = 'live-1'")
        (project,) = writer.execute("SELECT project FROM memories WHERE id = 'live-1'").fetchone()
        backup = next(reports.glob("backup-*.db"))
        live = run_cli(*demo.args(db, reports, "verify"), "--backup", backup)
    finally:
        reader.close()
        writer.close()
    after = run_cli(*demo.args(db, reports, "verify"), "--backup", backup)
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    reliability(
        "WAL database, an open read transaction and a writer that committed before apply",
        f"apply exit {applied.code}; the writer's row rekeyed to {project!r}; verify exit"
        f" {live.code} with the connections open, {after.code} after; journal_mode {mode}",
    )
    assert project == "p05-interferometer"  # apply saw the committed write
    assert live.code == 0, live.stdout
    assert after.code == 0, after.stdout
    assert mode == "wal"


@pytest.mark.parametrize(
    "journal,lock", [("delete", "IMMEDIATE"), ("delete", "EXCLUSIVE"), ("wal", "IMMEDIATE")]
)
def test_locked_past_busy_timeout(
    demo: Demo, journal: str, lock: str, reliability: Recorder
) -> None:
    db, reports = demo.copy("locked")
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA journal_mode = {journal}")
    conn.close()
    before = content_digest(db)
    holder = sqlite3.connect(db, isolation_level=None)
    try:
        holder.execute(f"BEGIN {lock}")
        holder.execute(
            "INSERT INTO memories (id, memory_type, content, project, status)"
            " VALUES ('held', 'fact', 'uncommitted', 'p05', 'active')"
        )
        res = run_cli(*demo.args(db, reports), "--busy-timeout", "0.2")
        holder.execute("ROLLBACK")
    finally:
        holder.close()
    reliability(
        f"{journal}-journal database, another connection holds BEGIN {lock} with a write,"
        " apply --busy-timeout 0.2",
        f"exit {res.code}: {first_line(res.stderr)}",
    )
    assert res.code == 3, res.stderr
    assert one_line(res.stderr) and "busy" in res.stderr, res.stderr
    assert content_digest(db) == before
    assert run_cli(*demo.args(db, reports)).code == 0  # once the lock is gone, apply works
