"""The docs are kept in sync with the code: docs/cli.md is generated from the
Click definitions, and the hand-written docs are checked against the schemas,
the Makefile, the exit codes, and a real plan and apply of the demo database."""

from __future__ import annotations

import importlib.util
import json
import re
import sqlite3
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest

from atocore_identity.cli import cli
from atocore_identity.demo import INTERACTIONS, MEMORIES, STATE
from atocore_identity.errors import EXIT_CODES
from atocore_identity.options import EXIT_CODES_HELP
from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def load_tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def doc(name: str) -> str:
    return (DOCS / name).read_text("utf-8")


def table_rows(text: str, first_cell: str) -> dict[str, list[str]]:
    """Markdown table rows whose first cell starts with ``first_cell``, by that cell's
    first word."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith(f"| {first_cell}"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        out[cells[0].split()[0]] = cells
    return out


def literal(cell: str) -> str:
    """`p05` -> p05, `' interferometer '` -> ' interferometer ', `''` -> ''."""
    text = cell.strip()
    if text.startswith("`") and text.endswith("`"):
        text = text[1:-1]
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1]
    return text


# -- the generated reference ---------------------------------------------------------


def test_cli_reference_equals_a_fresh_generation() -> None:
    fresh = load_tool("gen_cli_docs").render()
    assert doc("cli.md") == fresh, "docs/cli.md is stale: run `make docs`"


def test_generators_check_mode_passes_on_the_committed_files() -> None:
    assert load_tool("gen_cli_docs").main(["--check"]) == 0
    assert load_tool("gen_completions").main(["--check"]) == 0


def test_cli_reference_names_every_command_and_option() -> None:
    text = doc("cli.md")
    ctx = click.Context(cli, info_name="atocore-identity")
    assert isinstance(cli, click.Group)
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None
        assert f"## `atocore-identity {name}`" in text
        for param in command.params:
            for opt in param.opts:
                assert f"`{opt}`" in text or param.human_readable_name in text, (name, opt)
    for env in ("ATOCORE_IDENTITY_DB", "ATOCORE_PROJECT_REGISTRY_PATH", "ATOCORE_IDENTITY_CONFIG"):
        assert env in text


# -- exit codes --------------------------------------------------------------------------


def test_exit_codes_doc_and_help_list_every_code() -> None:
    text = doc("exit-codes.md")
    for code, meaning in EXIT_CODES.items():
        assert re.search(rf"^\| {code} \| ", text, re.M), f"exit code {code} missing"
        assert f"{code} " in EXIT_CODES_HELP, f"--help does not list exit code {code}"
        assert meaning.split(";")[0].split(":")[0] in doc("cli.md")
    help_text = run_cli("--help").stdout
    assert "Exit codes: 0 success; 1" in " ".join(help_text.split())


# -- the runbook ---------------------------------------------------------------------------


def test_runbook_uses_every_runbook_make_target_and_variable() -> None:
    makefile = (ROOT / "Makefile").read_text("utf-8")
    targets = re.findall(r"^(identity-[a-z]+):", makefile, re.M)
    # the five runbook steps and history (revert adds its own); each documented below
    steps = ("inspect", "plan", "resolve", "apply", "verify", "history")
    assert {f"identity-{s}" for s in steps} <= set(targets), targets
    text = doc("runbook.md")
    for target in targets:
        assert f"make {target} " in text, target
    for variable in ("DB", "REGISTRY", "REPORT_DIR", "PLAN", "RESOLUTIONS", "KEEP"):
        assert f"{variable}=" in text, variable
    for variable in ("APPLY_REPORT", "BACKUP"):
        assert f"{variable}=" in text and f"$({variable})" in makefile, variable


def test_runbook_explains_completion_restore_and_stop_go() -> None:
    text = doc("runbook.md")
    head = text[: text.index("## 0.")]
    for name in ("atocore-identity.bash", "_atocore-identity", "atocore-identity.fish"):
        assert f"completions/{name}" in head, name
    assert "_ATOCORE_IDENTITY_COMPLETE=bash_source" in head
    assert ".restore" in text and 'cp "$REPORT_DIR/backup-<time>.db" "$DB"' in text
    assert "-wal" in text  # a stale WAL must not be replayed onto the restored file
    for word in ("--detailed-exitcode", "--busy-timeout", "--yes", "stop"):
        assert word in text


# -- reports.md against the schemas -----------------------------------------------------


@pytest.mark.parametrize("kind", ["inspect", "plan", "resolve", "apply", "verify"])
def test_reports_doc_documents_every_field_of_every_kind(kind: str) -> None:
    text = doc("reports.md")
    schema: dict[str, Any] = json.loads((DOCS / "schemas" / f"{kind}.schema.json").read_text())
    undocumented = [f for f in schema["properties"] if f"`{f}`" not in text]
    assert not undocumented, f"{kind}: fields missing from docs/reports.md: {undocumented}"
    counts = schema["properties"]["counts"].get("required", [])
    missing = [c for c in counts if f"`{c}`" not in text]
    assert not missing, f"{kind}: counts keys missing from docs/reports.md: {missing}"


def test_reports_doc_documents_every_companion_record() -> None:
    text = doc("reports.md")
    schema = json.loads((DOCS / "schemas" / "companion.schema.json").read_text())
    for variant in schema["oneOf"]:
        record = variant["properties"]["record"]["const"]
        assert f"| `{record}` |" in text
        for field in variant["properties"]:
            assert f"`{field}`" in text, (record, field)


# -- decisions.md against a real plan and apply of the demo ------------------------------


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("decisions")
    assert run_cli("demo", root / "demo").code == 0
    db = root / "demo" / "atocore.db"
    common = [
        "--db",
        db,
        "--registry",
        root / "demo" / "registry.json",
        "--report-dir",
        root / "reports",
        "--column",
        "conflicts.project",
    ]
    res = root / "res.json"
    assert run_cli("resolve", *common, "--keep", "canonical", "--out", res).code == 0
    planned = run_cli("plan", *common, "--resolutions", res, "--format", "json")
    assert planned.code == 0, planned.stderr
    applied = run_cli("apply", *common, "--resolutions", res, "--yes")
    assert applied.code == 0, applied.stderr
    conn = sqlite3.connect(db)
    try:
        after = {
            "memories": {
                r[0]: r[1:]
                for r in conn.execute("SELECT id, project, status, updated_at FROM memories")
            },
            "interactions": {
                r[0]: r[1] for r in conn.execute("SELECT id, project FROM interactions")
            },
            "conflicts": {r[0]: r[1] for r in conn.execute("SELECT id, project FROM conflicts")},
        }
    finally:
        conn.close()
    return {"plan": planned.json(), "after": after}


def test_decisions_state_table_matches_the_demo_and_a_real_plan(demo_run: dict[str, Any]) -> None:
    table = table_rows(doc("decisions.md"), "st-")
    assert sorted(table) == sorted(row[0] for row in STATE), "one doc row per demo state row"
    source = {row[0]: row for row in STATE}
    planned = {r["id"]: r for r in demo_run["plan"]["state_rows"]}
    assert demo_run["plan"]["state_rows_total"] == len(planned)
    for row_id, cells in table.items():
        _, _, category, key, value, status, updated_at = source[row_id]
        assert cells[2] == f"{category}/{key}", row_id
        assert (cells[3], cells[5]) == (status, value), row_id
        assert updated_at.startswith(cells[4]), row_id
        outcome, winner = cells[7], cells[8]
        if row_id in planned:
            assert (outcome, winner) == (planned[row_id]["outcome"], planned[row_id]["winner_id"])
        else:
            assert outcome in ("stays", "untouched"), row_id
    stays = [i for i, c in table.items() if c[7] == "stays"]
    counts = demo_run["plan"]["counts"]
    assert len(stays) == counts["state_unchanged"]
    totals = re.search(
        r"(\d+) moved, (\d+) archived as duplicates, (\d+) archived\s+as history, (\d+) winners"
        r" that stay; (\d+) shadow rows deleted, (\d+) renamed",
        doc("decisions.md"),
    )
    assert totals is not None
    assert [int(n) for n in totals.groups()] == [
        counts["state_moved"],
        counts["state_archived_duplicate"],
        counts["state_archived_history"],
        counts["state_unchanged"],
        counts["shadow_rows_deleted"],
        counts["shadow_rows_renamed"],
    ]


def test_decisions_memory_table_matches_the_demo_and_a_real_apply(
    demo_run: dict[str, Any],
) -> None:
    table = table_rows(doc("decisions.md"), "mem-")
    assert sorted(table) == sorted(row[0] for row in MEMORIES)
    source = {row[0]: row for row in MEMORIES}
    after = demo_run["after"]["memories"]
    for row_id, cells in table.items():
        _, _, _, project, status, updated_at = source[row_id]
        assert (literal(cells[1]), cells[2]) == (project, status), row_id
        assert updated_at.startswith(cells[3]), row_id
        # after apply: project, status, and updated_at unchanged by supersession
        assert (literal(cells[4]), cells[5], updated_at) == after[row_id], row_id


def test_decisions_interaction_table_matches_a_real_apply(demo_run: dict[str, Any]) -> None:
    table = table_rows(doc("decisions.md"), "int-")
    assert sorted(table) == sorted(row[0] for row in INTERACTIONS)
    source = {row[0]: row[3] for row in INTERACTIONS}
    for row_id, cells in table.items():
        assert literal(cells[1]) == source[row_id], row_id
        assert literal(cells[2]) == demo_run["after"]["interactions"][row_id], row_id
    for row_id, cells in table_rows(doc("decisions.md"), "cf-").items():
        assert literal(cells[2]) == demo_run["after"]["conflicts"][row_id], row_id
