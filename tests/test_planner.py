"""The core planner (SPEC §2-§3): the project_state decision table, memories,
interactions, extra columns, integrity errors, and what `apply --yes` leaves.

Every case is checked twice: in the plan (`plan --format json`) and in the
final database after `apply --yes`.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from conftest import (
    DEFAULT_REGISTRY,
    Env,
    build_db,
    content_digest,
    rows,
    run_cli,
    write_registry,
)

P05 = "p05-interferometer"
P06 = "p06-polisher"
P07 = "p07-étalon"

# --------------------------------------------------------------------------
# One database holding every row of the decision table, each at its own key
# --------------------------------------------------------------------------

PROJECTS = [
    ("c", P05),  # canonical row of p05
    ("s1", "p05"),  # shadows of p05: three of them
    ("s2", "interferometer"),
    ("s3", "P05"),
    ("q1", "polisher"),  # p06 has shadows only: q1 (lowest id) is renamed into it
    ("q2", "p06"),
    ("e1", P07),  # non-ASCII project with a non-ASCII shadow
    ("e2", "ÉTALON"),
    ("u", "p99-other"),  # unregistered
]

STATE = [
    # one row: a plain rekey, whatever its status
    ("st-one", "s1", "cfg", "one", "v1", "active", "2025-01-01"),
    ("st-one-old", "s3", "cfg", "one-old", "old", "superseded", "2025-01-01"),
    # all active equal, canonical active: the canonical row's own wins
    ("ea-c", "c", "cfg", "eq-ca", "V", "active", "2025-01-01"),
    ("ea-1", "s1", "cfg", "eq-ca", "V", "active", "2025-06-01"),
    ("ea-2", "s2", "cfg", "eq-ca", "older", "superseded", "2025-07-01"),
    # all active equal, canonical inactive (and newest of all): newest active wins
    ("ei-c", "c", "cfg", "eq-ci", "V", "superseded", "2025-09-01"),
    ("ei-1", "s1", "cfg", "eq-ci", "V", "active", "2025-02-01"),
    ("ei-2", "s2", "cfg", "eq-ci", "V", "active", "2025-03-01"),
    ("ei-3", "s3", "cfg", "eq-ci", "W", "invalid", "2025-12-01"),
    # canonical inactive with another value: the active fact must not lose to it
    ("eo-c", "c", "cfg", "eq-co", "OLD", "superseded", "2025-01-01"),
    ("eo-1", "s1", "cfg", "eq-co", "NEW", "active", "2025-01-01"),
    # no active row, with a canonical row: the canonical row's own wins, even if older
    ("nc-c", "c", "cfg", "none-c", "X", "superseded", "2025-01-01"),
    ("nc-1", "s1", "cfg", "none-c", "Y", "superseded", "2025-12-01"),
    ("nc-2", "s2", "cfg", "none-c", "X", "invalid", "2025-06-01"),
    # no active row, no canonical row: the newest wins
    ("nn-1", "s1", "cfg", "none-n", "A", "superseded", "2025-03-01"),
    ("nn-2", "s2", "cfg", "none-n", "B", "invalid", "2025-01-01"),
    ("nn-3", "s3", "cfg", "none-n", "A", "superseded", "2025-02-01"),
    # no active row, tie on updated_at: the lowest id wins
    ("nt-b", "s1", "cfg", "none-tie", "A", "superseded", "2025-05-05"),
    ("nt-a", "s2", "cfg", "none-tie", "B", "superseded", "2025-05-05"),
    # all active equal, no canonical row, tie on updated_at: the lowest id wins
    ("at-b", "s1", "cfg", "act-tie", "Z", "active", "2025-05-05"),
    ("at-a", "s3", "cfg", "act-tie", "Z", "active", "2025-05-05"),
    # values compare exactly: 'abc' and 'ABC' differ, so the loser is history
    ("cs-1", "s1", "cfg", "case", "abc", "superseded", "2025-01-01"),
    ("cs-2", "s2", "cfg", "case", "ABC", "superseded", "2025-02-01"),
    # the category is part of the key: no collision across categories
    ("k1", "s1", "catA", "same", "1", "active", "2025-01-01"),
    ("k2", "c", "catB", "same", "2", "active", "2025-01-01"),
    # canonical only: not the migration's business
    ("co-c", "c", "cfg", "canon-only", "K", "active", "2025-01-01"),
    # p06: no canonical row; q1 is renamed, q2's state moves under it
    ("r1", "q1", "cfg", "x", "1", "active", "2025-01-01"),
    ("r2", "q2", "cfg", "x", "1", "active", "2025-02-01"),
    ("r3", "q2", "cfg", "y", "2", "active", "2025-01-01"),
    # p07: non-ASCII shadow
    ("et-1", "e2", "cfg", "z", "1", "active", "2025-01-01"),
    # unregistered project: never touched
    ("un-1", "u", "cfg", "one", "v", "active", "2025-01-01"),
]

MEMORIES = [
    # rekeyed whatever the status, statuses kept
    ("m-alias", "fact", "A1", "p05", "active", "2025-01-01"),
    ("m-var1", "fact", "A2", " p05-interferometer", "candidate", "2025-01-01"),
    ("m-var2", "fact", "A3", "P05-Interferometer", "superseded", "2025-01-01"),
    ("m-inv", "fact", "A4", "INTERFEROMETER", "invalid", "2025-01-01"),
    # active duplicates with a rekeyed row: newest stays active
    ("d1-c", "fact", "dup1", P05, "active", "2025-01-01"),
    ("d1-a", "fact", "dup1", "p05", "active", "2025-03-01"),
    ("d1-b", "fact", "dup1", "interferometer", "active", "2025-02-01"),
    ("d1-x", "fact", "dup1", "p05", "candidate", "2025-04-01"),
    # tie on updated_at: the row already canonical stays active (despite its higher id)
    ("d2-c", "fact", "dup2", P05, "active", "2025-05-05"),
    ("d2-a", "fact", "dup2", "p05", "active", "2025-05-05"),
    # tie among rekeyed rows: the lowest id stays active
    ("d3-b", "fact", "dup3", "p05", "active", "2025-05-05"),
    ("d3-a", "fact", "dup3", "P05", "active", "2025-05-05"),
    # duplicates that were all canonical before: left alone
    ("d4-1", "fact", "dup4", P05, "active", "2025-01-01"),
    ("d4-2", "fact", "dup4", P05, "active", "2025-02-01"),
    # another memory_type is not a duplicate
    ("t-1", "fact", "dup5", P05, "active", "2025-01-01"),
    ("t-2", "preference", "dup5", "p05", "active", "2025-02-01"),
    # same content in another project is not a duplicate
    ("x-p06", "fact", "dup1", "p06", "active", "2025-09-01"),
    # non-ASCII alias and variant spelling
    ("me", "fact", "E", "ÉTALON", "active", "2025-01-01"),
    ("me2", "fact", "E2", "P07-ÉTALON", "active", "2025-01-01"),
    # unregistered: never touched
    ("mu", "fact", "U", "p99", "active", "2025-01-01"),
    ("mu2", "fact", "U", "", "active", "2025-01-01"),
]

INTERACTIONS = [
    ("i1", "P05"),
    ("i2", "interferometer"),
    ("i3", " p05-interferometer "),
    ("i4", P05),
    ("i5", "p99"),
    ("i6", "polisher"),
    ("i7", "étalon"),
]

EXTRA_COLUMNS = [
    "--column",
    "conflicts.project",
    "--column",
    "mirror_regeneration_failures.project",
]

# (id) -> (project row, value, status) after apply; None: deleted (archived)
EXPECTED_STATE: dict[str, tuple[str, str, str] | None] = {
    "st-one": ("c", "v1", "active"),
    "st-one-old": ("c", "old", "superseded"),
    "ea-c": ("c", "V", "active"),
    "ea-1": None,
    "ea-2": None,
    "ei-c": None,
    "ei-1": None,
    "ei-2": ("c", "V", "active"),
    "ei-3": None,
    "eo-c": None,
    "eo-1": ("c", "NEW", "active"),
    "nc-c": ("c", "X", "superseded"),
    "nc-1": None,
    "nc-2": None,
    "nn-1": ("c", "A", "superseded"),
    "nn-2": None,
    "nn-3": None,
    "nt-b": None,
    "nt-a": ("c", "B", "superseded"),
    "at-b": None,
    "at-a": ("c", "Z", "active"),
    "cs-1": None,
    "cs-2": ("c", "ABC", "superseded"),
    "k1": ("c", "1", "active"),
    "k2": ("c", "2", "active"),
    "co-c": ("c", "K", "active"),
    "r1": None,
    "r2": ("q1", "1", "active"),
    "r3": ("q1", "2", "active"),
    "et-1": ("e1", "1", "active"),
    "un-1": ("u", "v", "active"),
}

# (id) -> plan outcome
EXPECTED_OUTCOMES = {
    "st-one": "moves",
    "st-one-old": "moves",
    "ea-1": "duplicate",
    "ea-2": "history",
    "ei-c": "duplicate",
    "ei-1": "duplicate",
    "ei-2": "moves",
    "ei-3": "history",
    "eo-c": "history",
    "eo-1": "moves",
    "nc-1": "history",
    "nc-2": "duplicate",
    "nn-1": "moves",
    "nn-2": "history",
    "nn-3": "duplicate",
    "nt-b": "history",
    "nt-a": "moves",
    "at-b": "duplicate",
    "at-a": "moves",
    "cs-1": "history",
    "cs-2": "moves",
    "k1": "moves",
    "r1": "duplicate",
    "r2": "moves",
    "r3": "moves",
    "et-1": "moves",
}

EXPECTED_MEMORIES = {
    "m-alias": (P05, "active"),
    "m-var1": (P05, "candidate"),
    "m-var2": (P05, "superseded"),
    "m-inv": (P05, "invalid"),
    "d1-c": (P05, "superseded"),
    "d1-a": (P05, "active"),
    "d1-b": (P05, "superseded"),
    "d1-x": (P05, "candidate"),
    "d2-c": (P05, "active"),
    "d2-a": (P05, "superseded"),
    "d3-b": (P05, "superseded"),
    "d3-a": (P05, "active"),
    "d4-1": (P05, "active"),
    "d4-2": (P05, "active"),
    "t-1": (P05, "active"),
    "t-2": (P05, "active"),
    "x-p06": (P06, "active"),
    "me": (P07, "active"),
    "me2": (P07, "active"),
    "mu": ("p99", "active"),
    "mu2": ("", "active"),
}

EXPECTED_INTERACTIONS = {
    "i1": P05,
    "i2": P05,
    "i3": P05,
    "i4": P05,
    "i5": "p99",
    "i6": P06,
    "i7": P07,
}


def _add_extra_tables(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE conflicts (id TEXT PRIMARY KEY, project TEXT, note TEXT);
        INSERT INTO conflicts VALUES ('cf1', 'p05', 'a'), ('cf2', 'p99', 'b'),
                                     ('cf3', 'P05-INTERFEROMETER', 'c');
        CREATE TABLE mirror_regeneration_failures (project TEXT, detail TEXT);
        INSERT INTO mirror_regeneration_failures VALUES ('p05', 'x'), ('zzz', 'y');
        """
    )
    conn.commit()
    conn.close()


def build_table_db(path: Path) -> Path:
    build_db(path, PROJECTS, STATE, MEMORIES, INTERACTIONS)
    _add_extra_tables(path)
    return path


class Scenario:
    """The decision-table database, planned then applied once for the module."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = build_table_db(root / "atocore.db")
        self.registry = write_registry(root / "registry.json", DEFAULT_REGISTRY)
        self.reports = root / "reports"
        self.common = [
            "--db",
            self.db,
            "--registry",
            self.registry,
            "--report-dir",
            self.reports,
            *EXTRA_COLUMNS,
        ]
        before = content_digest(self.db)
        planned = run_cli("plan", *self.common, "--format", "json")
        assert planned.code == 0, planned.stderr
        assert content_digest(self.db) == before
        self.plan: dict[str, Any] = planned.json()
        applied = run_cli("apply", *self.common, "--yes")
        assert applied.code == 0, applied.stdout + applied.stderr
        self.apply_report = next(self.reports.glob("apply-*.json"))
        self.verify = run_cli("verify", *self.common)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return Scenario(tmp_path_factory.mktemp("table"))


def _outcomes(plan: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["outcome"] for r in plan["state_rows"]}


# -- the plan ---------------------------------------------------------------


def test_plan_counts(scenario: Scenario) -> None:
    counts = scenario.plan["counts"]
    assert counts["shadow_rows_deleted"] == 5  # s1, s2, s3, q2, e2
    assert counts["shadow_rows_renamed"] == 1  # q1
    assert counts["state_moved"] == 12
    assert counts["state_archived_duplicate"] == 7
    assert counts["state_archived_history"] == 7
    assert counts["state_unchanged"] == 2  # ea-c, nc-c
    assert counts["state_in_collision"] == 0
    assert counts["collisions"] == 0
    assert counts["memories_rekeyed"] == 14
    assert counts["memories_superseded"] == 4
    assert counts["interactions_rekeyed"] == 5
    assert counts["extra_rekeyed"] == 3  # cf1, cf3, and one mirror row
    assert scenario.plan["applicable"] is True
    assert scenario.plan["collisions"] == []
    assert scenario.plan["blockers"] == []


def test_plan_groups(scenario: Scenario) -> None:
    groups = {g["canonical_id"]: g for g in scenario.plan["groups"]}
    assert set(groups) == {P05, P06, P07}
    p05 = groups[P05]
    assert p05["canonical_row"] == "c" and p05["target_row_id"] == "c"
    assert {s["name"] for s in p05["shadows"]} == {"p05", "interferometer", "P05"}
    assert p05["renamed_shadow"] is None
    p06 = groups[P06]
    assert p06["canonical_row"] is None
    assert p06["renamed_shadow"] == "q1" and p06["target_row_id"] == "q1"
    p07 = groups[P07]
    assert p07["canonical_row"] == "e1"
    assert [s["name"] for s in p07["shadows"]] == ["ÉTALON"]


def test_plan_state_outcomes_follow_decision_table(scenario: Scenario) -> None:
    assert _outcomes(scenario.plan) == EXPECTED_OUTCOMES
    assert scenario.plan["state_rows_total"] == len(EXPECTED_OUTCOMES)


def test_plan_winners_named(scenario: Scenario) -> None:
    by_id = {r["id"]: r for r in scenario.plan["state_rows"]}
    assert by_id["ei-c"]["winner_id"] == "ei-2"
    assert by_id["ei-1"]["winner_id"] == "ei-2"
    assert by_id["nc-1"]["winner_id"] == "nc-c"
    assert by_id["nn-3"]["winner_id"] == "nn-1"
    assert by_id["nt-b"]["winner_id"] == "nt-a"
    assert by_id["at-b"]["winner_id"] == "at-a"
    assert by_id["r1"]["winner_id"] == "r2"
    for rid in ("ei-2", "eo-1", "nn-1", "nt-a", "at-a", "cs-2", "k1"):
        assert by_id[rid]["to_project_row"] == "c"
        assert by_id[rid]["from_project_row"] != "c"
    assert by_id["r2"]["to_project_row"] == "q1"
    assert by_id["et-1"]["to_project_row"] == "e1"
    assert by_id["st-one"]["to_project_row"] == "c"


def test_plan_names_never_list_unregistered_as_moving(scenario: Scenario) -> None:
    # names are reported per folded name, with the raw spellings as examples
    moving = {
        (n["table"], e)
        for n in scenario.plan["names"]
        if n["kind"] in ("alias", "variant")
        for e in n["examples"]
    }
    assert ("memories", "p99") not in moving
    assert ("interactions", "p99") not in moving
    assert ("conflicts", "p99") not in moving
    assert ("memories", "ÉTALON") in moving
    assert ("memories", "P07-ÉTALON") in moving
    assert ("interactions", " p05-interferometer ") in moving


# -- the database after apply ------------------------------------------------


def test_apply_state_rows_end_under_canonical(scenario: Scenario) -> None:
    got = {
        r[0]: (r[1], r[2], r[3])
        for r in rows(scenario.db, "SELECT id, project_id, value, status FROM project_state")
    }
    want = {k: v for k, v in EXPECTED_STATE.items() if v is not None}
    assert got == want


def test_apply_projects_rows(scenario: Scenario) -> None:
    got = dict(rows(scenario.db, "SELECT id, name FROM projects"))
    assert got == {"c": P05, "q1": P06, "e1": P07, "u": "p99-other"}


def test_apply_archives_every_loser_in_full(scenario: Scenario) -> None:
    report = json.loads(scenario.apply_report.read_text("utf-8"))
    companion = scenario.reports / report["companion"]
    with gzip.open(companion, "rt", encoding="utf-8") as fh:
        records = [json.loads(line) for line in fh]
    archived = {
        r["row"]["id"]: r
        for r in records
        if r["record"] == "state" and r["outcome"] in ("duplicate", "history")
    }
    losers = {k for k, v in EXPECTED_STATE.items() if v is None}
    assert set(archived) == losers
    original = {s[0]: s for s in STATE}
    for rid, rec in archived.items():
        row = rec["row"]
        assert (
            row["id"],
            row["project_id"],
            row["category"],
            row["key"],
            row["value"],
            row["status"],
            row["updated_at"],
        ) == original[rid]
        # every column, by name, not just the ones the planner reads
        assert {"source", "confidence", "created_at"} <= set(row)


def test_apply_memories(scenario: Scenario) -> None:
    got = {
        r[0]: (r[1], r[2]) for r in rows(scenario.db, "SELECT id, project, status FROM memories")
    }
    assert got == EXPECTED_MEMORIES


def test_apply_interactions(scenario: Scenario) -> None:
    got = dict(rows(scenario.db, "SELECT id, project FROM interactions"))
    assert got == EXPECTED_INTERACTIONS


def test_apply_extra_columns(scenario: Scenario) -> None:
    assert rows(scenario.db, "SELECT id, project, note FROM conflicts ORDER BY id") == [
        ("cf1", P05, "a"),
        ("cf2", "p99", "b"),
        ("cf3", P05, "c"),
    ]
    assert sorted(
        rows(scenario.db, "SELECT project, detail FROM mirror_regeneration_failures")
    ) == [
        (P05, "x"),
        ("zzz", "y"),
    ]


def test_apply_then_verify_passes(scenario: Scenario) -> None:
    assert scenario.verify.code == 0, scenario.verify.stdout + scenario.verify.stderr


def test_second_plan_is_empty(scenario: Scenario) -> None:
    again = run_cli("plan", *scenario.common, "--format", "json", "--detailed-exitcode")
    assert again.code == 0, again.stderr
    assert again.json()["empty"] is True


# --------------------------------------------------------------------------
# Smaller databases for the cases that block apply or change the group shape
# --------------------------------------------------------------------------


def _plan(env: Env, *extra: str) -> dict[str, Any]:
    res = env.run("plan", "--format", "json", *extra)
    assert res.code == 0, res.stderr
    return res.json()


def _state(db: Path) -> dict[str, tuple[str, str, str]]:
    return {
        r[0]: (r[1], r[2], r[3])
        for r in rows(db, "SELECT id, project_id, value, status FROM project_state")
    }


def test_collision_listed_with_both_values_and_apply_refuses(make_env: Any) -> None:
    env = make_env(
        projects=[("c", P05), ("s1", "p05"), ("s2", "interferometer")],
        state=[
            ("a-c", "c", "cfg", "coating", "silver", "active", "2025-01-01"),
            ("a-1", "s1", "cfg", "coating", "gold", "active", "2025-02-01"),
            ("a-2", "s2", "cfg", "coating", "silver", "active", "2025-03-01"),
            ("a-3", "s2", "cfg", "other", "x", "active", "2025-03-01"),
        ],
    )
    plan = _plan(env)
    assert plan["applicable"] is False
    assert len(plan["collisions"]) == 1
    col = plan["collisions"][0]
    assert (col["project"], col["category"], col["key"]) == (P05, "cfg", "coating")
    assert {(c["id"], c["value"]) for c in col["candidates"]} == {
        ("a-c", "silver"),
        ("a-1", "gold"),
        ("a-2", "silver"),
    }
    assert plan["counts"]["state_in_collision"] == 3
    assert any("coating" in b for b in plan["blockers"])
    before = content_digest(env.db)
    applied = env.run("apply", "--yes")
    assert applied.code == 3
    assert applied.stderr.startswith("Error:") and "collision" in applied.stderr
    assert content_digest(env.db) == before


def test_plan_counts_collisions(make_env: Any) -> None:
    env = make_env(
        projects=[("c", P05), ("s1", "p05")],
        state=[
            ("a-c", "c", "cfg", "k1", "one", "active", "2025-01-01"),
            ("a-1", "s1", "cfg", "k1", "two", "active", "2025-01-01"),
            ("b-c", "c", "cfg", "k2", "one", "active", "2025-01-01"),
            ("b-1", "s1", "cfg", "k2", "two", "active", "2025-01-01"),
        ],
    )
    plan = _plan(env)
    assert len(plan["collisions"]) == 2
    assert plan["counts"]["collisions"] == len(plan["collisions"])


@pytest.mark.parametrize(
    ("first", "second"),
    [("abc", "abc "), ("abc", "ABC"), ("é", "É")],
    ids=["trailing-space", "ascii-case", "unicode-case"],
)
def test_collision_values_compare_exactly(make_env: Any, first: str, second: str) -> None:
    env = make_env(
        projects=[("c", P05), ("s1", "p05")],
        state=[
            ("a-c", "c", "cfg", "k", first, "active", "2025-01-01"),
            ("a-1", "s1", "cfg", "k", second, "active", "2025-02-01"),
        ],
    )
    plan = _plan(env)
    assert [(c["category"], c["key"]) for c in plan["collisions"]] == [("cfg", "k")]


def test_collision_between_two_shadows_without_canonical_state(make_env: Any) -> None:
    env = make_env(
        projects=[("c", P05), ("s1", "p05"), ("s2", "P05")],
        state=[
            ("a-1", "s1", "cfg", "k", "one", "active", "2025-01-01"),
            ("a-2", "s2", "cfg", "k", "two", "active", "2025-02-01"),
        ],
    )
    plan = _plan(env)
    assert len(plan["collisions"]) == 1
    assert {c["id"] for c in plan["collisions"][0]["candidates"]} == {"a-1", "a-2"}


def test_inactive_rows_with_different_values_are_not_a_collision(make_env: Any) -> None:
    env = make_env(
        projects=[("c", P05), ("s1", "p05")],
        state=[
            ("a-c", "c", "cfg", "k", "one", "active", "2025-01-01"),
            ("a-1", "s1", "cfg", "k", "two", "superseded", "2025-09-01"),
        ],
    )
    plan = _plan(env)
    assert plan["collisions"] == []
    assert _outcomes(plan) == {"a-1": "history"}
    assert env.run("apply", "--yes").code == 0
    assert _state(env.db) == {"a-c": ("c", "one", "active")}


def test_case_variant_canonical_row_is_never_a_shadow(make_env: Any) -> None:
    env = make_env(
        projects=[("cv", "P05-Interferometer"), ("s1", "p05")],
        state=[
            ("a-c", "cv", "cfg", "k", "v", "active", "2025-01-01"),
            ("a-1", "s1", "cfg", "k2", "w", "active", "2025-01-01"),
        ],
    )
    plan = _plan(env)
    (group,) = plan["groups"]
    assert group["canonical_row"] == "cv"
    assert group["canonical_row_name"] == "P05-Interferometer"
    assert [s["id"] for s in group["shadows"]] == ["s1"]
    assert plan["counts"]["shadow_rows_deleted"] == 1
    assert plan["counts"]["shadow_rows_renamed"] == 0
    assert env.run("apply", "--yes").code == 0
    assert dict(rows(env.db, "SELECT id, name FROM projects")) == {"cv": "P05-Interferometer"}
    assert _state(env.db) == {"a-c": ("cv", "v", "active"), "a-1": ("cv", "w", "active")}


def test_case_variant_canonical_row_alone_is_not_a_change(make_env: Any) -> None:
    env = make_env(projects=[("cv", "P05-Interferometer")])
    res = env.run("plan", "--format", "json", "--detailed-exitcode")
    assert res.code == 0, res.stderr
    assert res.json()["groups"] == []


def test_two_canonical_rows_is_an_integrity_error(make_env: Any) -> None:
    env = make_env(
        projects=[("c1", P05), ("c2", "P05-Interferometer"), ("s1", "p05")],
        state=[("a-1", "s1", "cfg", "k", "v", "active", "2025-01-01")],
        memories=[("m1", "fact", "x", "p05", "active", "2025-01-01")],
    )
    res = env.run("plan", "--format", "json", "--detailed-exitcode")
    assert res.code == 3, res.stderr
    plan = res.json()
    assert plan["applicable"] is False
    assert len(plan["integrity_errors"]) == 1
    assert P05 in plan["integrity_errors"][0]
    before = content_digest(env.db)
    applied = env.run("apply", "--yes")
    assert applied.code == 3
    assert applied.stderr.startswith("Error:") and "canonical rows" in applied.stderr
    assert content_digest(env.db) == before


def test_two_canonical_rows_without_shadows_still_blocks(make_env: Any) -> None:
    env = make_env(projects=[("c1", P05), ("c2", "P05-Interferometer")])
    res = env.run("plan", "--format", "json", "--detailed-exitcode")
    assert res.code == 3, res.stderr
    assert res.json()["integrity_errors"]


def test_non_ascii_alias_found_by_unicode_fold(make_env: Any) -> None:
    # SQLite's lower('ÉTALON') is 'Étalon' and lower('P07-ÉTALON') is 'p07-Étalon':
    # ASCII-only folding would miss both.
    env = make_env(
        projects=[("e1", P07), ("e2", "ÉTALON")],
        state=[("s", "e2", "cfg", "k", "v", "active", "2025-01-01")],
        memories=[
            ("m1", "fact", "x", "ÉTALON", "active", "2025-01-01"),
            ("m2", "fact", "y", "P07-ÉTALON", "active", "2025-01-01"),
        ],
        interactions=[("i1", "éTALON")],
    )
    plan = _plan(env)
    (group,) = plan["groups"]
    assert group["canonical_id"] == P07
    assert [s["name"] for s in group["shadows"]] == ["ÉTALON"]
    assert plan["counts"]["memories_rekeyed"] == 2
    assert plan["counts"]["interactions_rekeyed"] == 1
    assert env.run("apply", "--yes").code == 0
    assert _state(env.db) == {"s": ("e1", "v", "active")}
    assert set(rows(env.db, "SELECT project FROM memories")) == {(P07,)}
    assert rows(env.db, "SELECT project FROM interactions") == [(P07,)]
    assert dict(rows(env.db, "SELECT id, name FROM projects")) == {"e1": P07}


def test_group_without_canonical_row_renames_lowest_shadow(make_env: Any) -> None:
    env = make_env(
        projects=[("zz", "p06"), ("aa", "polisher"), ("mm", "P06")],
        state=[
            ("s-z", "zz", "cfg", "k", "new", "active", "2025-03-01"),
            ("s-a", "aa", "cfg", "k", "old", "superseded", "2025-01-01"),
            ("s-m", "mm", "cfg", "j", "j", "invalid", "2025-01-01"),
        ],
    )
    plan = _plan(env)
    (group,) = plan["groups"]
    assert group["renamed_shadow"] == "aa" and group["target_row_id"] == "aa"
    assert _outcomes(plan) == {"s-z": "moves", "s-a": "history", "s-m": "moves"}
    assert env.run("apply", "--yes").code == 0
    assert dict(rows(env.db, "SELECT id, name FROM projects")) == {"aa": P06}
    assert _state(env.db) == {
        "s-z": ("aa", "new", "active"),
        "s-m": ("aa", "j", "invalid"),
    }


def test_memory_duplicates_all_canonical_before_left_alone(make_env: Any) -> None:
    env = make_env(
        projects=[("c", P05)],
        memories=[
            ("m1", "fact", "same", P05, "active", "2025-01-01"),
            ("m2", "fact", "same", P05, "active", "2025-02-01"),
            ("m3", "fact", "other", "p05", "active", "2025-03-01"),
        ],
    )
    plan = _plan(env)
    assert plan["counts"]["memories_rekeyed"] == 1
    assert plan["counts"]["memories_superseded"] == 0
    assert env.run("apply", "--yes").code == 0
    assert set(rows(env.db, "SELECT id, project, status FROM memories")) == {
        ("m1", P05, "active"),
        ("m2", P05, "active"),
        ("m3", P05, "active"),
    }


def test_memory_dedupe_includes_canonical_twins_when_one_is_rekeyed(make_env: Any) -> None:
    env = make_env(
        projects=[("c", P05)],
        memories=[
            ("m1", "fact", "same", P05, "active", "2025-01-01"),
            ("m2", "fact", "same", P05, "active", "2025-02-01"),
            ("m3", "fact", "same", "P05", "active", "2025-01-15"),
            ("m4", "fact", "same", "p05", "superseded", "2025-12-01"),
        ],
    )
    plan = _plan(env)
    assert plan["counts"]["memories_superseded"] == 2
    assert env.run("apply", "--yes").code == 0
    assert dict(rows(env.db, "SELECT id, status FROM memories")) == {
        "m1": "superseded",
        "m2": "active",
        "m3": "superseded",
        "m4": "superseded",
    }


def test_extra_column_untouched_unless_named(make_env: Any) -> None:
    env = make_env(projects=[("c", P05)], memories=[("m", "fact", "x", "p05", "active", "t")])
    _add_extra_tables(env.db)
    plan = _plan(env)
    assert plan["counts"]["extra_rekeyed"] == 0
    assert "conflicts.project" not in plan["targets"]
    assert env.run("apply", "--yes").code == 0
    assert rows(env.db, "SELECT project FROM conflicts ORDER BY id") == [
        ("p05",),
        ("p99",),
        ("P05-INTERFEROMETER",),
    ]


def test_missing_default_tables_reported_not_fatal(make_env: Any) -> None:
    env = make_env(projects=[("c", P05), ("s", "p05")], memories=[])
    conn = sqlite3.connect(env.db)
    conn.execute("DROP TABLE interactions")
    conn.commit()
    conn.close()
    plan = _plan(env)
    assert {"target": "interactions.project", "reason": "no such table"} in plan["missing_targets"]
    assert plan["targets"] == ["memories.project"]
    assert env.run("apply", "--yes").code == 0
    assert dict(rows(env.db, "SELECT id, name FROM projects")) == {"c": P05}


def test_missing_default_column_reported_not_fatal(make_env: Any) -> None:
    env = make_env(projects=[("c", P05)])
    conn = sqlite3.connect(env.db)
    conn.executescript(
        "DROP TABLE interactions; CREATE TABLE interactions (id TEXT PRIMARY KEY, prompt TEXT);"
    )
    conn.close()
    plan = _plan(env)
    assert {"target": "interactions.project", "reason": "no such column"} in plan["missing_targets"]


@pytest.mark.parametrize("spec", ["conflicts.project", "memories.no_such_column"])
def test_missing_operator_named_column_is_bad_input(make_env: Any, spec: str) -> None:
    env = make_env(projects=[("c", P05), ("s", "p05")])
    before = content_digest(env.db)
    for command in ("inspect", "plan", "apply"):
        res = env.run(command, "--column", spec, *(["--yes"] if command == "apply" else []))
        assert res.code == 2, (command, res.stderr)
        assert res.stderr.startswith("Error:") and spec in res.stderr
        assert "Traceback" not in res.stderr
    assert content_digest(env.db) == before


def test_unregistered_names_never_touched(make_env: Any) -> None:
    env = make_env(
        projects=[("c", P05), ("s", "p05"), ("u1", "p99"), ("u2", "P05 interferometer")],
        state=[
            ("a", "u1", "cfg", "k", "v", "active", "2025-01-01"),
            ("b", "u2", "cfg", "k", "v", "active", "2025-01-01"),
        ],
        memories=[
            ("m1", "fact", "x", "p99", "active", "2025-01-01"),
            ("m2", "fact", "x", "p05x", "active", "2025-01-01"),
            ("m3", "fact", "x", "p05-interferometer-old", "active", "2025-01-01"),
            ("m4", "fact", "x", None, "active", "2025-01-01"),
            ("m5", "fact", "x", "p05 interferometer", "active", "2025-01-01"),
        ],
        interactions=[("i1", "unknown"), ("i2", "p0 5")],
    )
    before = {
        t: rows(env.db, f"SELECT * FROM {t} WHERE id NOT IN ('c', 's') ORDER BY id")
        for t in ("projects", "project_state", "memories", "interactions")
    }
    assert env.run("apply", "--yes").code == 0
    after = {
        t: rows(env.db, f"SELECT * FROM {t} WHERE id NOT IN ('c', 's') ORDER BY id")
        for t in ("projects", "project_state", "memories", "interactions")
    }
    assert after == before
