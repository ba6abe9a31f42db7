"""SIGINT and SIGTERM during apply and revert, sent to a real process.

Both signals are handled alike: the open transaction rolls back, temporary
files go, the attempt is recorded as ``interrupted-<kind>-*.json`` and the
process exits 130 (SIGINT) or 143 (SIGTERM) with one line on stderr. The
signal is sent once the child says (``-v``) it reached a phase inside the
transaction, so every trial interrupts real work, never start-up.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import DEFAULT_REGISTRY, content_digest, run_cli, write_registry
from test_kill_random import build_legacy

pytestmark = pytest.mark.slow

PHASES = ["backing up", "recording the archive", "migrating"]


def _interrupt(args: list[str], phase: str, signum: int) -> tuple[int, str]:
    """Run the CLI, send ``signum`` when stderr shows ``phase``; (exit code, stderr)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "atocore_identity", *args, "-v"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None
    seen: list[str] = []
    for line in child.stderr:
        seen.append(line)
        if phase in line:
            child.send_signal(signum)
            break
    rest = child.stderr.read()
    code = child.wait(timeout=120)
    return code, "".join(seen) + rest


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("signals")
    db = build_legacy(root / "legacy.db")
    reg = write_registry(root / "registry.json", DEFAULT_REGISTRY)
    res = run_cli(
        "resolve", "--db", db, "--registry", reg, "--report-dir", root / "r", "--keep",
        "canonical", "--out", root / "res.json",
    )  # fmt: skip
    assert res.code == 0, res.stderr
    return db, reg, root / "res.json"


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_apply_rolls_back_and_is_recorded(
    legacy: tuple[Path, Path, Path], tmp_path: Path, phase: str, signum: int, code: int
) -> None:
    src, reg, res = legacy
    db = tmp_path / "atocore.db"
    db.write_bytes(src.read_bytes())
    before = content_digest(db)
    reports = tmp_path / "reports"
    args = ["apply", "--db", str(db), "--registry", str(reg), "--report-dir", str(reports),
            "--resolutions", str(res), "--yes"]  # fmt: skip
    got, stderr = _interrupt(args, phase, signum)
    assert got == code, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "rolled back" in last, stderr
    assert "Traceback" not in stderr
    assert content_digest(db) == before
    assert not list(reports.glob(".tmp-*")), sorted(p.name for p in reports.iterdir())
    assert not list(reports.glob("apply-*.json"))
    (recorded,) = reports.glob("interrupted-apply-*.json")
    assert json.loads(recorded.read_text("utf-8"))["status"] == "interrupted"
    # and the next run finishes the job
    again = run_cli(*args)
    assert again.code == 0, again.stderr


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_revert_rolls_back(
    legacy: tuple[Path, Path, Path], tmp_path: Path, signum: int, code: int
) -> None:
    src, reg, res = legacy
    db = tmp_path / "atocore.db"
    db.write_bytes(src.read_bytes())
    reports = tmp_path / "reports"
    common = ["--db", str(db), "--registry", str(reg), "--report-dir", str(reports)]
    assert run_cli("apply", *common, "--resolutions", res, "--yes").code == 0
    applied = content_digest(db)
    (report,) = reports.glob("apply-*.json")
    got, stderr = _interrupt(
        ["revert", *common, "--report", str(report), "--yes"], "reverting", signum
    )
    assert got == code, stderr
    assert content_digest(db) == applied
    assert not list(reports.glob(".tmp-*"))
    assert list(reports.glob("interrupted-revert-*.json"))
    assert run_cli("revert", *common, "--report", report, "--yes").code == 0


AT_COMMIT = r"""
import os, signal, sys, threading
import atocore_identity.transaction as tx
from atocore_identity.cli import main
real_commit, signum, threads = tx.commit, int(sys.argv[1]), sys.argv[2] == "thread"
if threads:
    # like rich's progress-bar refresh on a terminal: a second thread that may
    # take a process-directed signal while the main thread blocks it
    threading.Thread(target=threading.Event().wait, daemon=True).start()

def commit(conn, db, busy_timeout):
    real_commit(conn, db, busy_timeout)
    os.kill(os.getpid(), signum)  # a real signal, arriving once COMMIT returned

tx.commit = commit
main(sys.argv[3:])
"""


@pytest.mark.parametrize("threads", ["alone", "thread"])
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_commit_says_the_write_is_committed(
    legacy: tuple[Path, Path, Path],
    tmp_path: Path,
    signum: int,
    code: int,
    threads: str,
    reliability: Any,
) -> None:
    """Held back across COMMIT and its report, a signal must not be told as a
    rollback afterwards: the apply is committed and its report says applied.
    Also with a second thread running, which may take the signal."""
    src, reg, res = legacy
    db = tmp_path / "atocore.db"
    db.write_bytes(src.read_bytes())
    reports = tmp_path / "reports"
    args = ["apply", "--db", str(db), "--registry", str(reg), "--report-dir", str(reports),
            "--resolutions", str(res), "--yes"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", AT_COMMIT, str(int(signum)), threads, *args],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == code, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "during COMMIT" in last and "committed" in last and "rolled back" not in last, last
    (report,) = reports.glob("apply-*.json")
    assert json.loads(report.read_text("utf-8"))["status"] == "applied"
    assert not list(reports.glob("interrupted-apply-*.json"))
    assert not list(reports.glob(".tmp-*"))
    assert run_cli(*args).code == 3  # nothing left to migrate: an empty plan refuses
    reliability(
        f"signal {signal.Signals(signum).name} right after COMMIT (held back; {threads})",
        f"exit {code}: {last}; apply report 'applied', no interrupted report",
    )
