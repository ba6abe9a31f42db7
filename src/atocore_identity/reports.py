"""Report files: the shared envelope, reading them back, and atomic writing (SPEC §4).

The companion's format lives in ``companion.py``; it publishes through the
same atomic writer. Every report is written atomically: a private temporary
file in the report directory, fsync, then a hard link to its final name,
which fails instead of overwriting, so two runs in the same second (or microsecond) never clobber
each other and a symlink planted at the path is never followed.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from atocore_identity import __version__
from atocore_identity.database import read_regular_file
from atocore_identity.errors import BadInput, Refused

REPORT_VERSION = 1
# apply statuses whose report names rows that changed ("committing": the
# process died at COMMIT; the rows tell which way it went)
CHANGED_SOMETHING = ("applied", "committing")


def utc_now() -> datetime:
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S.%fZ")


def ensure_report_dir(path: Path) -> Path:
    """Create the report dir (owner-only) and prove it is writable, before any write."""
    if path.is_symlink() and not path.exists():
        raise Refused(
            f"report dir {path} is a dangling symlink (to {os.readlink(path)})",
            "create its target or pass another --report-dir",
        )
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise Refused(
            f"report dir {path} cannot be created: {exc.strerror}",
            "pass a writable --report-dir",
        ) from None
    if not path.is_dir():
        raise Refused(f"report dir {path} is not a directory", "pass a writable --report-dir")
    probe = path / f".probe-{secrets.token_hex(6)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        raise Refused(
            f"report dir {path} is not writable: {exc.strerror}",
            "pass a writable --report-dir",
        ) from None
    return path


@contextmanager
def temp_beside(directory: Path, suffix: str) -> Iterator[tuple[Path, int]]:
    """A private ``.tmp-<random><suffix>`` file in ``directory``: (path, open fd).

    The name is chosen before the file exists and the file is created inside
    the ``try``, so whatever ends the block (an error, SIGINT or SIGTERM
    between any two bytecodes) the temporary file is gone afterwards; a block
    that published it has already unlinked it.
    """
    path = directory / f".tmp-{secrets.token_hex(8)}{suffix}"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        yield path, os.open(path, flags, 0o600)
    finally:
        path.unlink(missing_ok=True)


def publish(tmp: Path, final: Path) -> None:
    """Give a finished temp file its final name; refuse to replace anything."""
    try:
        os.link(tmp, final)
    except FileExistsError:
        tmp.unlink()
        raise Refused(
            f"{final} already exists; refusing to overwrite it",
            "move the old file away or choose another --out path",
        ) from None
    tmp.unlink()
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def unique_path(directory: Path, kind: str, suffix: str = ".json") -> tuple[Path, datetime]:
    """A free ``<kind>-<UTC time to the microsecond><suffix>`` path in ``directory``."""
    while True:
        moment = utc_now()
        path = directory / f"{kind}-{stamp(moment)}{suffix}"
        if not path.exists() and not path.is_symlink():
            return path, moment


def _write_json(path: Path, payload: dict[str, Any], publish_to: Callable[[Path], None]) -> None:
    """``payload`` in a private, fsynced temporary file beside ``path``, then
    ``publish_to(tmp)`` gives it its name; the temporary file never outlives this."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with temp_beside(path.parent, ".json") as (tmp, fd):
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, indent=2, ensure_ascii=False, default=str)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            publish_to(tmp)
    except OSError as exc:
        raise Refused(
            f"cannot write report {path}: {exc.strerror}",
            "pass a writable --report-dir or --out, with free space",
        ) from None


def write_json_atomic(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to a new ``path`` atomically with owner-only permissions."""
    _write_json(path, payload, lambda tmp: publish(tmp, path))
    return path


def replace_json(path: Path, payload: dict[str, Any]) -> Path:
    """Atomically rewrite a report this run created moments ago (status updates)."""
    _write_json(path, payload, lambda tmp: os.replace(tmp, path))
    return path


def envelope(
    kind: str,
    created: datetime,
    *,
    db: Path | None,
    registry_path: Path | None,
    registry_sha256: str | None,
    fingerprint: str | None,
    counts: dict[str, int],
    details: dict[str, Any],
) -> dict[str, Any]:
    """The fields every report shares, followed by the details of its kind."""
    return {
        "report_version": REPORT_VERSION,
        "kind": kind,
        "tool": "atocore-identity",
        "tool_version": __version__,
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "database": str(db) if db else None,
        "database_absolute": str(db.absolute()) if db else None,
        "registry": {
            "path": str(registry_path) if registry_path else None,
            "sha256": registry_sha256,
        },
        "fingerprint": fingerprint,
        "counts": counts,
        **details,
    }


def load_report(path: Path, kind: str | None = None) -> dict[str, Any]:
    """Read a report file; BadInput-style Refused naming the file on any problem."""
    raw = read_regular_file(path, "report", expected="a JSON report")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"report {path} is not a readable JSON report ({exc})") from None
    if not isinstance(doc, dict) or doc.get("report_version") != REPORT_VERSION:
        raise BadInput(f"report {path} is not an atocore-identity report (report_version)")
    if kind is not None and doc.get("kind") != kind:
        raise BadInput(
            f"report {path} is a {doc.get('kind')!r} report, expected {kind!r}",
            f"pass the {kind} report written by `atocore-identity {kind}`",
        )
    return doc


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks (companions can be large)."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise BadInput(f"{path} cannot be read: {exc.strerror}") from None
    return h.hexdigest()


def companion_of(report_path: Path, report: dict[str, Any]) -> Path | None:
    """The companion file a report names; relative names sit beside the report."""
    name = report.get("companion")
    if not name:
        return None
    path = Path(str(name))
    return path if path.is_absolute() else report_path.parent / path


def companion_differs(companion: Path, report: dict[str, Any]) -> bool:
    """The companion is not the file its report hashed (when the report has a
    sha256: revert and verify trust only that file)."""
    want = report.get("companion_sha256")
    return want is not None and file_sha256(companion) != want
