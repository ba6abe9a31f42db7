"""The CLI under a real pseudo-terminal: prompts, confirmation and NO_COLOR.

Each test runs ``python -m atocore_identity`` in a subprocess whose stdin,
stdout and stderr (or stdin and stderr only) are the slave side of a pty, and
talks to it through the master side: it waits for a prompt, then types the
answer. The overall deadline is a guard against a hung child, not a timing
assertion.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import content_digest, rows, run_cli

DEADLINE_SECONDS = 60.0
RESOLVE_PROMPT = "Keep which row?"
APPLY_PROMPT = "Apply this migration now?"
# An SGR sequence: ESC [ params m. Colour parameters are 30-38 / 40-48 (basic,
# 256-colour, truecolour) and 90-97 / 100-107 (bright); 39 / 49 reset them.
SGR = re.compile(rb"\x1b\[([0-9;]*)m")


@dataclass
class PtyResult:
    code: int
    output: str  # everything the child wrote to the pty
    stdout: str  # only when stdout was a pipe


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATOCORE_")}
    for name in ("NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE", "COLUMNS", "LINES"):
        env.pop(name, None)
    env.update({"TERM": "dumb", "COLUMNS": "200", "LINES": "50", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run_on_pty(
    args: Sequence[str | Path],
    answers: Sequence[tuple[str, str]] = (),
    env: dict[str, str] | None = None,
    stdout_on_pty: bool = True,
) -> PtyResult:
    """Run the CLI with a terminal; answer each (prompt text, reply) in order."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "atocore_identity", *map(str, args)],
        stdin=slave,
        stdout=slave if stdout_on_pty else subprocess.PIPE,
        stderr=slave,
        env=env if env is not None else child_env(),
        start_new_session=True,
        close_fds=True,
    )
    os.close(slave)
    pending = list(answers)
    seen = b""
    searched = 0
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"the CLI did not finish; pty output so far: {seen!r}")
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every slave fd is closed, the child is gone
                chunk = b""
            if not chunk:
                break
            seen += chunk
            while pending:
                at = seen.find(pending[0][0].encode(), searched)
                if at < 0:
                    break
                searched = at + len(pending[0][0])
                os.write(master, pending.pop(0)[1].encode())
        out = proc.stdout.read().decode() if proc.stdout is not None else ""
        code = proc.wait(timeout=DEADLINE_SECONDS)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert not pending, f"prompt(s) never shown: {[p for p, _ in pending]}; output: {seen!r}"
    return PtyResult(code, seen.decode("utf-8", "replace"), out)


def colour_codes(raw: bytes) -> list[bytes]:
    found = []
    for match in SGR.finditer(raw):
        params = [p for p in match.group(1).split(b";") if p]
        for p in params:
            n = int(p)
            if 30 <= n <= 49 or 90 <= n <= 107:
                found.append(match.group(0))
                break
    return found


@pytest.fixture
def demo(tmp_path: Path) -> tuple[list[str], Path]:
    directory = tmp_path / "demo"
    made = run_cli("demo", directory)
    assert made.code == 0, made.stderr
    db = directory / "atocore.db"
    common = [
        "--db",
        str(db),
        "--registry",
        str(directory / "registry.json"),
        "--report-dir",
        str(tmp_path / "reports"),
    ]
    return common, db


# -- resolve ---------------------------------------------------------------------


def test_resolve_prompts_per_collision_and_records_the_answer(
    demo: tuple[list[str], Path], tmp_path: Path
) -> None:
    common, db = demo
    out = tmp_path / "res.json"
    before = content_digest(db)
    result = run_on_pty(["resolve", *common, "--out", out], answers=[(RESOLVE_PROMPT, "1\n")])
    assert result.code == 0, result.output
    # the prompt showed the collision and both candidates
    assert "decision/mirror-coating" in result.output
    assert "st-02" in result.output and "st-03" in result.output
    assert result.output.count(RESOLVE_PROMPT) == 1  # the demo has one collision
    doc = json.loads(out.read_text("utf-8"))
    assert doc["kind"] == "resolve"
    assert doc["counts"] == {"collisions": 1, "decided": 1, "undecided": 0}
    (decision,) = doc["decisions"]
    first = doc["collisions"][0]["candidates"][0]["id"]
    assert first == "st-02"  # candidates are listed canonical row first
    assert decision["winner_id"] == first
    assert decision["rule"] == "interactive"
    assert (decision["category"], decision["key"]) == ("decision", "mirror-coating")
    assert content_digest(db) == before  # resolve never writes the database


def test_resolve_skip_leaves_the_collision_undecided(
    demo: tuple[list[str], Path], tmp_path: Path
) -> None:
    common, _ = demo
    out = tmp_path / "res.json"
    result = run_on_pty(["resolve", *common, "--out", out], answers=[(RESOLVE_PROMPT, "s\n")])
    assert result.code == 0, result.output
    doc = json.loads(out.read_text("utf-8"))
    assert doc["counts"] == {"collisions": 1, "decided": 0, "undecided": 1}
    assert doc["decisions"] == []


def test_resolve_prompt_goes_to_stderr_not_stdout(
    demo: tuple[list[str], Path], tmp_path: Path
) -> None:
    """stdout a pipe, stdin and stderr the terminal: the prompt is still asked
    (on stderr) and stdout carries only the result."""
    common, _ = demo
    out = tmp_path / "res.json"
    result = run_on_pty(
        ["resolve", *common, "--out", out],
        answers=[(RESOLVE_PROMPT, "2\n")],
        stdout_on_pty=False,
    )
    assert result.code == 0, result.output
    assert RESOLVE_PROMPT in result.output
    assert RESOLVE_PROMPT not in result.stdout
    assert "st-03" in result.stdout  # the result names the kept row
    (decision,) = json.loads(out.read_text("utf-8"))["decisions"]
    assert decision["winner_id"] == "st-03"


# -- apply -------------------------------------------------------------------------


@pytest.fixture
def resolved(demo: tuple[list[str], Path], tmp_path: Path) -> tuple[list[str], Path, Path]:
    common, db = demo
    res = tmp_path / "res.json"
    made = run_cli("resolve", *common, "--keep", "canonical", "--out", res)
    assert made.code == 0, made.stderr
    return common, db, res


def test_apply_on_a_terminal_asks_and_no_changes_nothing(
    resolved: tuple[list[str], Path, Path], tmp_path: Path
) -> None:
    common, db, res = resolved
    before = content_digest(db)
    result = run_on_pty(["apply", *common, "--resolutions", res], answers=[(APPLY_PROMPT, "n\n")])
    assert result.code == 3, result.output
    # the counts were shown before the question
    assert "About to migrate: 3 shadow rows deleted" in result.output
    assert result.output.index("About to migrate") < result.output.index(APPLY_PROMPT)
    assert "shadow project rows deleted" in result.output
    assert "Error: apply cancelled at the prompt" in result.output
    assert content_digest(db) == before
    assert not list((tmp_path / "reports").glob("backup-*.db"))


def test_apply_on_a_terminal_asks_and_yes_migrates(
    resolved: tuple[list[str], Path, Path], tmp_path: Path
) -> None:
    common, db, res = resolved
    result = run_on_pty(["apply", *common, "--resolutions", res], answers=[(APPLY_PROMPT, "y\n")])
    assert result.code == 0, result.output
    names = {name for (name,) in rows(db, "SELECT name FROM projects")}
    assert names == {
        "p05-interferometer",
        "P04-Gigabit",
        "p06-polisher",
        "p07-étalon",
        "atocore",
        "orphan-project",
    }
    assert rows(
        db,
        "SELECT ps.value FROM project_state ps JOIN projects p ON p.id = ps.project_id"
        " WHERE p.name = 'p05-interferometer' AND ps.category = 'decision'"
        " AND ps.key = 'mirror-coating'",
    ) == [("protected silver",)]
    assert rows(db, "SELECT COUNT(*) FROM memories WHERE project = 'p05'") == [(0,)]
    reports = tmp_path / "reports"
    assert len(list(reports.glob("backup-*.db"))) == 1
    (report,) = reports.glob("apply-*.json")
    assert json.loads(report.read_text("utf-8"))["status"] == "applied"


def test_apply_json_on_a_terminal_keeps_stdout_pure_json(
    resolved: tuple[list[str], Path, Path],
) -> None:
    common, db, res = resolved
    result = run_on_pty(
        ["apply", *common, "--resolutions", res, "--format", "json"],
        answers=[(APPLY_PROMPT, "y\n")],
        stdout_on_pty=False,
    )
    assert result.code == 0, result.output
    assert APPLY_PROMPT in result.output
    doc = json.loads(result.stdout)  # nothing but the JSON document
    assert doc["kind"] == "apply" and doc["status"] == "applied"
    assert rows(db, "SELECT COUNT(*) FROM projects WHERE name = 'p05'") == [(0,)]


# -- NO_COLOR ----------------------------------------------------------------------


def test_inspect_is_coloured_on_a_colour_terminal(demo: tuple[list[str], Path]) -> None:
    """The control for the NO_COLOR test: without it, a colour terminal gets colour."""
    common, _ = demo
    result = run_on_pty(["inspect", *common], env=child_env(TERM="xterm-256color"))
    assert result.code == 0, result.output
    assert "Alias-keyed and variant-spelled names" in result.output
    assert colour_codes(result.output.encode())


def test_no_color_removes_every_colour_escape(demo: tuple[list[str], Path]) -> None:
    common, _ = demo
    result = run_on_pty(["inspect", *common], env=child_env(TERM="xterm-256color", NO_COLOR="1"))
    assert result.code == 0, result.output
    assert "Alias-keyed and variant-spelled names" in result.output
    raw = result.output.encode()
    assert colour_codes(raw) == []
    assert b"\x1b[3" not in raw and b"\x1b[9" not in raw


REVERT_PROMPT = "Revert now?"


@pytest.mark.parametrize(("answer", "code"), [("n\n", 3), ("y\n", 0)])
def test_revert_on_a_terminal_shows_the_counts_and_asks(
    resolved: tuple[list[str], Path, Path], tmp_path: Path, answer: str, code: int
) -> None:
    """revert confirms on a terminal like apply: the per-kind counts first,
    then the question; 'n' changes nothing, 'y' reverts to the backup's content."""
    common, db, res = resolved
    assert run_cli("apply", *common, "--resolutions", res, "--yes").code == 0
    applied = content_digest(db)
    reports = tmp_path / "reports"
    (report,) = reports.glob("apply-*.json")
    (backup,) = reports.glob("backup-*.db")
    result = run_on_pty(["revert", *common, "--report", report], answers=[(REVERT_PROMPT, answer)])
    assert result.code == code, result.output
    assert result.output.index("About to revert") < result.output.index(REVERT_PROMPT)
    if code == 3:
        assert "Error: revert cancelled at the prompt" in result.output
        assert content_digest(db) == applied
    else:
        assert content_digest(db) == content_digest(backup)
