"""What every command shares: resolved inputs, a read-only session, the report envelope."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atocore_identity.database import describe_sqlite_error, read_only
from atocore_identity.registry import Registry, load_registry
from atocore_identity.reports import (
    ensure_report_dir,
    envelope,
    unique_path,
    utc_now,
    write_json_atomic,
)
from atocore_identity.survey import Progress, quiet
from atocore_identity.targets import MissingTarget, Target, resolve_targets


@dataclass(frozen=True)
class Inputs:
    """What every subcommand needs, already resolved from options and environment."""

    db: Path
    registry: Path
    report_dir: Path
    busy_timeout: float
    columns: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()  # --ignore-column: acknowledged, never read or flagged
    discover: bool = True  # look for alias-keyed values in unconfigured text columns
    progress: Progress = quiet


@dataclass
class Session:
    conn: sqlite3.Connection
    registry: Registry
    targets: list[Target]
    missing: list[MissingTarget]


@contextmanager
def read_session(inputs: Inputs) -> Iterator[Session]:
    """Registry first (cheap to check), then the database, read-only."""
    registry = load_registry(inputs.registry)
    with read_only(inputs.db, inputs.busy_timeout) as conn:
        try:
            targets, missing = resolve_targets(conn, list(inputs.columns))
            yield Session(conn, registry, targets, missing)
        except sqlite3.Error as exc:
            raise describe_sqlite_error(inputs.db, exc) from None


def report_envelope(
    kind: str,
    inputs: Inputs,
    registry: Registry,
    fingerprint: str | None,
    counts: dict[str, int],
    details: dict[str, Any],
) -> dict[str, Any]:
    return envelope(
        kind,
        utc_now(),
        db=inputs.db,
        registry_path=inputs.registry,
        registry_sha256=registry.sha256,
        fingerprint=fingerprint,
        counts=counts,
        details=details,
    )


def publish_report(
    inputs: Inputs, kind: str, payload: dict[str, Any], out: Path | None = None
) -> Path:
    """Write a report to ``out`` or to a fresh name in the report dir."""
    if out is None:
        ensure_report_dir(inputs.report_dir)
        out, _ = unique_path(inputs.report_dir, kind)
    payload["report_path"] = str(out)
    return write_json_atomic(out, payload)


def registry_summary(registry: Registry) -> dict[str, int]:
    return {"projects": len(registry.projects), "aliases": len(registry.alias_to_id)}
