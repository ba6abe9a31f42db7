"""Every report kind, produced for real on the demo database, validates against
its JSON Schema in docs/schemas/, and so does every companion record."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"
KINDS = ("inspect", "plan", "resolve", "apply", "verify")
# refusals and interruptions of apply are named so `apply-*.json` never matches them
NAME = re.compile(
    r"^((refused-|interrupted-)?apply|inspect|plan|resolve|verify)-\d{8}T\d{6}\.\d{6}Z\.json$"
)


def schema(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMAS / f"{name}.schema.json").read_text("utf-8"))
    return doc


def validate(doc: Any, name: str) -> None:
    errors = sorted(Draft202012Validator(schema(name)).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(
        f"{name}: /{'/'.join(map(str, e.path))}: {e.message[:300]}" for e in errors[:10]
    )


def companion_records(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module")
def runbook(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run every command the runbook has, in every outcome cheap to produce."""
    root = tmp_path_factory.mktemp("schemas")
    assert run_cli("demo", root / "demo").code == 0
    assert run_cli("demo", root / "untouched").code == 0
    db, reg, rep = root / "demo" / "atocore.db", root / "demo" / "registry.json", root / "reports"
    common = ["--db", db, "--registry", reg, "--report-dir", rep, "--column", "conflicts.project"]
    json_out: dict[str, list[Any]] = {k: [] for k in KINDS}
    codes: dict[str, int] = {}

    def run(label: str, kind: str, *args: str | Path, fmt_json: bool = True) -> None:
        extra = ("--format", "json") if fmt_json else ()
        result = run_cli(kind, *common, *args, *extra)
        codes[label] = result.code
        if fmt_json and result.stdout.strip():
            json_out[kind].append(json.loads(result.stdout))

    run("inspect", "inspect")
    run("plan-blocked", "plan", "--out", rep / "plan-blocked.json")
    run("resolve-undecided", "resolve", "--out", rep / "res-undecided.json")
    run("resolve", "resolve", "--keep", "canonical", "--out", rep / "res.json")
    run("plan", "plan", "--resolutions", rep / "res.json", "--out", rep / "plan.json")
    run("apply-refused", "apply", "--yes")  # unresolved collision: refused
    run(
        "apply",
        "apply",
        "--plan",
        rep / "plan.json",
        "--resolutions",
        rep / "res.json",
        "--yes",
    )
    run("apply-empty", "apply", "--allow-empty", "--yes")
    run("plan-empty", "plan")
    applied = [
        p
        for p in rep.glob("apply-*.json")
        if json.loads(p.read_text("utf-8"))["status"] == "applied"
    ]
    (backup,) = rep.glob("backup-*.db")
    run("verify", "verify", "--report", applied[0], "--backup", backup)
    failing = run_cli(
        "verify",
        "--db",
        root / "untouched" / "atocore.db",
        "--registry",
        reg,
        "--report-dir",
        rep,
        "--format",
        "json",
    )
    codes["verify-failing"] = failing.code
    json_out["verify"].append(json.loads(failing.stdout))
    return {"reports": rep, "codes": codes, "stdout": json_out}


def reports_of(rep: Path, kind: str) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(rep.glob("*.json")):
        doc = json.loads(path.read_text("utf-8"))
        if doc.get("kind") == kind:
            out.append((path, doc))
    return out


def test_the_runbook_ran_with_the_expected_exit_codes(runbook: dict[str, Any]) -> None:
    assert runbook["codes"] == {
        "inspect": 0,
        "plan-blocked": 0,
        "resolve-undecided": 0,
        "resolve": 0,
        "plan": 0,
        "apply-refused": 3,
        "apply": 0,
        "apply-empty": 0,
        "plan-empty": 0,
        "verify": 0,
        "verify-failing": 1,
    }


def test_schemas_are_valid_json_schema() -> None:
    for name in (*KINDS, "companion"):
        Draft202012Validator.check_schema(schema(name))


@pytest.mark.parametrize("kind", KINDS)
def test_every_report_file_validates(runbook: dict[str, Any], kind: str) -> None:
    found = reports_of(runbook["reports"], kind)
    assert found, f"no {kind} report was written"
    for _, doc in found:
        validate(doc, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_json_on_stdout_validates(runbook: dict[str, Any], kind: str) -> None:
    docs = runbook["stdout"][kind]
    assert docs, f"no {kind} --format json output"
    for doc in docs:
        validate(doc, kind)


def test_the_runs_cover_every_outcome(runbook: dict[str, Any]) -> None:
    rep = runbook["reports"]
    statuses = {d["status"] for _, d in reports_of(rep, "apply")}
    assert statuses == {"applied", "empty", "refused"}
    plans = [d for _, d in reports_of(rep, "plan")]
    assert {(d["applicable"], d["empty"]) for d in plans} == {
        (False, False),
        (True, False),
        (True, True),
    }
    assert {d["counts"]["undecided"] for _, d in reports_of(rep, "resolve")} == {0, 1}
    assert {d["ok"] for _, d in reports_of(rep, "verify")} == {True, False}


def test_default_report_names_carry_kind_and_microsecond_time(runbook: dict[str, Any]) -> None:
    rep = runbook["reports"]
    chosen = {"plan-blocked.json", "res-undecided.json", "res.json", "plan.json"}
    for path in rep.glob("*.json"):
        doc = json.loads(path.read_text("utf-8"))
        assert doc["report_path"] == str(path)
        if path.name in chosen:
            continue
        assert NAME.match(path.name), path.name
        prefix = doc["kind"] + "-"
        if doc.get("status") in ("refused", "interrupted"):
            prefix = f"{doc['status']}-{prefix}"
        assert path.name.startswith(prefix)


def test_files_named_by_reports_sit_beside_them(runbook: dict[str, Any]) -> None:
    rep = runbook["reports"]
    for _, doc in reports_of(rep, "plan"):
        if doc["empty"]:
            assert doc["companion"] is None
        else:
            assert (rep / doc["companion"]).is_file()
    for _, doc in reports_of(rep, "apply"):
        if doc["status"] == "applied":
            assert (rep / doc["companion"]).is_file()
            assert (rep / doc["backup"]["path"]).stat().st_size == doc["backup"]["bytes"]


def test_every_companion_record_validates(runbook: dict[str, Any]) -> None:
    rep = runbook["reports"]
    files = sorted(rep.glob("*.rows.jsonl.gz"))
    assert any(f.name.startswith("apply-") for f in files)
    assert any(f.name.startswith("plan-") for f in files)
    kinds: set[str] = set()
    for path in files:
        for record in companion_records(path):
            validate(record, "companion")
            kinds.add(record["record"])
    assert kinds == {"project", "state", "rekey", "supersede"}


def test_apply_archive_holds_every_archived_state_row_in_full(runbook: dict[str, Any]) -> None:
    rep = runbook["reports"]
    (doc,) = [d for _, d in reports_of(rep, "apply") if d["status"] == "applied"]
    records = companion_records(rep / doc["companion"])
    archived = [
        r for r in records if r["record"] == "state" and r["outcome"] in ("duplicate", "history")
    ]
    assert len(archived) == doc["archived_state_rows"] == 7
    assert {r["row"]["id"] for r in archived} == {
        "st-03",
        "st-05",
        "st-06",
        "st-08",
        "st-11",
        "st-12",
        "st-21",
    }
    # rekey records list each row's old value beside its key ("from" parallels "ids")
    rekeyed = {
        (r["table"], old): (key, r["to"])
        for r in records
        if r["record"] == "rekey"
        for key, old in zip(r["ids"], r["from"], strict=True)
    }
    assert rekeyed[("conflicts", "p05")] == ("cf-01", "p05-interferometer")  # operator-named


def test_plan_counts_collisions_matches_the_collisions_listed(runbook: dict[str, Any]) -> None:
    """counts.collisions is a count like the others: it must say how many
    collisions the plan lists (the blocked plan has one, unresolved)."""
    plans = {p.name: d for p, d in reports_of(runbook["reports"], "plan")}
    blocked = plans["plan-blocked.json"]
    assert len(blocked["collisions"]) == 1
    assert blocked["counts"]["state_in_collision"] == 2
    assert blocked["counts"]["collisions"] == len(blocked["collisions"])


def test_schemas_reject_what_the_reports_must_not_contain(runbook: dict[str, Any]) -> None:
    """The schemas are not vacuous: a missing field, an unknown field, a wrong
    kind and a wrong type are each rejected."""
    (_, plan), *_ = reports_of(runbook["reports"], "plan")
    validator = Draft202012Validator(schema("plan"))
    missing = dict(plan)
    del missing["fingerprint"]
    unknown = {**plan, "surprise": 1}
    wrong_kind = {**plan, "kind": "apply"}
    wrong_type = {**plan, "counts": {**plan["counts"], "state_moved": "5"}}
    for bad in (missing, unknown, wrong_kind, wrong_type):
        assert not validator.is_valid(bad)
    assert not Draft202012Validator(schema("companion")).is_valid(
        {"record": "state", "outcome": "vanished"}
    )
