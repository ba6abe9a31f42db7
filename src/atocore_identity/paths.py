"""Paths from options and the environment: the database, the registry, the
report dir (SPEC §5's table). Each option given wins; then the environment;
the report dir alone has a default."""

from __future__ import annotations

import os
from pathlib import Path

from atocore_identity.errors import BadInput


def resolve_db(value: Path | None) -> Path:
    if value is not None:
        return value
    env = os.environ
    if env.get("ATOCORE_IDENTITY_DB"):
        return Path(env["ATOCORE_IDENTITY_DB"])
    if env.get("ATOCORE_DB_DIR"):
        return Path(env["ATOCORE_DB_DIR"]) / "atocore.db"
    if env.get("ATOCORE_DATA_DIR"):
        return Path(env["ATOCORE_DATA_DIR"]) / "db" / "atocore.db"
    raise BadInput(
        "no database given",
        "pass --db PATH or set ATOCORE_IDENTITY_DB (or ATOCORE_DB_DIR / ATOCORE_DATA_DIR)",
    )


def resolve_registry(value: Path | None) -> Path:
    if value is not None:
        return value
    env = os.environ.get("ATOCORE_PROJECT_REGISTRY_PATH")
    if env:
        return Path(env)
    raise BadInput("no registry given", "pass --registry PATH or set ATOCORE_PROJECT_REGISTRY_PATH")


def resolve_report_dir(value: Path | None) -> Path:
    if value is not None:
        return value
    env = os.environ
    if env.get("ATOCORE_IDENTITY_REPORT_DIR"):
        return Path(env["ATOCORE_IDENTITY_REPORT_DIR"])
    if env.get("ATOCORE_DATA_DIR"):
        return Path(env["ATOCORE_DATA_DIR"]) / "migrations"
    return Path("data/migrations")
