"""The runbook's make targets, run literally as an operator runs them off a terminal
(no stdin), each exit code checked against docs/runbook.md's stop/go tables; and
`make demo`, after which no text value of the demo database names a registered alias.

make itself exits 0 when the tool does and 2 when it does not; it names the tool's own
exit code in its `make: *** [Makefile:N: TARGET] Error CODE` line, which is what the
runbook tells the operator to read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / ".venv" / "bin" / "atocore-identity"
STAMP = ".venv/.installed"  # the Makefile's $(STAMP), relative to the repository root

pytestmark = [
    pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make"),
    pytest.mark.skipif(not TOOL.exists(), reason="needs the .venv the Makefile builds"),
]

# The example paths the Makefile, README and runbook all use.
EXAMPLE = {
    "DB": "/srv/atocore/data/db/atocore.db",
    "REGISTRY": "/srv/atocore/registry.json",
    "REPORT_DIR": "/srv/atocore/data/migrations",
    "PLAN": "/srv/atocore/data/migrations/plan.json",
    "APPLY_REPORT": "/srv/atocore/data/migrations/apply-<time>.json",
}
REQUIRED = {
    "identity-inspect": ["DB", "REGISTRY", "REPORT_DIR"],
    "identity-plan": ["DB", "REGISTRY", "REPORT_DIR"],
    "identity-resolve": ["DB", "REGISTRY", "REPORT_DIR"],
    "identity-apply": ["DB", "REGISTRY", "REPORT_DIR", "PLAN"],
    "identity-verify": ["DB", "REGISTRY", "REPORT_DIR"],
    "identity-revert": ["DB", "REGISTRY", "REPORT_DIR", "APPLY_REPORT"],
    "identity-history": ["REPORT_DIR"],
}
# Variables the Makefile reads; none may leak in from the environment pytest runs in.
MAKE_VARIABLES = (
    "DB",
    "REGISTRY",
    "REPORT_DIR",
    "PLAN",
    "RESOLUTIONS",
    "KEEP",
    "CONFIG",
    "APPLY_REPORT",
    "BACKUP",
    "PROJECT",
    "DRY_RUN",
    "SKIP_CHANGED",
    "FORMAT",
    "DEMO_DIR",
    "DEMO_COLUMNS",
    "PYTHON",
)


def make_env() -> dict[str, str]:
    """The environment without make's own recursion variables or the Makefile's inputs."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MAKE", "ATOCORE_"))
        and key not in ("MFLAGS", "GNUMAKEFLAGS", *MAKE_VARIABLES)
    }
    # What a shell commonly exports: neither may reach the tool as --column 132 or --yes.
    env["COLUMNS"] = "132"
    env["YES"] = "1"
    env["NO_COLOR"] = "1"
    return env


def make(*args: str) -> subprocess.CompletedProcess[str]:
    # -o: never rebuild the .venv the tests are running in.
    return subprocess.run(
        ["make", "-s", "-o", STAMP, *args],
        cwd=ROOT,
        env=make_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def tool_code(result: subprocess.CompletedProcess[str]) -> int:
    """The tool's exit code, as make reports it."""
    if result.returncode == 0:
        return 0
    assert result.returncode == 2, (result.returncode, result.stderr)
    found = re.search(r"^make: \*\*\* \[[^\]]*\] Error (\d+)$", result.stderr, re.M)
    assert found, result.stderr
    return int(found.group(1))


def content(path: Path) -> list[tuple[str, list[str]]]:
    """Every table's rows, sorted: equal content whatever the page layout."""
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [
            (t, sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"')))) for t in sorted(tables)
        ]
    finally:
        conn.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_demo(directory: Path) -> tuple[Path, Path]:
    subprocess.run(
        [str(TOOL), "demo", str(directory)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return directory / "atocore.db", directory / "registry.json"


def alias_spelled_values(db: Path, registry: Path) -> list[tuple[str, str, str]]:
    """Every (table, column, value) of any table whose text folds to a registered alias."""
    projects = json.loads(registry.read_text("utf-8"))["projects"]
    aliases = {alias.strip().lower() for project in projects for alias in project["aliases"]}
    found = []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        assert "conflicts" in tables
        for table in tables:
            quoted_table = '"' + table.replace('"', '""') + '"'
            for column in conn.execute(f"PRAGMA table_info({quoted_table})"):
                name = column[1]
                quoted = '"' + name.replace('"', '""') + '"'
                rows = conn.execute(
                    f"SELECT {quoted} FROM {quoted_table} WHERE typeof({quoted}) = 'text'"
                )
                found += [
                    (table, name, value) for (value,) in rows if value.strip().lower() in aliases
                ]
    finally:
        conn.close()
    return found


def test_runbook_make_targets_exit_as_the_runbook_says(tmp_path: Path) -> None:
    db, registry = write_demo(tmp_path / "demo")
    reports = tmp_path / "reports"
    paths = [f"DB={db}", f"REGISTRY={registry}", f"REPORT_DIR={reports}"]
    base = [*paths, "COLUMNS=conflicts.project"]
    resolutions = f"RESOLUTIONS={reports / 'resolutions.json'}"
    plan = f"PLAN={reports / 'plan.json'}"

    result = make("identity-inspect", *base)
    assert tool_code(result) == 0, result.stderr

    # step 2: the collision blocks apply
    result = make("identity-plan", *base, f"PLAN={reports / 'plan-before-resolve.json'}")
    assert tool_code(result) == 3, result.stderr
    assert "mirror-coating" in result.stdout

    # step 3: decide it, then the plan is applicable
    result = make("identity-resolve", *base, "KEEP=canonical", resolutions)
    assert tool_code(result) == 0, result.stderr
    result = make("identity-plan", *base, resolutions, plan)
    assert tool_code(result) == 4, result.stderr

    # step 5: off a terminal, only YES=1 on make's command line lets apply run
    before = sha256(db)
    result = make("identity-apply", *base, plan, resolutions)
    assert tool_code(result) == 3, result.stderr
    assert "--yes" in result.stderr
    assert sha256(db) == before, "a refused apply changed the database"
    result = make("identity-apply", *base, plan, resolutions, "YES=1")
    assert tool_code(result) == 0, result.stderr
    assert sha256(db) != before

    # nothing left to migrate, and COLUMNS= carried conflicts.project through every step
    result = make("identity-plan", *base)
    assert tool_code(result) == 0, result.stderr
    conn = sqlite3.connect(db)
    try:
        rows = dict(conn.execute("SELECT id, project FROM conflicts").fetchall())
    finally:
        conn.close()
    assert rows == {"cf-01": "p05-interferometer", "cf-02": "p06-polisher"}

    # step 6
    (backup,) = reports.glob("backup-*.db")
    result = make("identity-verify", *base, f"BACKUP={backup}")
    assert tool_code(result) == 0, result.stdout + result.stderr
    assert "all checks pass" in result.stdout

    # history lists the runs; undo: a dry run changes nothing, YES=1 reverts to the backup
    result = make("identity-history", f"REPORT_DIR={reports}", "FORMAT=json")
    assert tool_code(result) == 0, result.stderr
    (applied,) = reports.glob("apply-*.json")
    migrated = sha256(db)
    report = f"APPLY_REPORT={applied}"
    result = make("identity-revert", *base, report, "DRY_RUN=1")
    assert tool_code(result) == 0, result.stderr
    assert sha256(db) == migrated
    result = make("identity-revert", *base, report)
    assert tool_code(result) == 3 and "--yes" in result.stderr
    result = make("identity-revert", *base, report, "YES=1")
    assert tool_code(result) == 0, result.stderr
    assert content(db) == content(backup)


@pytest.mark.parametrize(
    ("target", "missing"),
    [(target, name) for target, names in REQUIRED.items() for name in names],
)
def test_a_missing_variable_is_named_with_a_complete_example(target: str, missing: str) -> None:
    given = [f"{name}=/nonexistent/{name.lower()}" for name in REQUIRED[target] if name != missing]
    result = make(target, *given)
    assert result.returncode != 0
    example = " ".join(f"{name}={EXAMPLE[name]}" for name in REQUIRED[target])
    assert f"{missing}= is required, e.g. make {target} {example}" in result.stderr
    assert "atocore-identity" not in result.stdout, "the tool ran without its inputs"


def test_yes_takes_only_1() -> None:
    args = [f"{name}=/nonexistent/{name.lower()}" for name in REQUIRED["identity-apply"]]
    result = make("identity-apply", *args, "YES=yes")
    assert result.returncode != 0
    assert "YES=yes: write YES=1" in result.stderr


def test_help_numbers_the_targets_as_the_runbook_numbers_its_steps() -> None:
    result = make("help")
    assert result.returncode == 0, result.stderr
    helped = dict(re.findall(r"^\s+identity-([a-z]+)\s+Runbook (\d+):", result.stdout, re.M))
    assert sorted(helped) == ["apply", "inspect", "plan", "resolve", "verify"]
    runbook = (ROOT / "docs" / "runbook.md").read_text("utf-8")
    steps = dict(re.findall(r"^## (\d+)\. (\S+)", runbook, re.M))
    for command, step in helped.items():
        assert steps[step].lower().startswith(command), (command, step, steps[step])
        assert f"make identity-{command} " in runbook.split(f"## {step}. ")[1].split("\n## ")[0]


def test_make_demo_leaves_no_alias_spelled_value_in_any_text_column(tmp_path: Path) -> None:
    # the scan does see them before the migration
    db, registry = write_demo(tmp_path / "fresh")
    assert ("conflicts", "project", "p05") in alias_spelled_values(db, registry)

    demo = tmp_path / "demo"
    result = make("demo", f"DEMO_DIR={demo}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo runbook finished" in result.stdout
    assert alias_spelled_values(demo / "atocore.db", demo / "registry.json") == []
