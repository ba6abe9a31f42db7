"""Registry validation (SPEC §2): every bad registry is one clear error, exit 2,
naming the file, the project and the offending value, before anything runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from atocore_identity.errors import RegistryError
from atocore_identity.registry import fold, load_registry
from conftest import build_db, content_digest, run_cli


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return build_db(
        tmp_path / "atocore.db",
        projects=[("c", "p05-interferometer"), ("s", "p05")],
        memories=[("m", "fact", "x", "p05", "active", "2025-01-01")],
    )


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    return path


def _assert_bad(db: Path, registry: Path, *needles: str) -> str:
    """Every read command and apply reject the registry the same way."""
    before = content_digest(db)
    reports = db.parent / "reports"
    message = ""
    for command in ("inspect", "plan", "resolve", "apply", "verify"):
        extra = ["--yes"] if command == "apply" else []
        res = run_cli(command, "--db", db, "--registry", registry, "--report-dir", reports, *extra)
        assert res.code == 2, (command, res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1, (command, res.stderr)
        assert lines[0].startswith("Error:"), res.stderr
        assert "Traceback" not in res.stderr
        assert res.stdout == ""
        assert str(registry) in lines[0], lines[0]
        for needle in needles:
            assert needle in lines[0], (needle, lines[0])
        message = lines[0]
    assert content_digest(db) == before
    return message


def test_missing_registry_file(db: Path, tmp_path: Path) -> None:
    msg = _assert_bad(db, tmp_path / "nope.json", "does not exist")
    assert "--registry" in msg or "ATOCORE_PROJECT_REGISTRY_PATH" in msg


def test_unreadable_registry_path(db: Path, tmp_path: Path) -> None:
    # Works as root too: a path through a regular file cannot be opened.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _assert_bad(db, blocker / "registry.json")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_unreadable_registry_permissions(db: Path, tmp_path: Path) -> None:
    reg = _write(tmp_path / "registry.json", {"projects": [{"id": "a", "aliases": []}]})
    reg.chmod(0)
    try:
        _assert_bad(db, reg, "cannot be read")
    finally:
        reg.chmod(0o644)


def test_registry_not_utf8(db: Path, tmp_path: Path) -> None:
    reg = tmp_path / "registry.json"
    reg.write_bytes(b'{"projects": [{"id": "\xff"}]}')
    _assert_bad(db, reg, "UTF-8")


@pytest.mark.parametrize("text", ["", "{", "not json", '{"projects": [}'])
def test_registry_not_json(db: Path, tmp_path: Path, text: str) -> None:
    reg = tmp_path / "registry.json"
    reg.write_text(text, "utf-8")
    _assert_bad(db, reg, "JSON")


@pytest.mark.parametrize("doc", [[], {"projects": {}}, {"project": []}, "x", {"projects": None}])
def test_registry_wrong_shape(db: Path, tmp_path: Path, doc: Any) -> None:
    _assert_bad(db, _write(tmp_path / "registry.json", doc), "projects")


def test_empty_projects_list(db: Path, tmp_path: Path) -> None:
    msg = _assert_bad(db, _write(tmp_path / "registry.json", {"projects": []}), "empty")
    assert "projects" in msg


@pytest.mark.parametrize("bad", [None, 5, "", "   ", ["a"], {"x": 1}])
def test_bad_project_id(db: Path, tmp_path: Path, bad: Any) -> None:
    doc = {"projects": [{"id": "p05-interferometer", "aliases": ["p05"]}, {"id": bad}]}
    msg = _assert_bad(db, _write(tmp_path / "registry.json", doc), "id")
    assert "#2" in msg  # names the project by its position: it has no usable id
    assert json.dumps(bad) in msg


def test_missing_project_id(db: Path, tmp_path: Path) -> None:
    doc = {"projects": [{"aliases": ["p05"]}]}
    _assert_bad(db, _write(tmp_path / "registry.json", doc), "#1", "id")


@pytest.mark.parametrize("bad", [None, 7, "", " ", True])
def test_bad_alias(db: Path, tmp_path: Path, bad: Any) -> None:
    doc = {"projects": [{"id": "p05-interferometer", "aliases": ["p05", bad]}]}
    msg = _assert_bad(db, _write(tmp_path / "registry.json", doc), "'p05-interferometer'", "alias")
    assert json.dumps(bad) in msg


def test_aliases_not_a_list(db: Path, tmp_path: Path) -> None:
    doc = {"projects": [{"id": "p05-interferometer", "aliases": "p05"}]}
    _assert_bad(db, _write(tmp_path / "registry.json", doc), "'p05-interferometer'", "aliases")


@pytest.mark.parametrize(
    ("first", "second"),
    [("p05", "p05"), ("p05", "P05"), ("Étalon", "ÉTALON"), ("étalon", "ÉTALON")],
)
def test_alias_claimed_by_two_projects(db: Path, tmp_path: Path, first: str, second: str) -> None:
    doc = {
        "projects": [
            {"id": "p05-interferometer", "aliases": [first]},
            {"id": "p06-polisher", "aliases": [second]},
        ]
    }
    _assert_bad(
        db, _write(tmp_path / "registry.json", doc), "'p06-polisher'", repr(second), "alias"
    )


@pytest.mark.parametrize(
    ("other_id", "alias"),
    [
        ("p06-polisher", "p06-polisher"),
        ("p06-polisher", "P06-Polisher"),
        ("Étalon", "ÉTALON"),
        ("étalon", "ÉTALON"),
    ],
)
def test_alias_equal_to_another_projects_id(
    db: Path, tmp_path: Path, other_id: str, alias: str
) -> None:
    doc = {
        "projects": [
            {"id": "p05-interferometer", "aliases": ["p05", alias]},
            {"id": other_id, "aliases": []},
        ]
    }
    msg = _assert_bad(db, _write(tmp_path / "registry.json", doc), "'p05-interferometer'")
    assert repr(alias) in msg and repr(other_id) in msg


def test_alias_equal_to_a_later_projects_id_order_independent(db: Path, tmp_path: Path) -> None:
    # The id is declared after the alias that claims it: still an error.
    doc = {
        "projects": [
            {"id": "p06-polisher", "aliases": ["p05-interferometer"]},
            {"id": "p05-interferometer", "aliases": []},
        ]
    }
    _assert_bad(db, _write(tmp_path / "registry.json", doc), "'p06-polisher'")


@pytest.mark.parametrize(("a", "b"), [("p05", "p05"), ("p05", "P05"), ("Étalon", "ÉTALON")])
def test_duplicate_project_ids(db: Path, tmp_path: Path, a: str, b: str) -> None:
    doc = {"projects": [{"id": a, "aliases": []}, {"id": b, "aliases": []}]}
    _assert_bad(db, _write(tmp_path / "registry.json", doc), repr(b))


def test_valid_registry_loads(tmp_path: Path) -> None:
    doc = {
        "projects": [
            {"id": "p05-interferometer", "aliases": ["p05", "Interferometer", "P05"]},
            {"id": "p07-étalon", "aliases": ["Étalon"], "description": "d"},
        ]
    }
    reg = load_registry(_write(tmp_path / "registry.json", doc))
    assert reg.alias_to_id == {
        "p05": "p05-interferometer",
        "interferometer": "p05-interferometer",
        "étalon": "p07-étalon",
    }
    assert reg.classify("ÉTALON") == ("alias", "p07-étalon")
    assert reg.classify("P07-ÉTALON") == ("variant", "p07-étalon")
    assert reg.classify(" p05-interferometer") == ("variant", "p05-interferometer")
    assert reg.classify("p05-interferometer") == ("canonical", "p05-interferometer")
    assert reg.classify("p99") is None
    assert fold("  ÉTALON ") == "étalon"


def test_registry_error_is_typed(tmp_path: Path) -> None:
    with pytest.raises(RegistryError) as info:
        load_registry(_write(tmp_path / "registry.json", {"projects": []}))
    assert info.value.exit_code == 2


def test_registry_checked_before_database(tmp_path: Path) -> None:
    # A bad registry is reported even when the database is fine: nothing runs.
    db = build_db(tmp_path / "atocore.db", projects=[("s", "p05")])
    reg = _write(tmp_path / "registry.json", {"projects": []})
    res = run_cli("plan", "--db", db, "--registry", reg, "--report-dir", tmp_path / "r")
    assert res.code == 2 and "registry" in res.stderr
    assert not (tmp_path / "r").exists() or not list((tmp_path / "r").glob("plan-*.json"))
