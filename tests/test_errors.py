"""Bad inputs (SPEC §5): exit 2, one `Error:` line on stderr, no traceback,
the database unchanged; and how --db is found from the environment."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import DEFAULT_REGISTRY, build_db, file_digest, run_cli, write_registry

P05 = "p05-interferometer"
ENV_VARS = (
    "ATOCORE_IDENTITY_DB",
    "ATOCORE_DB_DIR",
    "ATOCORE_DATA_DIR",
    "ATOCORE_PROJECT_REGISTRY_PATH",
    "ATOCORE_IDENTITY_REPORT_DIR",
    "ATOCORE_IDENTITY_CONFIG",
    "ATOCORE_IDENTITY_DEBUG",
)
COMMANDS = ("inspect", "plan", "resolve", "apply", "verify")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return write_registry(tmp_path / "registry.json", DEFAULT_REGISTRY)


def _legacy_db(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return build_db(
        path,
        projects=[("c", P05), ("s", "p05")],
        state=[("a", "s", "cfg", "k", "v", "active", "2025-01-01")],
        memories=[("m", "fact", "x", "p05", "active", "2025-01-01")],
    )


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error:"), stderr
    assert "Traceback" not in stderr
    return lines[0]


def _all_commands(db: Path, registry: Path, reports: Path) -> Iterator[tuple[str, object]]:
    for command in COMMANDS:
        extra = ["--yes"] if command == "apply" else []
        yield (
            command,
            run_cli(command, "--db", db, "--registry", registry, "--report-dir", reports, *extra),
        )


def _assert_bad_db(db: Path, registry: Path, reports: Path, *needles: str) -> None:
    before = file_digest(db) if db.is_file() else None
    for command, res in _all_commands(db, registry, reports):
        assert res.code == 2, (command, res.stdout, res.stderr)  # type: ignore[attr-defined]
        line = _one_error_line(res.stderr)  # type: ignore[attr-defined]
        assert res.stdout == ""  # type: ignore[attr-defined]
        for needle in needles:
            assert needle in line, (command, line)
    if before is not None:
        assert file_digest(db) == before


def test_db_missing_path(tmp_path: Path, registry: Path) -> None:
    db = tmp_path / "nope.db"
    _assert_bad_db(db, registry, tmp_path / "r", str(db), "does not exist")
    assert not db.exists()  # never created


def test_db_is_a_directory(tmp_path: Path, registry: Path) -> None:
    directory = tmp_path / "dir.db"
    directory.mkdir()
    _assert_bad_db(directory, registry, tmp_path / "r", "directory")


def test_db_is_a_text_file(tmp_path: Path, registry: Path) -> None:
    db = tmp_path / "notes.db"
    db.write_text("just some text\n" * 100)
    _assert_bad_db(db, registry, tmp_path / "r", "not an SQLite database")


def test_db_is_empty_file(tmp_path: Path, registry: Path) -> None:
    db = tmp_path / "empty.db"
    db.touch()
    _assert_bad_db(db, registry, tmp_path / "r", str(db))
    assert db.stat().st_size == 0


def test_db_without_projects_table(tmp_path: Path, registry: Path) -> None:
    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE memories (id TEXT, project TEXT)")
    conn.commit()
    conn.close()
    _assert_bad_db(db, registry, tmp_path / "r", "projects")


def test_db_corrupted_after_header(tmp_path: Path, registry: Path) -> None:
    good = _legacy_db(tmp_path / "good.db")
    data = bytearray(good.read_bytes())
    # keep the 100-byte header, overwrite the rest (sqlite_master lives on page 1)
    for i in range(100, len(data)):
        data[i] = (i * 7 + 13) % 256
    db = tmp_path / "corrupt.db"
    db.write_bytes(bytes(data))
    _assert_bad_db(db, registry, tmp_path / "r", str(db))


def test_db_header_only(tmp_path: Path, registry: Path) -> None:
    db = tmp_path / "short.db"
    db.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    _assert_bad_db(db, registry, tmp_path / "r", str(db))


def test_db_locked_exclusively(tmp_path: Path, registry: Path) -> None:
    db = _legacy_db(tmp_path / "atocore.db")
    before = file_digest(db)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        # One read command is enough: each waits out the busy timeout (5 s).
        res = run_cli("plan", "--db", db, "--registry", registry, "--report-dir", tmp_path / "r")
        assert res.code == 2, res.stderr
        line = _one_error_line(res.stderr)
        assert "locked" in line
        assert res.stdout == ""
        # apply does not wait its 30 s default when told not to, and refuses
        applied = run_cli(
            "apply",
            "--db",
            db,
            "--registry",
            registry,
            "--report-dir",
            tmp_path / "r",
            "--yes",
            "--busy-timeout",
            "0",
        )
        assert applied.code in (2, 3), applied.stderr
        _one_error_line(applied.stderr)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert file_digest(db) == before


def test_no_db_and_no_env(tmp_path: Path, registry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for command in COMMANDS:
        res = run_cli(command, "--registry", registry, "--report-dir", tmp_path / "r")
        assert res.code == 2, (command, res.stderr)
        line = _one_error_line(res.stderr)
        assert "--db" in line and "ATOCORE_IDENTITY_DB" in line


def test_no_registry_and_no_env(tmp_path: Path) -> None:
    db = _legacy_db(tmp_path / "atocore.db")
    res = run_cli("plan", "--db", db, "--report-dir", tmp_path / "r")
    assert res.code == 2
    line = _one_error_line(res.stderr)
    assert "--registry" in line and "ATOCORE_PROJECT_REGISTRY_PATH" in line


# -- --db from the environment ------------------------------------------------


def _plan_db_path(tmp_path: Path, registry: Path) -> str:
    res = run_cli(
        "plan", "--registry", registry, "--report-dir", tmp_path / "r", "--format", "json"
    )
    assert res.code == 0, res.stderr
    return str(res.json()["database"])


def test_db_from_atocore_identity_db(
    tmp_path: Path, registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _legacy_db(tmp_path / "x" / "any-name.db")
    decoy = _legacy_db(tmp_path / "dbdir" / "atocore.db")
    monkeypatch.setenv("ATOCORE_IDENTITY_DB", str(db))
    monkeypatch.setenv("ATOCORE_DB_DIR", str(decoy.parent))
    monkeypatch.setenv("ATOCORE_DATA_DIR", str(tmp_path / "data"))
    assert _plan_db_path(tmp_path, registry) == str(db)


def test_db_from_atocore_db_dir(
    tmp_path: Path, registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _legacy_db(tmp_path / "dbdir" / "atocore.db")
    monkeypatch.setenv("ATOCORE_DB_DIR", str(db.parent))
    monkeypatch.setenv("ATOCORE_DATA_DIR", str(tmp_path / "data"))
    assert _plan_db_path(tmp_path, registry) == str(db)


def test_db_from_atocore_data_dir(
    tmp_path: Path, registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _legacy_db(tmp_path / "data" / "db" / "atocore.db")
    monkeypatch.setenv("ATOCORE_DATA_DIR", str(tmp_path / "data"))
    assert _plan_db_path(tmp_path, registry) == str(db)


def test_db_option_beats_environment(
    tmp_path: Path, registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _legacy_db(tmp_path / "explicit.db")
    monkeypatch.setenv("ATOCORE_IDENTITY_DB", str(tmp_path / "missing.db"))
    res = run_cli(
        "plan",
        "--db",
        db,
        "--registry",
        registry,
        "--report-dir",
        tmp_path / "r",
        "--format",
        "json",
    )
    assert res.code == 0, res.stderr
    assert res.json()["database"] == str(db)


def test_env_db_that_does_not_exist_is_an_error(
    tmp_path: Path, registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATOCORE_DATA_DIR", str(tmp_path / "data"))
    res = run_cli("plan", "--registry", registry, "--report-dir", tmp_path / "r")
    assert res.code == 2
    line = _one_error_line(res.stderr)
    assert str(tmp_path / "data" / "db" / "atocore.db") in line
    assert not (tmp_path / "data" / "db" / "atocore.db").exists()


def test_registry_from_env(tmp_path: Path, registry: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = _legacy_db(tmp_path / "atocore.db")
    monkeypatch.setenv("ATOCORE_PROJECT_REGISTRY_PATH", str(registry))
    res = run_cli("plan", "--db", db, "--report-dir", tmp_path / "r", "--format", "json")
    assert res.code == 0, res.stderr
    assert res.json()["registry"]["path"] == str(registry)


# -- malformed options ----------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "conflicts",
        "conflicts.",
        ".project",
        "a.b.c",
        "",
        "projects.name",
        "project_state.project_id",
    ],
)
def test_bad_column_spec(tmp_path: Path, registry: Path, spec: str) -> None:
    db = _legacy_db(tmp_path / "atocore.db")
    before = file_digest(db)
    for command, res in _all_commands_with(db, registry, tmp_path / "r", "--column", spec):
        assert res.code == 2, (command, res.stderr)  # type: ignore[attr-defined]
        line = _one_error_line(res.stderr)  # type: ignore[attr-defined]
        assert "--column" in line
    assert file_digest(db) == before


def _all_commands_with(
    db: Path, registry: Path, reports: Path, *extra: str
) -> Iterator[tuple[str, object]]:
    for command in COMMANDS:
        more = ["--yes"] if command == "apply" else []
        yield (
            command,
            run_cli(
                command, "--db", db, "--registry", registry, "--report-dir", reports, *extra, *more
            ),
        )


@pytest.mark.parametrize("pick", ["cfg/k", "cfg=a", "cfgk=a", "/k=a", "cfg/=a", "cfg/k=", "=", ""])
def test_bad_pick_spec(tmp_path: Path, registry: Path, pick: str) -> None:
    db = _legacy_db(tmp_path / "atocore.db")
    before = file_digest(db)
    res = run_cli(
        "resolve",
        "--db",
        db,
        "--registry",
        registry,
        "--report-dir",
        tmp_path / "r",
        "--pick",
        pick,
    )
    assert res.code == 2, res.stderr
    line = _one_error_line(res.stderr)
    assert "--pick" in line
    assert file_digest(db) == before


def test_pick_naming_no_collision(tmp_path: Path, registry: Path) -> None:
    db = _legacy_db(tmp_path / "atocore.db")
    res = run_cli(
        "resolve",
        "--db",
        db,
        "--registry",
        registry,
        "--report-dir",
        tmp_path / "r",
        "--pick",
        "cfg/k=zzz",
    )
    assert res.code == 2, res.stderr
    line = _one_error_line(res.stderr)
    assert "cfg/k" in line


def test_debug_shows_traceback(tmp_path: Path, registry: Path) -> None:
    res = run_cli(
        "plan",
        "--db",
        tmp_path / "nope.db",
        "--registry",
        registry,
        "--debug",
    )
    assert res.code == 2
    assert "Traceback" in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("Error:")
