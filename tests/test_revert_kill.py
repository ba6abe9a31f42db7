"""revert killed with SIGKILL at random moments, in both journal modes.

For the rollback journal (DELETE) and for WAL, a database of ~35k rows is
migrated once; every trial puts that migrated database and its report dir
back at the same path (the apply report names the database), runs the real
CLI's ``revert --yes`` in a child process and SIGKILLs it. Half of the
moments are wall time: uniform random fractions of a measured clean revert,
stratified over the whole run and taken from the last line of output the
clean run had printed by then (its -v progress lines, then its result, which
comes after COMMIT), so that the jitter of the start-up does not move them.
The other half are SQLite VM steps (database.py's test hook: the child
SIGKILLs itself after N thousand steps, N uniform over a clean revert's
count). Every trial must leave:

- a database whose ``PRAGMA integrity_check`` says ok once SQLite has
  recovered it (the next writer opens it read-write), with no foreign key
  violation;
- whose content is exactly the migrated one (killed before COMMIT) or
  exactly the reverted one, which is the apply's backup (after COMMIT), never
  a mix;
- which a rerun of ``revert --yes`` brings to the reverted content (exit 0:
  it reverts, or finds nothing to do);
- and no file under a final ``backup-*.db`` name that is not a complete copy:
  the apply's backup as it was, revert's own backups equal to the migrated
  content.

``KILL_SEED`` reproduces a run's random choices; the seed is in every message.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from atocore_identity import database
from conftest import (
    DEFAULT_REGISTRY,
    Bulk,
    bulk_legacy,
    content_digest,
    file_digest,
    run_cli,
    write_registry,
)

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("KILL_SEED", str(random.SystemRandom().randrange(10**9))))
WALL, VM = 6, 6  # kills per journal mode of each kind
N_MEMORIES = 24_000
N_INTERACTIONS = 8_000


# ~1.8k state rows moved, archived and kept, 25k memories (a third
# alias-keyed, 500 duplicate pairs), 8k interactions
BULK = Bulk(
    canonical=600,
    duplicates=300,
    moves=600,
    history=300,
    renamed=200,  # ps06 is renamed into p06-polisher: these stay
    renamed_history=False,
    collision=False,
    memories=N_MEMORIES,
    twin_pairs=500,
    interactions=N_INTERACTIONS,
    alias_every=3,
)


def build(path: Path) -> Path:
    return bulk_legacy(path, BULK)


def recover_and_check(db: Path) -> list[str]:
    """Open read-write as the next writer would (SQLite rolls back a hot
    journal or ignores uncommitted WAL frames) and check the file."""
    conn = sqlite3.connect(db)
    try:
        found = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
        found += [f"foreign key: {r}" for r in conn.execute("PRAGMA foreign_key_check")]
        return found
    finally:
        conn.close()


@dataclass
class Timeline:
    lines: list[float]  # when each line of output arrived, seconds since the start
    exit: float

    def anchor(self, moment: float) -> tuple[int, float]:
        """How many lines the clean run had printed at ``moment``, and how
        long after the last of them ``moment`` is."""
        seen = sum(1 for at in self.lines if at <= moment)
        return seen, moment - (self.lines[seen - 1] if seen else 0.0)


class Child:
    """``revert -v`` in a child process; stdout and stderr in one pipe, each
    line timed as it arrives (blocking reads, no polling)."""

    def __init__(self, args: list[str], steps: int | None = None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop(database.TEST_KILL_ENV, None)
        if steps is not None:
            env[database.TEST_KILL_ENV] = str(steps)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "atocore_identity", *args, "-v"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.lines: list[tuple[bytes, float]] = []

    def read_lines(self, n: int | None = None) -> bool:
        """Read until ``n`` lines arrived (True) or the output ended (False)."""
        assert self.proc.stdout is not None
        while n is None or len(self.lines) < n:
            line = self.proc.stdout.readline()
            if not line:
                return False
            self.lines.append((line, time.monotonic() - self.started))
        return True

    def finish(self) -> tuple[int, float]:
        self.read_lines()
        code = self.proc.wait(timeout=120)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code, time.monotonic() - self.started

    def output(self) -> str:
        return b"".join(line for line, _ in self.lines).decode(errors="replace")


@dataclass
class Case:
    """One journal mode: the migrated database and its report dir, kept aside
    and put back at the same path for every trial."""

    mode: str
    root: Path
    registry: Path
    report_name: str = ""
    apply_backup_name: str = ""
    apply_backup_sha: str = ""
    migrated: str = ""  # content digests
    reverted: str = ""
    clean: Timeline | None = None
    first_result_line: int = 0  # index of the first line printed after COMMIT
    kilosteps: int = 0

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def db(self) -> Path:
        return self.run_dir / "atocore.db"

    @property
    def reports(self) -> Path:
        return self.run_dir / "reports"

    def args(self) -> list[str]:
        return [
            "revert", "--db", str(self.db), "--registry", str(self.registry),
            "--report-dir", str(self.reports), "--report", str(self.reports / self.report_name),
            "--yes",
        ]  # fmt: skip

    def reset(self) -> None:
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir()
        shutil.copyfile(self.root / "migrated.db", self.db)
        shutil.copytree(self.root / "migrated-reports", self.reports)


def checkpointed(db: Path) -> None:
    """Fold a WAL back into the file so that the file alone is the database."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    for suffix in ("-wal", "-shm", "-journal"):
        assert not Path(f"{db}{suffix}").exists(), suffix


@pytest.fixture(scope="module", params=["DELETE", "WAL"])
def case(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Case]:
    mode: str = request.param
    root = tmp_path_factory.mktemp(f"revert-kill-{mode.lower()}")
    c = Case(mode, root, write_registry(root / "registry.json", DEFAULT_REGISTRY))
    c.run_dir.mkdir()
    build(c.db)
    conn = sqlite3.connect(c.db)
    try:
        assert conn.execute(f"PRAGMA journal_mode = {mode}").fetchone()[0] == mode.lower()
    finally:
        conn.close()
    applied = run_cli(
        "apply", "--db", c.db, "--registry", c.registry, "--report-dir", c.reports, "--yes"
    )
    assert applied.code == 0, applied.stderr
    checkpointed(c.db)
    [report] = sorted(c.reports.glob("apply-*.json"))
    [backup] = sorted(c.reports.glob("backup-*.db"))
    c.report_name, c.apply_backup_name = report.name, backup.name
    c.apply_backup_sha = file_digest(backup)
    # a backup of a WAL database is a WAL file too: read a copy, never the
    # backup in place (SQLite would give it -wal and -shm side files)
    shutil.copyfile(backup, root / "reverted.db")
    c.migrated, c.reverted = content_digest(c.db), content_digest(root / "reverted.db")
    assert c.migrated != c.reverted
    shutil.copyfile(c.db, root / "migrated.db")
    shutil.copytree(c.reports, root / "migrated-reports")

    # Two clean runs as the trials run them: the timeline of the faster.
    for _ in range(2):
        c.reset()
        child = Child(c.args())
        code, seconds = child.finish()
        assert code == 0, child.output()
        assert recover_and_check(c.db) == ["ok"] and content_digest(c.db) == c.reverted
        if c.clean is None or seconds < c.clean.exit:
            c.clean = Timeline([at for _, at in child.lines], seconds)
            progress = [i for i, (line, _) in enumerate(child.lines) if line.startswith(b"atoc")]
            c.first_result_line = progress[-1] + 1
    assert c.clean is not None and c.first_result_line < len(c.clean.lines)

    # The VM steps of a clean revert, counted in-process by the same hook.
    c.reset()
    seen = database.vm_kilosteps()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(database.TEST_KILL_ENV, "0")
        counted = run_cli(*c.args())
    assert counted.code == 0, counted.stderr
    c.kilosteps = database.vm_kilosteps() - seen
    assert c.kilosteps > 20, c.kilosteps
    assert content_digest(c.db) == c.reverted
    yield c
    shutil.rmtree(root)


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def check_backups(case: Case) -> list[str]:
    """The apply's backup unchanged; every other file under a final backup
    name (revert's own) a complete copy of the migrated database, checked on
    its own (copied alone, as the runbook's restore would)."""
    problems = []
    if not case.reports.is_dir():
        return problems
    scratch = case.root / "scratch"
    for path in sorted(case.reports.glob("backup-*")):
        if not path.name.endswith(".db"):
            problems.append(f"{path.name}: a side file beside a backup")
        elif path.name == case.apply_backup_name:
            if file_digest(path) != case.apply_backup_sha:
                problems.append(f"{path.name}: the apply's backup changed")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir()
            copy = scratch / path.name
            shutil.copyfile(path, copy)
            try:
                found = recover_and_check(copy)
            except sqlite3.Error as exc:
                found = [f"cannot be read ({exc})"]
            if found != ["ok"]:
                problems.append(f"{path.name}: integrity_check {found}")
            elif content_digest(copy) != case.migrated:
                problems.append(f"{path.name}: not the database as revert found it")
    return problems


def trial(case: Case, how: str, at: float, tally: Tally) -> None:
    """One kill: ``how`` is "wall" (``at`` seconds into the clean run) or "vm"
    (after ``at`` thousand VM steps); then the oracle."""
    assert case.clean is not None
    case.reset()
    if how == "wall":
        lines, delay = case.clean.anchor(at)
        what = f"{case.mode} wall {at:.3f}s (line {lines} + {delay:.3f}s)"
        child = Child(case.args())
        if child.read_lines(lines):
            try:
                child.proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                child.proc.send_signal(signal.SIGKILL)
    else:
        what = f"{case.mode} vm {int(at)} ksteps"
        child = Child(case.args(), steps=int(at))
    code, _ = child.finish()
    killed = code == -signal.SIGKILL
    if not killed and code != 0:
        tally.problems.append(f"{what}: exit {code}: {child.output()[-500:]}")

    found = recover_and_check(case.db)
    if found != ["ok"]:
        tally.problems.append(f"{what}: integrity_check {found}")
        return
    digest = content_digest(case.db)
    state = {case.migrated: "before", case.reverted: "after"}.get(digest, "MIXED")
    kind = f"killed {state} COMMIT" if killed else f"finished ({state} COMMIT)"
    tally.outcomes[f"{how}: {kind}"] += 1
    tally.lines.append(f"{what}: {kind}")
    if state == "MIXED" or (not killed and state != "after"):
        tally.problems.append(f"{what}: the database is neither the migrated nor the reverted one")
        return
    tally.problems += [f"{what}: {p}" for p in check_backups(case)]

    # The operator's next step: revert again. It finishes the revert, or
    # finds nothing to do when the first one committed.
    again = run_cli(*case.args())
    if again.code != 0:
        tally.problems.append(f"{what}: rerun exit {again.code}: {again.stderr}")
    elif state == "after" and "nothing to revert" not in again.stdout:
        tally.problems.append(f"{what}: the rerun reverted again after a committed revert")
    if recover_and_check(case.db) != ["ok"] or content_digest(case.db) != case.reverted:
        tally.problems.append(f"{what}: after the rerun the database is not the reverted one")
    tally.problems += [f"{what} (after the rerun): {p}" for p in check_backups(case)]


def wall_moments(case: Case, rng: random.Random) -> list[float]:
    """WALL - 2 moments spread over the whole clean run, stratified; one from
    the last progress line (postconditions, then COMMIT) to the first line
    printed after COMMIT; one in the first half of the stretch from that line
    to the exit, where a kill lands after COMMIT. Each of those two stretches
    is a few percent of the run and would otherwise be hit now and then."""
    clean = case.clean
    assert clean is not None
    n = WALL - 2
    out = [clean.exit * (i + rng.random()) / n for i in range(n)]
    last_progress, first_result = clean.lines[
        case.first_result_line - 1 : case.first_result_line + 1
    ]
    out.append(last_progress + (first_result - last_progress) * rng.random())
    out.append(first_result + (clean.exit - first_result) / 2 * rng.random())
    return out


def test_sigkill_during_revert_never_leaves_a_mix(case: Case, reliability: Any) -> None:
    assert case.clean is not None
    rng = random.Random(f"{SEED}-{case.mode}")
    moments: list[tuple[str, float]] = [("wall", m) for m in wall_moments(case, rng)]
    moments += [
        ("vm", rng.randint(1 + i * case.kilosteps // VM, (i + 1) * case.kilosteps // VM))
        for i in range(VM)
    ]
    tally = Tally()
    started = time.monotonic()
    for how, at in moments:
        trial(case, how, at, tally)
    summary = (
        f"KILL_SEED={SEED} mode={case.mode}: {len(moments)} trials in"
        f" {time.monotonic() - started:.1f}s; outcomes {dict(tally.outcomes)};"
        f" clean revert {case.clean.exit:.3f}s, first line after COMMIT at"
        f" {case.clean.lines[case.first_result_line]:.3f}s; {case.kilosteps} thousand VM steps"
    )
    print(summary)
    print("\n".join(tally.lines))
    reliability(
        f"SIGKILL at {len(moments)} random moments ({case.mode} journal)",
        f"{dict(tally.outcomes)}; problems: {len(tally.problems)}",
    )
    assert not tally.problems, summary + "\n" + "\n".join(tally.problems)
    before = sum(n for k, n in tally.outcomes.items() if k.endswith("killed before COMMIT"))
    assert before >= 1, summary
