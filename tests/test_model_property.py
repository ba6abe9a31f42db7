"""Model-based property test: random legacy databases through the real CLI.

Each example builds a small legacy database (several projects, several shadows
per project, random casing, white space and Unicode in names and keys, every
status, duplicates, unregistered names, sometimes extra columns and an extra
table), runs ``apply --yes`` through the CLI, and compares the outcome with
the reference model in ``tests/model.py``: refusal exactly when the model
says so (database untouched), otherwise the same final rows, the same
archive, a passing ``verify --backup`` and an idempotent second apply.

``make soak`` runs this with HYPOTHESIS_PROFILE=soak (2000 examples).
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from atocore_identity.companion import StateRecord, read_records
from conftest import build_db, content_digest, run_cli, write_registry
from model import expected, load

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "soak", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

pytestmark = pytest.mark.property

# Registered projects: ids and aliases chosen so that none folds onto another,
# with the Unicode cases where lower() is not ASCII folding: É, ß (upper() is
# "SS", which folds to "ss", a different name), İ (lower() adds a combining
# dot), final sigma, and an alias spelled like its own id.
POOL: list[dict[str, Any]] = [
    {"id": "p04-gigabit", "aliases": ["p04", "gigabit"]},
    {"id": "p05-interferometer", "aliases": ["p05", "interferometer", "Interféromètre"]},
    {"id": "p07-étalon", "aliases": ["p07", "Étalon"]},
    {"id": "straße", "aliases": ["STRASSE-alt", "rue"]},
    {"id": "İzmir-lab", "aliases": ["izm"]},
    {"id": "ΟΔΟΣ", "aliases": ["odos", "hodos", "οδος"]},
]
UNREGISTERED = ["p08", "misc", "p05x", "p05 interferometer", "", "zzz\u200b"]
PADS = ["", "", "", " ", "  ", "\t", "\n", "\u00a0", "\u2003"]
STATE_STATUSES = ["active", "active", "superseded", "invalid"]
MEMORY_STATUSES = ["active", "active", "candidate", "superseded", "invalid"]
TIMES = [None, "2025-01-01 00:00:00", "2025-01-02 00:00:00", "2025-01-02 00:00:00"]
CATEGORIES = ["status", "status", "Status", "décision", "x'y"]
KEYS = ["k1", "k1", "k1", "K1", "k1 ", "clé", "a\nb"]
VALUES = ["v1", "v1", "v1", "v2", "V1"]
ROW_IDS = ["r1", "r10", "r2", "R3", "é4", "r05", "Z6", "r7", "r8", "r9", "r11", "r12"]


@st.composite
def spelling(draw: st.DrawFn, base: str) -> str:
    """A legacy spelling of a name: random casing per character and padding."""
    chars = [draw(st.sampled_from([c, c.upper(), c.lower()])) for c in base]
    return draw(st.sampled_from(PADS)) + "".join(chars) + draw(st.sampled_from(PADS))


@dataclass
class Scenario:
    registry: list[dict[str, Any]]
    projects: list[tuple[str, str]]
    state: list[tuple[Any, ...]]
    memories: list[tuple[Any, ...]]
    interactions: list[tuple[Any, ...]]
    extra_columns: bool
    extra_table: bool


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    registry = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique_by=id))
    bases: list[str] = []
    for p in registry:
        bases += [p["id"], *p["aliases"]]
    any_name = st.one_of(
        st.sampled_from(bases).flatmap(spelling), st.sampled_from(UNREGISTERED + bases)
    )

    # projects: per registered project 0-2 canonical spellings and 0-3 shadows
    names: list[str] = []
    doubled = draw(st.sampled_from([*[None] * 15, *registry]))
    for p in registry:
        # two canonical spellings of one project (an integrity error) now and then
        n_canon = 2 if p is doubled else draw(st.sampled_from([0, 1, 1]))
        names += [draw(spelling(p["id"])) for _ in range(n_canon)]
        names += [
            draw(st.sampled_from(p["aliases"]).flatmap(spelling))
            for _ in range(draw(st.integers(0, 3)))
        ]
    names += draw(st.lists(st.sampled_from(UNREGISTERED), max_size=2))
    names = list(dict.fromkeys(names))  # projects.name is UNIQUE
    ids = draw(st.permutations(ROW_IDS))[: len(names)]
    while len(ids) < len(names):
        ids.append(f"x{len(ids)}")
    projects = list(zip(ids, names, strict=True))

    state: list[tuple[Any, ...]] = []
    seen: set[tuple[str, str, str]] = set()
    for n, (pid, _) in enumerate(projects):
        for m in range(draw(st.integers(0, 4))):
            cat, key = draw(st.sampled_from(CATEGORIES)), draw(st.sampled_from(KEYS))
            if (pid, cat, key) in seen:
                continue
            seen.add((pid, cat, key))
            sid = draw(st.sampled_from(["s", "S", "ş"])) + f"{(n * 7 + m * 3) % 50:02d}{n}{m}"
            state.append(
                (
                    sid,
                    pid,
                    cat,
                    key,
                    draw(st.sampled_from(VALUES)),
                    draw(st.sampled_from(STATE_STATUSES)),
                    draw(st.sampled_from(TIMES)),
                )
            )

    # memories crowd around one project so that rekeyed duplicates are common
    focus = draw(st.sampled_from(registry))
    focus_names = [focus["id"], *focus["aliases"]]
    memory_project = st.one_of(
        st.sampled_from(focus_names),
        st.sampled_from(focus_names).flatmap(spelling),
        any_name,
        st.none(),
    )
    memories = [
        (
            f"m{i:02d}",
            draw(st.sampled_from(["fact", "fact", "preference"])),
            draw(st.sampled_from(["c1", "c1", "Ç3"])),
            draw(memory_project),
            draw(st.sampled_from(MEMORY_STATUSES)),
            draw(st.sampled_from(TIMES)),
        )
        for i in range(draw(st.integers(2, 12)))
    ]
    interactions = [(f"i{i}", draw(any_name)) for i in range(draw(st.integers(0, 5)))]
    return Scenario(
        registry=registry,
        projects=projects,
        state=state,
        memories=memories,
        interactions=interactions,
        extra_columns=draw(st.booleans()),
        extra_table=draw(st.booleans()),
    )


def build(root: Path, sc: Scenario) -> tuple[Path, Path]:
    db = build_db(
        root / "atocore.db",
        projects=sc.projects,
        state=sc.state,
        memories=sc.memories,
        interactions=sc.interactions,
    )
    conn = sqlite3.connect(db)
    if sc.extra_columns:
        conn.execute("ALTER TABLE projects ADD COLUMN owner TEXT DEFAULT 'ops'")
        conn.execute("UPDATE projects SET owner = 'team-' || id WHERE rowid % 2 = 0")
        conn.execute("ALTER TABLE memories ADD COLUMN tags TEXT")
        conn.execute("UPDATE memories SET tags = 'tag:' || project")
    if sc.extra_table:
        # a table the migration does not own, keyed by project names: untouched
        conn.execute("CREATE TABLE notes (id TEXT PRIMARY KEY, project TEXT)")
        conn.executemany(
            "INSERT INTO notes VALUES (?, ?)", [(f"n{p[0]}", p[1]) for p in sc.projects]
        )
    conn.commit()
    conn.close()
    return db, write_registry(root / "registry.json", sc.registry)


def archive_of(report_dir: Path) -> dict[str, dict[str, Any]]:
    """The archived state rows of the one successful apply in report_dir."""
    applied = []
    for path in report_dir.glob("apply-*.json"):
        doc = json.loads(path.read_text("utf-8"))
        if doc["status"] == "applied":
            applied.append(doc)
    assert len(applied) == 1, applied
    out: dict[str, dict[str, Any]] = {}
    for rec in read_records(report_dir / applied[0]["companion"]):
        if isinstance(rec, StateRecord) and rec.archived:
            out[rec.row["id"]] = rec.row
    return out


@settings(settings.get_profile(PROFILE))
@given(sc=scenarios())
def test_apply_matches_the_model(sc: Scenario) -> None:
    with tempfile.TemporaryDirectory(prefix="atocore-prop-") as tmp:
        root = Path(tmp)
        db, reg = build(root, sc)
        reports = root / "reports"
        common = ["--db", db, "--registry", reg, "--report-dir", reports]
        model = expected(db, sc.registry)
        before = content_digest(db)
        event(f"outcome: {model.refusal or 'applied'}")
        if model.refusal is None:
            new_names = {r["name"] for r in model.tables["projects"].values()}
            old_names = {r["name"] for r in model.before["projects"].values()}
            event(f"shadow renamed: {bool(new_names - old_names)}")
            event(f"archive: {'some' if model.archive else 'none'}")
            superseded = sum(
                r["status"] != model.before["memories"][k]["status"]
                for k, r in model.tables["memories"].items()
            )
            event(f"memories superseded: {'some' if superseded else 'none'}")

        res = run_cli("apply", *common, "--yes")

        if model.refusal is not None:
            assert res.code == 3, (model.refusal, model.reasons, res.stdout, res.stderr)
            want = "nothing to migrate" if model.refusal == "empty" else "apply refused"
            assert want in res.stderr, (model.refusal, res.stderr)
            assert res.stderr.startswith("Error: ")
            assert content_digest(db) == before
            return

        assert res.code == 0, (model.reasons, res.stdout, res.stderr)
        assert load(db) == model.tables

        archive = archive_of(reports)
        assert set(archive) == model.archive
        for sid, row in archive.items():  # archived in full, as they were
            assert row == model.before["project_state"][sid]

        backup = next(reports.glob("backup-*.db"))
        # notes.project holds project names the migration does not own: acknowledged
        ignore = ["--ignore-column", "notes.project"] if sc.extra_table else []
        verified = run_cli("verify", *common, *ignore, "--backup", backup)
        assert verified.code == 0, verified.stdout + verified.stderr

        migrated = content_digest(db)
        again = run_cli("apply", *common, "--yes")
        assert again.code == 3 and "nothing to migrate" in again.stderr, again.stderr
        assert content_digest(db) == migrated


def test_model_follows_the_decision_table(tmp_path: Path) -> None:
    """The model itself, on a hand-computed case per row of SPEC §3's table."""
    t1, t2 = "2025-01-01 00:00:00", "2025-02-01 00:00:00"
    db = build_db(
        tmp_path / "a.db",
        projects=[("c", "P05-Interferometer"), ("s1", "p05"), ("s2", " Interferometer")],
        state=[
            ("a1", "s1", "k", "one", "x", "active", t1),  # one row: plain rekey
            ("b1", "c", "k", "eq", "x", "active", t1),  # equal actives: canonical's own
            ("b2", "s1", "k", "eq", "x", "active", t2),
            ("c1", "c", "k", "inactive-own", "x", "superseded", t2),  # active shadow wins
            ("c2", "s2", "k", "inactive-own", "x", "active", t1),
            ("d1", "c", "k", "none-active", "y", "invalid", t1),  # no active: canonical's own
            ("d2", "s1", "k", "none-active", "z", "superseded", t2),
            ("e1", "s1", "k", "newest", "x", "active", None),  # NULL is oldest
            ("e2", "s2", "k", "newest", "x", "active", t1),
        ],
        memories=[
            ("m1", "fact", "same", "p05-interferometer", "active", t1),
            ("m2", "fact", "same", "P05", "active", t1),  # tie: the canonical one stays
            ("m3", "fact", "same", "interferometer", "candidate", t2),
        ],
        interactions=[("i1", "p05 "), ("i2", "p05-interferometer "), ("i3", "p08")],
    )
    model = expected(db, [{"id": "p05-interferometer", "aliases": ["p05", "interferometer"]}])
    assert model.refusal is None
    state = model.tables["project_state"]
    assert {k: r["project_id"] for k, r in state.items()} == {
        "a1": "c",
        "b1": "c",
        "c2": "c",
        "d1": "c",
        "e2": "c",
    }
    assert model.archive == {"b2", "c1", "d2", "e1"}
    assert set(model.tables["projects"]) == {"c"}
    assert model.tables["projects"]["c"]["name"] == "P05-Interferometer"  # never rewritten
    memories = model.tables["memories"]
    assert [memories[m]["status"] for m in ("m1", "m2", "m3")] == [
        "active",
        "superseded",
        "candidate",
    ]
    assert {m["project"] for m in memories.values()} == {"p05-interferometer"}
    assert [model.tables["interactions"][i]["project"] for i in ("i1", "i2", "i3")] == [
        "p05-interferometer",
        "p05-interferometer",
        "p08",
    ]


def test_model_renames_the_lowest_shadow_and_refuses_what_it_must(tmp_path: Path) -> None:
    registry = [{"id": "p06-polisher", "aliases": ["p06", "polisher"]}]
    db = build_db(tmp_path / "a.db", projects=[("z9", "p06"), ("b2", "POLISHER"), ("é", "p06 ")])
    model = expected(db, registry)
    assert model.refusal is None
    assert {k: r["name"] for k, r in model.tables["projects"].items()} == {"b2": "p06-polisher"}

    twice = build_db(tmp_path / "b.db", projects=[("a", "p06-polisher"), ("b", "P06-Polisher")])
    assert expected(twice, registry).refusal == "integrity"
    clash = build_db(
        tmp_path / "c.db",
        projects=[("a", "p06-polisher"), ("b", "p06")],
        state=[
            ("x", "a", "k", "k", "1", "active", None),
            ("y", "b", "k", "k", "2", "active", None),
        ],
    )
    assert expected(clash, registry).refusal == "collision"
    clean = build_db(tmp_path / "d.db", projects=[("a", "p06-polisher"), ("b", "other")])
    assert expected(clean, registry).refusal == "empty"
