"""What every command shares: resolved inputs, a read-only session, the report envelope."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from atocore_identity.checks import Check
from atocore_identity.database import describe_sqlite_error, read_only
from atocore_identity.errors import Interrupted, InterruptedAfterCommit, Refused
from atocore_identity.registry import Registry, load_registry
from atocore_identity.reports import (
    ensure_report_dir,
    envelope,
    replace_json,
    unique_path,
    utc_now,
    write_json_atomic,
)
from atocore_identity.survey import Progress, quiet
from atocore_identity.targets import MissingTarget, Target, resolve_targets
from atocore_identity.transaction import RolledBack

R = TypeVar("R")


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


class WriteResult(Protocol):
    """What apply's and revert's results (frozen dataclasses) both say about their write."""

    @property
    def before(self) -> dict[str, int]: ...
    @property
    def after(self) -> dict[str, int]: ...
    @property
    def backup(self) -> Path | None: ...
    @property
    def backup_bytes(self) -> int: ...
    @property
    def companion(self) -> Path | None: ...
    @property
    def companion_sha256(self) -> str | None: ...
    @property
    def checks(self) -> list[Check]: ...
    @property
    def timings(self) -> dict[str, float]: ...


def write_payload(result: WriteResult) -> dict[str, Any]:
    """A write's report fields: row counts, its files (names only: companions
    and backups sit beside the report), postconditions and timings."""
    return {
        "rows_before": result.before,
        "rows_after": result.after,
        "backup": {
            "path": result.backup.name if result.backup else None,
            "bytes": result.backup_bytes,
        },
        "companion": result.companion.name if result.companion else None,
        "companion_sha256": result.companion_sha256,
        "postconditions": [c.as_dict() for c in result.checks],
        "timings_seconds": {k: round(v, 4) for k, v in result.timings.items()},
    }


def registry_summary(registry: Registry) -> dict[str, int]:
    return {"projects": len(registry.projects), "aliases": len(registry.alias_to_id)}


@dataclass
class ReportTrail:
    """The report of a write (apply, revert), from before COMMIT to the end.

    Written as ``committing`` just before COMMIT, so a process killed right
    after it still leaves a report to verify; rewritten once COMMIT returned
    (a failure to rewrite is a warning: the data is committed); rewritten
    again if the transaction rolled back. Refusals and interruptions are kept
    too, named ``refused-<kind>-…`` / ``interrupted-<kind>-…`` so that no
    ``<kind>-*.json`` glob mistakes them for a run that changed something.
    """

    inputs: Inputs
    kind: str
    written: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def before_commit(self, doc: dict[str, Any]) -> None:
        # a report that cannot be written stops the write before COMMIT
        self.written.append(publish_report(self.inputs, self.kind, doc))

    def after_commit(self, doc: dict[str, Any]) -> None:
        doc["report_path"] = str(self.written[0])
        try:
            replace_json(self.written[0], doc)
        except (OSError, Refused) as exc:
            self.warnings.append(
                f"{self.kind} COMMITTED, but {self.written[0]} could not be updated"
                f" ({exc}); it still says status 'committing'"
            )

    def rolled_back(self, doc: dict[str, Any]) -> None:
        if self.written:  # the report written before COMMIT must not say "committing"
            doc["report_path"] = str(self.written[0])
            replace_json(self.written[0], doc)
        else:
            publish_report(self.inputs, self.kind, doc)

    def attempt(self, registry: Registry, exc: BaseException, details: dict[str, Any]) -> None:
        """Record a refusal or an interruption, if the report dir allows it."""
        refused = isinstance(exc, Refused)
        status = "refused" if refused else "interrupted"
        doc = report_envelope(
            self.kind,
            self.inputs,
            registry,
            None,
            {},
            {
                "status": status,
                "error": exc.message if isinstance(exc, Refused) else "interrupted by a signal",
                "hint": exc.hint if isinstance(exc, Refused) else None,
                **details,
            },
        )
        # if the report dir itself is the problem, the error already says so
        with contextlib.suppress(Refused, OSError):
            ensure_report_dir(self.inputs.report_dir)
            publish_report(self.inputs, f"{status}-{self.kind}", doc)

    def record(
        self,
        registry: Registry,
        write: Callable[[Callable[[R], None], Callable[[R], None]], R],
        doc: Callable[[R], dict[str, Any]],
        attempt: dict[str, Any],
    ) -> tuple[R, dict[str, Any], Path, str | None]:
        """Run ``write(before_commit, after_commit)`` with its report kept at
        every step; returns (result, final report, its path, any warning)."""
        try:
            result = write(
                lambda pending: self.before_commit(doc(pending)),
                lambda done: self.after_commit(doc(done)),
            )
        except RolledBack as exc:
            self.rolled_back(doc(exc.result))
            raise
        except InterruptedAfterCommit as exc:
            # committed: no attempt to record, but say if its report could not be
            exc.warning = "; ".join(self.warnings) or None
            raise
        except (Refused, Interrupted, KeyboardInterrupt) as exc:
            self.attempt(registry, exc, attempt)
            raise
        final = doc(result)
        report, warning = self.final(final)
        return result, final, report, warning

    def final(self, doc: dict[str, Any]) -> tuple[Path, str | None]:
        """The report path (published now when nothing was committed) and any warning."""
        if not self.written:
            return publish_report(self.inputs, self.kind, doc), None
        doc["report_path"] = str(self.written[0])
        return self.written[0], "; ".join(self.warnings) or None
