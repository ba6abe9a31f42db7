"""apply killed with SIGKILL at random moments, in both journal modes.

For the rollback journal (DELETE) and for WAL, the real CLI runs in a child
process on a fresh copy of a legacy database and is killed at a random moment.
Half of the moments are wall time: a uniform random moment of a measured clean
run, stratified so that the short backup phase and the short stretch after
COMMIT are hit too (wall_moments), and taken from the last point of the clean
run the child has reached (its -v progress lines, its first output) so that
the jitter of the start-up does not move it. The other half are counts of
SQLite VM instructions (database.py's test hook: the child SIGKILLs itself
after N thousand steps, N uniform over a clean apply's count). Every trial
must leave:

- a database whose ``PRAGMA integrity_check`` says ok once SQLite has
  recovered it (the next writer opens it read-write),
- whose content is exactly the pre-apply content or exactly a clean apply's,
- which a rerun of apply brings to the clean apply's content (exit 0), or
  finds nothing to migrate in (exit 3) when the kill came after COMMIT,
- and no file under a final ``backup-*.db`` name that is not a complete,
  integrity-checked copy of the pre-apply database.

Both kinds of kill, before and after COMMIT, must have happened in each mode.
``KILL_SEED`` reproduces a run's random choices; the seed is in every message.
"""

from __future__ import annotations

import os
import random
import selectors
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
    run_cli,
    write_registry,
)

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("KILL_SEED", str(random.SystemRandom().randrange(10**9))))
# Kills per journal mode by wall time (see wall_moments); as many again by VM steps.
WHOLE_RUN, BACKUP, AFTER_COMMIT = 6, 2, 2
CLEAN_RUNS = 3
N_MEMORIES = 40_000
N_INTERACTIONS = 10_000
DUP_PAIRS = 1_000


# ~52k rows, apply takes about 1 s: test_crash.build_big's shape at a fifth of
# its size, and one collision, decided by a resolutions file
BULK = Bulk(
    canonical=1000,
    duplicates=500,
    moves=500,
    history=500,
    renamed=300,  # p06-polisher has no canonical row: ps06 is renamed into it
    renamed_history=True,
    collision=True,
    memories=N_MEMORIES - 2 * DUP_PAIRS,
    twin_pairs=DUP_PAIRS,
    interactions=N_INTERACTIONS,
    alias_every=5,
)


def build_legacy(path: Path) -> Path:
    return bulk_legacy(path, BULK)


def set_journal_mode(path: Path, mode: str) -> None:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute(f"PRAGMA journal_mode = {mode}").fetchone()[0] == mode.lower()
    finally:
        conn.close()


@dataclass
class Case:
    """One journal mode: the pristine database and what a clean apply gives."""

    mode: str
    root: Path
    pristine: Path
    registry: Path
    resolutions: Path
    before: str = ""
    after: str = ""
    clean: Timeline | None = None  # a clean run of the CLI, as the trials run it
    tail: float = 0.0  # the shortest time from the first output to the exit
    kilosteps: int = 0  # VM steps of a clean apply, in thousands
    runs: int = 0

    def args(self, db: Path, reports: Path) -> list[str]:
        return [
            "apply", "--db", str(db), "--registry", str(self.registry),
            "--report-dir", str(reports), "--resolutions", str(self.resolutions), "--yes",
        ]  # fmt: skip

    def fresh(self, name: str) -> tuple[Path, Path]:
        self.runs += 1
        where = self.root / f"{name}-{self.runs}"
        where.mkdir()
        db = where / "atocore.db"
        shutil.copyfile(self.pristine, db)
        return db, where / "reports"


Event = tuple[str, str]  # ("err", a line of -v progress) or ("out", "") the first output


@dataclass
class Timeline:
    events: list[tuple[str, str, float]]  # stream, line, seconds since the start
    exit: float

    def anchor(self, moment: float) -> tuple[Event | None, float]:
        """The last event at or before ``moment`` and how long after it ``moment`` is."""
        best: tuple[Event | None, float] = (None, moment)
        for stream, line, at in self.events:
            if at <= moment:
                best = ((stream, line), moment - at)
        return best

    def segment(self, event: Event) -> tuple[float, float] | None:
        """From ``event`` to the next event (or the exit)."""
        for i, (stream, line, at) in enumerate(self.events):
            if (stream, line) == event:
                end = self.events[i + 1][2] if i + 1 < len(self.events) else self.exit
                return at, end
        return None


class Child:
    """The CLI in a child process, its stderr lines and first stdout byte timed
    as they arrive (blocking reads, no polling)."""

    def __init__(self, case: Case, db: Path, reports: Path, steps: int | None = None) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop(database.TEST_KILL_ENV, None)
        if steps is not None:
            env[database.TEST_KILL_ENV] = str(steps)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "atocore_identity", *case.args(db, reports), "-v"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.selector = selectors.DefaultSelector()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.selector.register(self.proc.stdout, selectors.EVENT_READ, "out")
        self.selector.register(self.proc.stderr, selectors.EVENT_READ, "err")
        self.events: list[tuple[str, str, float]] = []
        self.stderr = b""
        self._partial = b""

    def _pump(self) -> bool:
        """Block until there is output; False once the child closed both pipes."""
        if not self.selector.get_map():
            return False
        for key, _ in self.selector.select():
            chunk = os.read(key.fileobj.fileno(), 65536)  # type: ignore[union-attr]
            now = time.monotonic() - self.started
            if not chunk:
                self.selector.unregister(key.fileobj)
            elif key.data == "out":
                if not any(e[0] == "out" for e in self.events):
                    self.events.append(("out", "", now))
            else:
                self.stderr += chunk
                self._partial += chunk
                *lines, self._partial = self._partial.split(b"\n")
                self.events += [("err", line.decode(errors="replace"), now) for line in lines]
        return True

    def wait_for(self, event: Event) -> bool:
        """Read output until ``event`` arrives (True) or the child is gone (False)."""
        seen = 0
        while True:
            if any((s, line) == event for s, line, _ in self.events[seen:]):
                return True
            seen = len(self.events)
            if not self._pump():
                return False

    def finish(self) -> tuple[int, float]:
        while self._pump():
            pass
        code = self.proc.wait(timeout=120)
        self.selector.close()
        return code, time.monotonic() - self.started


def recover_and_check(db: Path) -> list[str]:
    """Open read-write as the next writer would (SQLite rolls back a hot
    journal or ignores uncommitted WAL frames) and run integrity_check."""
    conn = sqlite3.connect(db)
    try:
        found = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
        found += [f"foreign key: {r}" for r in conn.execute("PRAGMA foreign_key_check")]
        return found
    finally:
        conn.close()


def check_backups(reports: Path, before: str, scratch: Path) -> list[str]:
    """Every file under a final backup name must be, on its own, a complete
    copy of the pre-apply database: it is copied alone (the runbook's ``cp``
    restore; opening it in place would give it -wal and -shm files when it
    is a WAL database), then checked and compared."""
    problems: list[str] = []
    if not reports.is_dir():
        return problems
    for path in sorted(reports.glob("backup-*")):
        if not path.name.endswith(".db"):
            problems.append(f"{path.name}: a side file beside a backup")
    for path in sorted(reports.glob("backup-*.db")):
        copy = scratch / path.name
        shutil.copyfile(path, copy)
        try:
            found = recover_and_check(copy)
        except sqlite3.Error as exc:
            found = [f"cannot be read ({exc})"]
        if found != ["ok"]:
            problems.append(f"{path.name}: integrity_check {found}")
        elif content_digest(copy) != before:
            problems.append(f"{path.name}: content differs from the pre-apply database")
        for leftover in scratch.glob(path.name + "*"):
            leftover.unlink()
    return problems


@pytest.fixture(scope="module", params=["DELETE", "WAL"])
def case(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Case]:
    mode: str = request.param
    root = tmp_path_factory.mktemp(f"kill-{mode.lower()}")
    pristine = build_legacy(root / "pristine.db")
    set_journal_mode(pristine, mode)
    registry = write_registry(root / "registry.json", DEFAULT_REGISTRY)
    resolutions = root / "resolutions.json"
    resolved = run_cli(
        "resolve", "--db", pristine, "--registry", registry, "--report-dir", root / "resolve",
        "--keep", "canonical", "--out", resolutions,
    )  # fmt: skip
    assert resolved.code == 0, resolved.stderr
    c = Case(mode, root, pristine, registry, resolutions)
    c.before = content_digest(pristine)

    # Clean runs of the CLI, as the trials run it: the timeline of the first,
    # the shortest stretch from the first output to the exit, and the
    # migrated content.
    tails = []
    for _ in range(CLEAN_RUNS):
        db, reports = c.fresh("clean")
        child = Child(c, db, reports)
        code, seconds = child.finish()
        assert code == 0, child.stderr.decode()
        if c.clean is None:
            c.clean = Timeline(child.events, seconds)
        tails += [seconds - at for stream, _, at in child.events if stream == "out"]
        assert recover_and_check(db) == ["ok"]
        c.after = c.after or content_digest(db)
        assert content_digest(db) == c.after != c.before
        shutil.rmtree(db.parent)
    c.tail = min(tails, default=0.0)

    # The VM steps of a clean apply, counted in-process by the same hook.
    db, reports = c.fresh("count")
    seen = database.vm_kilosteps()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(database.TEST_KILL_ENV, "0")
        counted = run_cli(*c.args(db, reports))
    assert counted.code == 0, counted.stderr
    c.kilosteps = database.vm_kilosteps() - seen
    assert c.kilosteps > 20, c.kilosteps
    assert content_digest(db) == c.after
    shutil.rmtree(db.parent)
    yield c
    shutil.rmtree(root)


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    debris: Counter[str] = field(default_factory=Counter)  # .tmp-* files a kill left
    lines: list[str] = field(default_factory=list)


def trial(case: Case, how: str, at: float, tally: Tally) -> None:
    """One kill: ``how`` is "wall" (``at`` seconds into the clean run) or "vm"
    (after ``at`` thousand VM steps); then the oracle."""
    assert case.clean is not None
    db, reports = case.fresh(how)
    if how == "wall":
        what = f"{case.mode} wall {at:.3f}s"
        child = Child(case, db, reports)
        event, delay = case.clean.anchor(at)
        if event is None or child.wait_for(event):
            try:
                # from the same point of this run, as long as in the clean run
                child.proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                child.proc.send_signal(signal.SIGKILL)
    else:
        what = f"{case.mode} vm {int(at)} ksteps"
        child = Child(case, db, reports, steps=int(at))
    code, _ = child.finish()
    killed = code == -signal.SIGKILL
    if not killed and code != 0:
        tally.problems.append(f"{what}: exit {code}: {child.stderr.decode()[-500:]}")

    found = recover_and_check(db)
    if found != ["ok"]:
        tally.problems.append(f"{what}: integrity_check {found}")
        return
    digest = content_digest(db)
    state = "before" if digest == case.before else "after" if digest == case.after else "MIXED"
    kind = f"killed {state} COMMIT" if killed else f"finished ({state})"
    tally.outcomes[kind] += 1
    tally.lines.append(f"{what}: {kind}")
    if state == "MIXED":
        tally.problems.append(f"{what}: the database is neither the pre-apply nor the migrated one")
        return
    if reports.is_dir():
        tally.debris.update(
            "backup" if p.name.endswith(".db") else "report or archive"
            for p in reports.glob(".tmp-*")
        )
    scratch = db.parent / "scratch"
    scratch.mkdir()
    tally.problems += [f"{what}: {p}" for p in check_backups(reports, case.before, scratch)]

    # The operator's next step: apply again. It completes the migration, or
    # finds nothing to migrate (exit 3) when the first one committed.
    again = run_cli(*case.args(db, reports))
    want = 0 if state == "before" else 3
    if again.code != want:
        tally.problems.append(f"{what}: rerun exit {again.code}, expected {want}: {again.stderr}")
    if recover_and_check(db) != ["ok"] or content_digest(db) != case.after:
        tally.problems.append(f"{what}: after the rerun the database is not the migrated one")
    tally.problems += [
        f"{what} (after the rerun): {p}" for p in check_backups(reports, case.before, scratch)
    ]
    shutil.rmtree(db.parent)


def wall_moments(case: Case, rng: random.Random) -> list[float]:
    """Uniform random moments of the clean run, stratified so that every part
    of it is hit: WHOLE_RUN spread over the whole run, then BACKUP in the
    backup phase and AFTER_COMMIT in the first half of the stretch from the
    first output (printed after COMMIT) to the exit, the shortest one of the
    clean runs: the child is still there, and the kill lands after COMMIT.
    Each of those two is a few percent of the run and would otherwise be hit
    in one run out of several."""
    clean = case.clean
    assert clean is not None

    def spread(start: float, end: float, n: int) -> list[float]:
        return [start + (end - start) * (i + rng.random()) / n for i in range(n)]

    out = spread(0.0, clean.exit, WHOLE_RUN)
    backup = next((e for s, e, _ in clean.events if s == "err" and "backing up" in e), None)
    phase = clean.segment(("err", backup)) if backup is not None else None
    out += spread(*phase, BACKUP) if phase else spread(0.0, clean.exit, BACKUP)
    first_output = clean.segment(("out", ""))
    if first_output and case.tail > 0:
        out += spread(first_output[0], first_output[0] + case.tail / 2, AFTER_COMMIT)
    else:
        out += spread(0.0, clean.exit, AFTER_COMMIT)
    return out


def test_sigkill_at_random_moments_never_leaves_a_mix_or_a_bad_backup(
    case: Case, reliability: Any
) -> None:
    assert case.clean is not None
    rng = random.Random(f"{SEED}-{case.mode}")
    moments: list[tuple[str, float]] = [("wall", m) for m in wall_moments(case, rng)]
    moments += [("vm", rng.randint(1, case.kilosteps)) for _ in range(len(moments))]
    tally = Tally()
    started = time.monotonic()
    for how, at in moments:
        trial(case, how, at, tally)
    phases = ", ".join(
        f"{line.removeprefix('atocore-identity: ') or 'first output'} {at:.3f}s"
        for _, line, at in case.clean.events
    )
    summary = (
        f"KILL_SEED={SEED} mode={case.mode}: {len(moments)} trials in"
        f" {time.monotonic() - started:.1f}s; outcomes {dict(tally.outcomes)};"
        f" .tmp-* debris left by kills: {dict(tally.debris)}; clean run {case.clean.exit:.3f}s"
        f" ({phases}; shortest first output to exit {case.tail:.3f}s),"
        f" {case.kilosteps} thousand VM steps"
    )
    print(summary)
    print("\n".join(tally.lines))
    reliability(
        f"SIGKILL at {len(moments)} random moments ({case.mode} journal)",
        f"{dict(tally.outcomes)}; problems: {len(tally.problems)}",
    )
    assert not tally.problems, summary + "\n" + "\n".join(tally.problems)
    assert tally.outcomes["killed before COMMIT"] >= 1, summary
    assert tally.outcomes["killed after COMMIT"] >= 1, summary
