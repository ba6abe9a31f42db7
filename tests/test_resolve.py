"""resolve: --keep, --pick, the resolutions file, and stale decisions (SPEC §5)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from conftest import Env, content_digest, file_digest, rows

# cfg/mirror: the canonical row is the newest, two shadows disagree with it.
# cfg/lens: a second collision, canonical vs one shadow.
# cfg/plain: no collision, a plain rekey.
PROJECTS = [("pc", "p05-interferometer"), ("ps1", "p05"), ("ps2", "interferometer")]
STATE = [
    ("m-canon", "pc", "cfg", "mirror", "silver", "active", "2025-05-01"),
    ("m-gold", "ps1", "cfg", "mirror", "gold", "active", "2025-03-01"),
    ("m-copper", "ps2", "cfg", "mirror", "copper", "active", "2025-02-01"),
    ("l-canon", "pc", "cfg", "lens", "a", "active", "2025-01-01"),
    ("l-shadow", "ps1", "cfg", "lens", "b", "active", "2025-04-01"),
    ("plain", "ps2", "cfg", "plain", "p", "active", "2025-01-01"),
]
VALUES = {r[0]: r[4] for r in STATE}


def collided(make_env: Any) -> Env:
    return make_env(projects=PROJECTS, state=STATE)  # type: ignore[no-any-return]


def resolve(env: Env, *extra: str | Path) -> dict[str, Any]:
    out = env.root / "res.json"
    result = env.run("resolve", "--out", out, *extra)
    assert result.code == 0, result.stderr
    return json.loads(out.read_text("utf-8"))  # type: ignore[no-any-return]


def winners(doc: dict[str, Any]) -> dict[str, str]:
    return {f"{d['category']}/{d['key']}": d["winner_id"] for d in doc["decisions"]}


def canonical_values(env: Env) -> dict[str, tuple[str, str]]:
    """key -> (row id, value) of the state under the canonical row."""
    found = rows(
        env.db,
        "SELECT ps.key, ps.id, ps.value FROM project_state ps JOIN projects p"
        " ON p.id = ps.project_id WHERE p.name = 'p05-interferometer'",
    )
    return {k: (i, v) for k, i, v in found}


def test_keep_canonical(make_env: Any) -> None:
    env = collided(make_env)
    doc = resolve(env, "--keep", "canonical")
    assert winners(doc) == {"cfg/mirror": "m-canon", "cfg/lens": "l-canon"}
    assert {d["rule"] for d in doc["decisions"]} == {"canonical"}


def test_keep_shadow_takes_the_newest_shadow(make_env: Any) -> None:
    env = collided(make_env)
    doc = resolve(env, "--keep", "shadow")
    assert winners(doc) == {"cfg/mirror": "m-gold", "cfg/lens": "l-shadow"}


def test_keep_newest(make_env: Any) -> None:
    env = collided(make_env)
    doc = resolve(env, "--keep", "newest")
    assert winners(doc) == {"cfg/mirror": "m-canon", "cfg/lens": "l-shadow"}


def test_pick_overrides_keep_for_its_collision(make_env: Any) -> None:
    env = collided(make_env)
    doc = resolve(env, "--keep", "canonical", "--pick", "cfg/mirror=m-copper")
    assert winners(doc) == {"cfg/mirror": "m-copper", "cfg/lens": "l-canon"}
    rules = {f"{d['category']}/{d['key']}": d["rule"] for d in doc["decisions"]}
    assert rules == {"cfg/mirror": "pick", "cfg/lens": "canonical"}


def test_repeated_picks_decide_every_collision(make_env: Any) -> None:
    env = collided(make_env)
    doc = resolve(env, "--pick", "cfg/mirror=m-gold", "--pick", "cfg/lens=l-canon")
    assert winners(doc) == {"cfg/mirror": "m-gold", "cfg/lens": "l-canon"}
    assert doc["undecided"] == []


def test_a_pick_alone_leaves_other_collisions_undecided(make_env: Any) -> None:
    env = collided(make_env)
    doc = resolve(env, "--pick", "cfg/mirror=m-gold")
    assert winners(doc) == {"cfg/mirror": "m-gold"}
    assert [(c["category"], c["key"]) for c in doc["undecided"]] == [("cfg", "lens")]
    res = env.root / "res.json"
    before = content_digest(env.db)
    assert env.run("plan", "--resolutions", res, "--detailed-exitcode").code == 3
    refused = env.run("apply", "--resolutions", res, "--yes")
    assert refused.code == 3 and "cfg/lens" in refused.stderr
    assert content_digest(env.db) == before


def test_unknown_pick_is_bad_input(make_env: Any) -> None:
    env = collided(make_env)
    for pick in ("cfg/mirror=no-such-row", "cfg/nokey=m-gold", "cfg/mirror=plain", "garbage"):
        out = env.root / "res-bad.json"
        result = env.run("resolve", "--pick", pick, "--out", out)
        assert result.code == 2, (pick, result.code, result.stderr)
        assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1
        assert not out.exists()


def test_resolutions_file_names_rows_and_value_hashes(make_env: Any) -> None:
    env = collided(make_env)
    doc = resolve(env, "--keep", "shadow")
    assert doc["kind"] == "resolve"
    by_ref = {f"{d['category']}/{d['key']}": d for d in doc["decisions"]}
    mirror = by_ref["cfg/mirror"]
    assert mirror["project"] == "p05-interferometer"
    cands = {c["id"]: c for c in mirror["candidates"]}
    assert set(cands) == {"m-canon", "m-gold", "m-copper"}
    for row_id, cand in cands.items():
        assert cand["value_sha256"] == hashlib.sha256(VALUES[row_id].encode()).hexdigest()
    assert cands["m-canon"]["canonical"] is True
    assert cands["m-gold"]["canonical"] is False
    assert {c["id"] for c in by_ref["cfg/lens"]["candidates"]} == {"l-canon", "l-shadow"}


def test_resolve_writes_its_file_to_the_report_dir_by_default(make_env: Any) -> None:
    env = collided(make_env)
    before, mtime = file_digest(env.db), env.db.stat().st_mtime_ns
    assert env.run("resolve", "--keep", "canonical").code == 0
    [written] = list(env.reports.glob("resolve-*.json"))
    assert len(json.loads(written.read_text("utf-8"))["decisions"]) == 2
    assert (file_digest(env.db), env.db.stat().st_mtime_ns) == (before, mtime)
    assert not Path(str(env.db) + "-journal").exists()


def test_newest_ties_go_to_the_canonical_row_then_the_lowest_id(make_env: Any) -> None:
    env = make_env(
        projects=PROJECTS,
        state=[
            ("z-canon", "pc", "cfg", "t1", "a", "active", "2025-01-01"),
            ("a-shadow", "ps1", "cfg", "t1", "b", "active", "2025-01-01"),
            ("y-shadow", "ps1", "cfg", "t2", "a", "active", "2025-01-01"),
            ("x-shadow", "ps2", "cfg", "t2", "b", "active", "2025-01-01"),
        ],
    )
    doc = resolve(env, "--keep", "newest")
    assert winners(doc) == {"cfg/t1": "z-canon", "cfg/t2": "x-shadow"}
    shadow = env.root / "res-shadow.json"
    assert env.run("resolve", "--keep", "shadow", "--out", shadow).code == 0
    assert winners(json.loads(shadow.read_text("utf-8")))["cfg/t2"] == "x-shadow"


def test_plan_with_resolutions_shows_no_unresolved_collision(make_env: Any) -> None:
    env = collided(make_env)
    res = env.root / "res.json"
    resolve(env, "--keep", "shadow")
    unresolved = env.run("plan", "--format", "json")
    assert unresolved.code == 0
    assert unresolved.json()["applicable"] is False
    planned = env.run("plan", "--resolutions", res, "--format", "json")
    assert planned.code == 0, planned.stderr
    doc = planned.json()
    assert doc["applicable"] is True
    assert doc["blockers"] == []
    assert doc["stale_resolutions"] == []
    assert {(c["key"], c["resolved_winner"]) for c in doc["collisions"]} == {
        ("mirror", "m-gold"),
        ("lens", "l-shadow"),
    }
    assert env.run("plan", "--resolutions", res, "--detailed-exitcode").code == 4


def test_apply_with_resolutions_puts_the_chosen_value_under_the_canonical_row(
    make_env: Any,
) -> None:
    env = collided(make_env)
    res = env.root / "res.json"
    resolve(env, "--keep", "canonical", "--pick", "cfg/mirror=m-copper")
    result = env.run("apply", "--resolutions", res, "--yes")
    assert result.code == 0, result.stderr
    assert canonical_values(env) == {
        "mirror": ("m-copper", "copper"),
        "lens": ("l-canon", "a"),
        "plain": ("plain", "p"),
    }
    assert rows(env.db, "SELECT id, name FROM projects") == [("pc", "p05-interferometer")]
    # the losers are history, archived, gone from the table
    assert sorted(r[0] for r in rows(env.db, "SELECT id FROM project_state")) == [
        "l-canon",
        "m-copper",
        "plain",
    ]
    backup = next(env.reports.glob("backup-*.db"))
    report = next(env.reports.glob("apply-*.json"))
    verified = env.run("verify", "--report", report, "--backup", backup)
    assert verified.code == 0, verified.stdout


def test_keep_shadow_applied(make_env: Any) -> None:
    env = collided(make_env)
    res = env.root / "res.json"
    resolve(env, "--keep", "shadow")
    assert env.run("apply", "--resolutions", res, "--yes").code == 0
    assert canonical_values(env)["mirror"] == ("m-gold", "gold")
    assert canonical_values(env)["lens"] == ("l-shadow", "b")


def _update(db: Path, sql: str) -> None:
    conn = sqlite3.connect(db)
    conn.execute(sql)
    conn.commit()
    conn.close()


def test_value_changed_after_resolve_is_stale(make_env: Any) -> None:
    env = collided(make_env)
    res = env.root / "res.json"
    resolve(env, "--keep", "canonical")
    _update(env.db, "UPDATE project_state SET value = 'gold leaf' WHERE id = 'm-gold'")
    before = content_digest(env.db)
    planned = env.run("plan", "--resolutions", res, "--format", "json")
    assert planned.json()["stale_resolutions"], planned.stdout
    result = env.run("apply", "--resolutions", res, "--yes")
    assert result.code == 3, result.stderr
    assert "stale" in result.stderr
    assert content_digest(env.db) == before
    assert list(env.reports.glob("backup-*.db")) == []


def test_winner_value_changed_after_resolve_is_stale(make_env: Any) -> None:
    env = collided(make_env)
    res = env.root / "res.json"
    resolve(env, "--keep", "canonical")
    _update(env.db, "UPDATE project_state SET value = 'tarnished' WHERE id = 'm-canon'")
    before = content_digest(env.db)
    result = env.run("apply", "--resolutions", res, "--yes")
    assert result.code == 3 and "stale" in result.stderr, result.stderr
    assert content_digest(env.db) == before


def test_collision_that_disappeared_is_stale(make_env: Any) -> None:
    env = collided(make_env)
    res = env.root / "res.json"
    resolve(env, "--keep", "canonical")
    # the lens shadow now agrees with the canonical row: no collision at cfg/lens any more
    _update(env.db, "UPDATE project_state SET value = 'a' WHERE id = 'l-shadow'")
    before = content_digest(env.db)
    result = env.run("apply", "--resolutions", res, "--yes")
    assert result.code == 3, result.stderr
    assert "stale" in result.stderr and "cfg/lens" in result.stderr
    assert content_digest(env.db) == before
    assert list(env.reports.glob("backup-*.db")) == []


def test_a_new_candidate_row_makes_the_decision_stale(make_env: Any) -> None:
    env = collided(make_env)
    res = env.root / "res.json"
    resolve(env, "--keep", "canonical")
    conn = sqlite3.connect(env.db)
    conn.execute("INSERT INTO projects (id, name) VALUES ('ps3', 'P05')")
    conn.execute(
        "INSERT INTO project_state (id, project_id, category, key, value, status, updated_at)"
        " VALUES ('m-tin', 'ps3', 'cfg', 'mirror', 'tin', 'active', '2025-06-01')"
    )
    conn.commit()
    conn.close()
    before = content_digest(env.db)
    result = env.run("apply", "--resolutions", res, "--yes")
    assert result.code == 3 and "stale" in result.stderr, result.stderr
    assert content_digest(env.db) == before
