"""apply killed with SIGKILL at many moments: the database is always either the
pre-apply database or the completely migrated one, never a mix (SPEC §5 apply:
one transaction)."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import DEFAULT_REGISTRY, build_db, content_digest, run_cli, write_registry

pytestmark = pytest.mark.slow

N_MEMORIES = 200_000
DUP_PAIRS = 2_000
ALIASES = ["p05", "interferometer", "P05-Interferometer", "p06", "polisher"]
CANONICAL = ["p05-interferometer", "p04-gigabit", "p06-polisher", "unregistered-x"]


def build_big(path: Path) -> Path:
    """~200k memories (20 % alias-keyed, DUP_PAIRS active twins), shadows with state."""
    build_db(
        path,
        projects=[
            ("pc05", "p05-interferometer"),
            ("ps05", "p05"),
            ("ps05b", "interferometer"),
            ("ps06", "p06"),
            ("ps06b", "polisher"),
            ("pc04", "p04-gigabit"),
        ],
    )
    conn = sqlite3.connect(path)
    state = []
    for k in range(1000):
        state.append((f"c-{k}", "pc05", "cfg", f"k{k}", f"v{k}", "active", "2025-01-01"))
    for k in range(500):  # equal active values: duplicates
        state.append((f"a-{k}", "ps05", "cfg", f"k{k}", f"v{k}", "active", "2025-02-01"))
    for k in range(1000, 1500):  # plain rekeys
        state.append((f"a-{k}", "ps05", "cfg", f"k{k}", f"v{k}", "active", "2025-02-01"))
    for k in range(500, 1000):  # inactive, different: history
        state.append((f"b-{k}", "ps05b", "cfg", f"k{k}", "old", "superseded", "2024-01-01"))
    for k in range(300):  # no canonical row: ps06 is renamed into it
        state.append((f"d-{k}", "ps06", "cfg", f"k{k}", f"w{k}", "active", "2025-01-01"))
        state.append((f"e-{k}", "ps06b", "cfg", f"k{k}", "older", "superseded", "2024-01-01"))
    for k in range(300, 600):
        state.append((f"e-{k}", "ps06b", "cfg", f"k{k}", f"w{k}", "active", "2025-01-01"))
    conn.executemany(
        "INSERT INTO project_state (id, project_id, category, key, value, status, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        state,
    )
    regular = N_MEMORIES - 2 * DUP_PAIRS

    def memories():  # type: ignore[no-untyped-def]
        for i in range(regular):
            project = ALIASES[(i // 5) % 5] if i % 5 == 0 else CANONICAL[i % 4]
            status = "candidate" if i % 7 == 0 else "active"
            yield (f"m{i:06d}", "fact", f"memory {i}", project, status, "2025-01-01")
        for j in range(DUP_PAIRS):
            yield (f"d{j:05d}a", "fact", f"twin {j}", "p05", "active", "2025-03-01")
            yield (f"d{j:05d}b", "fact", f"twin {j}", "p05-interferometer", "active", "2025-02-01")

    conn.executemany(
        "INSERT INTO memories (id, memory_type, content, project, status, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        memories(),
    )
    conn.executemany(
        "INSERT INTO interactions (id, prompt, project) VALUES (?, 'q', ?)",
        ((f"i{i:05d}", ALIASES[i % 5] if i % 5 == 0 else CANONICAL[i % 4]) for i in range(20_000)),
    )
    conn.commit()
    conn.close()
    return path


def journal(db: Path) -> Path:
    return Path(str(db) + "-journal")


def start_apply(db: Path, registry: Path, reports: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "atocore_identity",
            "apply",
            "--db",
            str(db),
            "--registry",
            str(registry),
            "--report-dir",
            str(reports),
            "--yes",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def recover(db: Path) -> str:
    """Open read-write (SQLite rolls a hot journal back), check, and digest."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()
    return content_digest(db)


def any_file(reports: Path, pattern: str) -> Callable[[], bool]:
    def found() -> bool:
        return reports.is_dir() and any(reports.glob(pattern))

    return found


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    root = tmp_path_factory.mktemp("crash")
    pristine = build_big(root / "pristine.db")
    registry = write_registry(root / "registry.json", DEFAULT_REGISTRY)
    before = content_digest(pristine)
    # one full run on a copy: its duration, and the digest of a completed apply
    full = root / "full.db"
    shutil.copyfile(pristine, full)
    started = time.monotonic()
    proc = start_apply(full, registry, root / "full-reports")
    _, err = proc.communicate(timeout=300)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, err.decode()
    after = recover(full)
    assert after != before
    full.unlink()
    shutil.rmtree(root / "full-reports")
    yield {
        "root": root,
        "pristine": pristine,
        "registry": registry,
        "before": before,
        "after": after,
        "elapsed": elapsed,
    }
    shutil.rmtree(root)  # a few hundred MB of copies and backups: do not keep them


def kill_when(
    big: dict[str, object],
    name: str,
    trigger: Callable[[Path, Path], Callable[[], bool]],
    keep: bool = False,
) -> tuple[str, bool]:
    """Run apply on a fresh copy, SIGKILL it when ``trigger`` fires.

    Returns which state the recovered database is in, and whether the kill landed
    (False when apply had already exited)."""
    root = big["root"]
    assert isinstance(root, Path)
    db = root / f"{name}.db"
    reports = root / f"{name}-reports"
    shutil.copyfile(big["pristine"], db)  # type: ignore[arg-type]
    proc = start_apply(db, big["registry"], reports)  # type: ignore[arg-type]
    fired = trigger(db, reports)
    while proc.poll() is None:
        if fired():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0005)
    proc.communicate(timeout=120)
    killed = proc.returncode == -signal.SIGKILL
    digest = recover(db)
    assert digest in (big["before"], big["after"]), f"{name}: a mix of before and after"
    shutil.rmtree(reports, ignore_errors=True)
    if not keep:
        db.unlink()
        journal(db).unlink(missing_ok=True)
    return ("before" if digest == big["before"] else "after"), killed


def after_seconds(seconds: float) -> Callable[[Path, Path], Callable[[], bool]]:
    def trigger(db: Path, reports: Path) -> Callable[[], bool]:
        deadline = time.monotonic() + seconds
        return lambda: time.monotonic() >= deadline

    return trigger


def test_sigkill_never_leaves_a_mix(big: dict[str, object]) -> None:
    elapsed = big["elapsed"]
    assert isinstance(elapsed, float)
    triggers: dict[str, Callable[[Path, Path], Callable[[], bool]]] = {
        "at-backup": lambda db, rep: any_file(rep, "backup-*.db"),
        "at-companion-temp": lambda db, rep: any_file(rep, ".tmp-*.jsonl.gz"),
        "at-companion": lambda db, rep: any_file(rep, "apply-*.rows.jsonl.gz"),
        "at-journal": lambda db, rep: journal(db).exists,
        "at-40pct": after_seconds(0.4 * elapsed),
        "at-75pct": after_seconds(0.75 * elapsed),
    }
    outcomes = {name: kill_when(big, name, t) for name, t in triggers.items()}
    print("outcomes:", outcomes, f"full run {elapsed:.2f}s")
    # the file triggers fire while apply runs: the scenario really was a kill mid-apply
    for name in ("at-backup", "at-companion-temp", "at-companion", "at-journal"):
        assert outcomes[name][1], f"{name}: apply finished before the kill"


def test_a_killed_apply_can_be_run_again_to_completion(big: dict[str, object]) -> None:
    """After a kill mid-write and SQLite's rollback, a new apply completes the job
    and verify passes."""
    outcome, killed = kill_when(big, "rerun", lambda db, rep: journal(db).exists, keep=True)
    assert killed
    root = big["root"]
    assert isinstance(root, Path)
    db = root / "rerun.db"
    reports = root / "rerun-reports-2"
    common = ["--db", db, "--registry", big["registry"], "--report-dir", reports]
    again = run_cli("apply", *common, "--yes", "--no-backup", "--allow-empty")
    assert again.code == 0, again.stderr
    assert content_digest(db) == big["after"]
    verified = run_cli("verify", *common)
    assert verified.code == 0, (outcome, verified.stdout)
    db.unlink()
    shutil.rmtree(reports)
