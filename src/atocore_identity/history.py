"""history: what the report dir says ran, and what in it needs attention (SPEC §7).

Reads one directory, never writes to it (``prune`` is the only exception,
and removes only provably orphaned debris). Every file is classified by its
name first and its content second:

- reports: JSON objects with ``report_version`` and ``kind``; version 1 is
  read (generically: any kind, so kinds added later are listed too), other
  versions are listed, not read; anything else is ignored;
- backups (``backup-*.db``): checked by their SQLite header and size, and by
  ``PRAGMA quick_check`` on an immutable read-only connection within a
  budget of bytes (``QUICK_CHECK_BUDGET``, newest first; ``deep`` lifts it);
- companions (``*.rows.jsonl.gz``): decompressed to the end, streaming, so a
  truncated or damaged gzip is found, and compared with the report's
  ``companion_sha256`` when it has one;
- debris: ``.tmp-*`` (and ``.probe-*``) files half-written by a run that
  died, backups and companions no report names, SQLite side files beside a
  backup.

Files are matched to the reports that name them by file name: reports name
their backup and companion by file name beside them, and every name the tool
writes carries a UTC time to the microsecond.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sqlite3
import stat
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from atocore_identity.errors import BadInput
from atocore_identity.reports import REPORT_VERSION

# quick_check reads every page: up to this many bytes of backups per run
# (newest first), about a second warm and a few seconds from a cold disk.
QUICK_CHECK_BUDGET = 1 << 30
# A report is a few KiB to a few MiB; a bigger file is not read.
MAX_REPORT_BYTES = 64 << 20
# prune removes temp files and orphan companions untouched for this long.
PRUNE_AGE_MINUTES = 60

SQLITE_HEADER = b"SQLite format 3\x00"
SIDE_SUFFIXES = ("-journal", "-wal", "-shm")
COMPANION_SUFFIX = ".rows.jsonl.gz"
TEMP_PREFIXES = (".tmp-", ".probe-")
# report fields that name another file of the report dir
REFERENCE_FIELDS = ("apply_report", "plan_file", "resolutions", "backup")

# the headline counts of each kind: (key, label); a key is a counts key or the sum of
# several (SUMS); other kinds show every count
SUMS: dict[str, tuple[str, ...]] = {
    "shadows": ("shadow_rows_deleted", "shadow_rows_renamed"),
    "archived": ("state_archived_duplicate", "state_archived_history"),
    "rekeyed": ("memories_rekeyed", "interactions_rekeyed", "extra_rekeyed"),
}
HEADLINES: dict[str, tuple[tuple[str, str], ...]] = {
    "inspect": (
        ("shadow_project_rows", "shadow rows"),
        ("alias_keyed_rows", "alias-keyed"),
        ("variant_spelled_rows", "variants"),
        ("unregistered_rows", "unregistered"),
    ),
    "plan": (
        ("shadows", "shadows"),
        ("state_moved", "moved"),
        ("archived", "archived"),
        ("rekeyed", "rekeyed"),
        ("memories_superseded", "superseded"),
        ("collisions", "collisions"),
    ),
    "resolve": (("decided", "decided"), ("undecided", "undecided")),
    "verify": (("checks", "checks"), ("failed", "failed")),
}
HEADLINES["apply"] = HEADLINES["plan"][:-1]
ALWAYS_SHOWN = {"checks", "failed", "undecided"}


@dataclass
class FileState:
    """A file a report names, or debris: is it there, and is it whole?"""

    name: str
    exists: bool
    condition: str  # "ok" | "missing" | "unreadable" | "unchecked"
    detail: str
    bytes: int | None = None
    quick_check: str | None = None  # "ok" | "failed" | "skipped" | None (not a backup)


@dataclass
class Reference:
    """A report field naming another file: ``apply_report``, ``backup``, ..."""

    field: str
    path: str
    file: str | None  # its name in the report dir, None if it is not there
    kind: str | None = None
    created_at: str | None = None


@dataclass
class Run:
    file: str
    kind: str
    report_version: Any
    readable: bool  # False: a newer report_version, listed, not read
    created_at: str
    status: str | None = None
    database: str | None = None
    registry_path: str | None = None
    registry_sha256: str | None = None
    fingerprint: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    headline: str = ""
    backup: FileState | None = None
    companion: FileState | None = None
    refers_to: list[Reference] = field(default_factory=list)
    referenced_by: list[str] = field(default_factory=list)
    note: str | None = None
    doc: dict[str, Any] = field(default_factory=dict, repr=False)
    moment: datetime = field(default=datetime.min.replace(tzinfo=UTC), repr=False)


@dataclass
class DirFile:
    """A file of the report dir that is not a report: backup, companion or debris."""

    name: str
    role: str  # backup | companion | orphan-backup | orphan-companion | temp | side-file
    named_by: list[str]
    bytes: int
    age_minutes: float
    state: FileState | None
    note: str | None = None
    inode: int = field(default=0, repr=False)


@dataclass
class Flag:
    issue: str
    severity: str  # "error" | "warning" | "notice"
    file: str
    message: str
    action: str


@dataclass
class History:
    report_dir: Path
    scanned_at: datetime
    runs: list[Run]
    files: list[DirFile]
    flags: list[Flag]
    ignored: list[str]
    deep: bool
    older_than: int  # minutes: younger debris may belong to a run in progress


# -- reading the directory -------------------------------------------------------------


@dataclass
class _Entry:
    name: str
    path: Path
    st: os.stat_result

    @property
    def regular(self) -> bool:
        return stat.S_ISREG(self.st.st_mode)


def _list_dir(report_dir: Path) -> list[_Entry]:
    try:
        st = report_dir.stat()
    except FileNotFoundError:
        raise BadInput(
            f"report dir {report_dir} does not exist",
            "pass --report-dir DIR or set ATOCORE_IDENTITY_REPORT_DIR",
        ) from None
    except OSError as exc:
        raise BadInput(f"report dir {report_dir} cannot be read: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise BadInput(f"report dir {report_dir} is not a directory", "pass --report-dir DIR")
    out: list[_Entry] = []
    try:
        with os.scandir(report_dir) as it:
            for entry in it:
                try:
                    out.append(
                        _Entry(entry.name, Path(entry.path), entry.stat(follow_symlinks=False))
                    )
                except FileNotFoundError:  # removed while we looked
                    continue
    except OSError as exc:
        raise BadInput(f"report dir {report_dir} cannot be read: {exc.strerror}") from None
    return sorted(out, key=lambda e: e.name)


def is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIXES)


def is_backup(name: str) -> bool:
    return name.startswith("backup-") and name.endswith(".db")


def is_companion(name: str) -> bool:
    return name.endswith(COMPANION_SUFFIX) and not name.startswith(".")


def side_file_of(name: str) -> str | None:
    """The backup a ``-journal``/``-wal``/``-shm`` file belongs to, or None."""
    for suffix in SIDE_SUFFIXES:
        if name.endswith(suffix) and is_backup(name[: -len(suffix)]):
            return name[: -len(suffix)]
    return None


def _read_json(entry: _Entry) -> Any:
    """The file's JSON, or None if it is not a small regular file holding JSON."""
    if not entry.regular or entry.st.st_size > MAX_REPORT_BYTES or entry.st.st_size == 0:
        return None
    try:
        with open(entry.path, "rb") as handle:
            data = handle.read(MAX_REPORT_BYTES + 1)
        if data.lstrip()[:1] != b"{":
            return None
        return json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _when(value: Any, fallback: float) -> tuple[datetime, str]:
    """The report's ``created_at``; the file's mtime if it has none that parses."""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment, value
        except ValueError:
            pass
    moment = datetime.fromtimestamp(fallback, UTC)
    return moment, _iso(moment)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def run_status(doc: dict[str, Any]) -> str | None:
    """``status`` if the report has one, else what its kind's fields say."""
    if isinstance(doc.get("status"), str):
        return str(doc["status"])
    kind = doc.get("kind")
    if kind == "verify" and isinstance(doc.get("ok"), bool):
        return "ok" if doc["ok"] else "failed"
    if kind == "plan" and isinstance(doc.get("applicable"), bool):
        if doc.get("empty") is True:
            return "empty"
        return "applicable" if doc["applicable"] else "blocked"
    counts = doc.get("counts")
    if kind == "resolve" and isinstance(counts, dict) and isinstance(counts.get("undecided"), int):
        return "undecided" if counts["undecided"] else "decided"
    return None


def _int_counts(value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, int) and not isinstance(v, bool)}


def headline(kind: str, counts: dict[str, int]) -> str:
    """A few counts that say what a run found or did, zeros left out."""
    shown = dict(counts)
    for key, summed in SUMS.items():
        if any(p in counts for p in summed):
            shown[key] = sum(counts.get(p, 0) for p in summed)
    known = HEADLINES.get(kind)
    pairs = list(known) if known else [(k, k.replace("_", " ")) for k in counts]
    parts = [
        f"{label} {shown[key]}"
        for key, label in pairs
        if key in shown and (shown[key] or key in ALWAYS_SHOWN)
    ]
    if parts:
        return ", ".join(parts)
    return "nothing" if counts else "-"


def _owned(doc: dict[str, Any], key: str) -> tuple[str | None, int | None]:
    """The file a report wrote under ``key`` (``backup: {path, bytes}`` or
    ``companion: NAME``), with its recorded size."""
    value = doc.get(key)
    if isinstance(value, dict):
        path, size = value.get("path"), value.get("bytes")
        return (
            path if isinstance(path, str) and path else None,
            size if isinstance(size, int) and not isinstance(size, bool) else None,
        )
    if key == "companion" and isinstance(value, str) and value:
        return value, None
    return None, None


def _read_run(entry: _Entry, doc: dict[str, Any]) -> Run:
    kind = doc["kind"] if isinstance(doc["kind"], str) else repr(doc["kind"])
    version = doc["report_version"]
    moment, created = _when(doc.get("created_at"), entry.st.st_mtime)
    if version != REPORT_VERSION or isinstance(version, bool):
        return Run(
            entry.name,
            kind,
            version,
            False,
            created,
            note=f"unknown report_version {version!r}: listed, not read",
            moment=moment,
        )
    registry = doc.get("registry")
    if not isinstance(registry, dict):
        registry = {}
    counts = _int_counts(doc.get("counts"))
    return Run(
        entry.name,
        kind,
        version,
        True,
        created,
        status=run_status(doc),
        database=_text(doc.get("database")),
        registry_path=_text(registry.get("path")),
        registry_sha256=_text(registry.get("sha256")),
        fingerprint=_text(doc.get("fingerprint")),
        counts=counts,
        headline=headline(kind, counts),
        doc=doc,
        moment=moment,
    )


# -- checking backups and companions -------------------------------------------------------


def _ro_immutable_uri(path: Path) -> str:
    # immutable: a backup of a WAL database is flagged WAL, and even a mode=ro
    # connection to it would create -wal and -shm files beside it.
    return f"file:{quote(str(path.absolute()))}?mode=ro&immutable=1"


def check_backup(
    path: Path, expected_bytes: int | None, budget: list[int], deep: bool
) -> FileState:
    """Header and size always; ``quick_check`` while ``budget`` (bytes) lasts."""
    name = path.name
    try:
        st = path.lstat()
    except FileNotFoundError:
        return FileState(name, False, "missing", "no such file")
    except OSError as exc:
        return FileState(name, False, "unreadable", f"cannot stat: {exc.strerror}")
    size = st.st_size
    if not stat.S_ISREG(st.st_mode):
        return FileState(name, True, "unreadable", "not a regular file", size)
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        return FileState(name, True, "unreadable", f"cannot read: {exc.strerror}", size)
    if not header.startswith(SQLITE_HEADER) or len(header) < 100:
        return FileState(name, True, "unreadable", "not an SQLite database (no header)", size)
    if expected_bytes is not None and size != expected_bytes:
        return FileState(
            name,
            True,
            "unreadable",
            f"{size} bytes, its report says {expected_bytes}: truncated or replaced",
            size,
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid_for = int.from_bytes(header[92:96], "big")
    changes = int.from_bytes(header[24:28], "big")
    if pages and valid_for == changes and size < pages * page_size:
        return FileState(
            name,
            True,
            "unreadable",
            f"{size} bytes, its header says {pages} pages of {page_size}: truncated",
            size,
        )
    sides = [s for s in SIDE_SUFFIXES if Path(f"{path}{s}").exists()]
    if sides:
        detail = (
            f"SQLite header ok; {', '.join(name + s for s in sides)} beside it: opened"
            " read-write since, not checked further"
        )
        return FileState(name, True, "unchecked", detail, size, "skipped")
    if not deep and size > budget[0]:
        detail = (
            f"SQLite header and size ok; quick_check skipped ({size >> 20} MiB is over"
            f" history's remaining {budget[0] >> 20} MiB budget: --deep runs it)"
        )
        return FileState(name, True, "ok", detail, size, "skipped")
    budget[0] = max(0, budget[0] - size)
    try:
        conn = sqlite3.connect(_ro_immutable_uri(path), uri=True)
        try:
            found = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return FileState(name, True, "unreadable", f"quick_check cannot run: {exc}", size, "failed")
    if found != ["ok"]:
        detail = "quick_check: " + "; ".join(found)
        return FileState(name, True, "unreadable", detail, size, "failed")
    return FileState(name, True, "ok", "SQLite header, size and quick_check ok", size, "ok")


def check_companion(path: Path, expected_sha256: str | None) -> FileState:
    """Decompress to the end (streaming): a truncated or damaged gzip fails."""
    name = path.name
    try:
        st = path.lstat()
    except FileNotFoundError:
        return FileState(name, False, "missing", "no such file")
    except OSError as exc:
        return FileState(name, False, "unreadable", f"cannot stat: {exc.strerror}")
    if not stat.S_ISREG(st.st_mode):
        return FileState(name, True, "unreadable", "not a regular file", st.st_size)
    digest = hashlib.sha256()
    lines = 0
    try:
        with open(path, "rb") as raw:
            hashing = _Hashing(raw, digest)
            with gzip.GzipFile(fileobj=hashing, mode="rb") as handle:
                while chunk := handle.read(1 << 20):
                    lines += chunk.count(b"\n")
    except (OSError, EOFError, zlib.error) as exc:
        return FileState(name, True, "unreadable", f"not a complete gzip: {exc}", st.st_size)
    if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
        return FileState(
            name, True, "unreadable", "its sha256 differs from the report's", st.st_size
        )
    return FileState(name, True, "ok", f"complete gzip, {lines} lines", st.st_size)


class _Hashing:
    """A read-only file wrapper that hashes what is read through it."""

    def __init__(self, raw: Any, digest: Any) -> None:
        self.raw = raw
        self.digest = digest

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.raw.read(size)
        self.digest.update(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:  # only a rewind calls it
        position: int = self.raw.seek(offset, whence)
        return position


# -- the whole picture -------------------------------------------------------------------


def _link(runs: list[Run], present: set[str]) -> None:
    """Fill ``refers_to`` and ``referenced_by``, matching files by name."""
    by_name = {r.file: r for r in runs}
    for run in runs:
        if not run.readable:
            continue
        for key in REFERENCE_FIELDS:
            value = run.doc.get(key)
            if not isinstance(value, str) or not value:
                continue
            base = Path(value).name
            target = by_name.get(base)
            ref = Reference(key, value, base if base in present else None)
            if target is not None:
                ref.kind, ref.created_at = target.kind, target.created_at
                target.referenced_by.append(run.file)
            run.refers_to.append(ref)


def _names(runs: Iterable[Run]) -> dict[str, list[str]]:
    """File name -> the reports that name it (as their own file or a reference)."""
    named: dict[str, list[str]] = {}
    for run in runs:
        if not run.readable:
            continue
        for key in ("backup", "companion"):
            owned, _ = _owned(run.doc, key)
            if owned:
                named.setdefault(Path(owned).name, []).append(run.file)
        for ref in run.refers_to:
            named.setdefault(Path(ref.path).name, []).append(run.file)
    return named


def scan_names(report_dir: Path) -> dict[str, list[str]]:
    """Just the names the reports give (for prune's last look before removing)."""
    entries = _list_dir(report_dir)
    runs = []
    for entry in entries:
        if _maybe_report(entry.name):
            doc = _read_json(entry)
            if _is_report(doc):
                runs.append(_read_run(entry, doc))
    _link(runs, {e.name for e in entries})
    return _names(runs)


def _maybe_report(name: str) -> bool:
    return not (is_temp(name) or is_backup(name) or is_companion(name) or side_file_of(name))


def _is_report(doc: Any) -> bool:
    return isinstance(doc, dict) and "report_version" in doc and "kind" in doc


def read_history(
    report_dir: Path,
    *,
    deep: bool = False,
    older_than: int = PRUNE_AGE_MINUTES,
    now: datetime | None = None,
) -> History:
    """Read the report dir; change nothing."""
    scanned = now or datetime.now(UTC)
    entries = _list_dir(report_dir)
    by_entry = {e.name: e for e in entries}
    runs: list[Run] = []
    ignored: list[str] = []
    other: list[_Entry] = []
    for entry in entries:
        if stat.S_ISDIR(entry.st.st_mode):
            continue
        if not _maybe_report(entry.name):
            other.append(entry)
            continue
        doc = _read_json(entry)
        if _is_report(doc):
            runs.append(_read_run(entry, doc))
        else:
            ignored.append(entry.name)
    runs.sort(key=lambda r: (r.moment, r.file), reverse=True)
    _link(runs, set(by_entry))
    named = _names(runs)

    budget = [QUICK_CHECK_BUDGET]
    checked: dict[str, FileState] = {}
    for run in runs:  # newest first: the budget goes to the newest backups
        if not run.readable:
            continue
        backup, size = _owned(run.doc, "backup")
        if backup:
            base = Path(backup).name
            if base not in checked:
                checked[base] = check_backup(report_dir / base, size, budget, deep)
            run.backup = checked[base]
        companion, _ = _owned(run.doc, "companion")
        if companion:
            base = Path(companion).name
            if base not in checked:
                checked[base] = check_companion(
                    report_dir / base, _text(run.doc.get("companion_sha256"))
                )
            run.companion = checked[base]

    files: list[DirFile] = []
    for entry in other:
        name = entry.name
        age = max(0.0, (scanned.timestamp() - entry.st.st_mtime) / 60)
        state = checked.get(name)
        note = None
        if is_temp(name):
            role = "temp"
            note = _second_name(entry, entries)
        elif side_file_of(name):
            role = "side-file"
        elif is_backup(name):
            role = "backup" if name in named else "orphan-backup"
            if state is None:
                state = checked[name] = check_backup(entry.path, None, budget, deep)
        else:
            role = "companion" if name in named else "orphan-companion"
            if state is None:
                state = checked[name] = check_companion(entry.path, None)
        files.append(
            DirFile(
                name,
                role,
                named.get(name, []),
                entry.st.st_size,
                age,
                state,
                note,
                entry.st.st_ino,
            )
        )
    history = History(report_dir, scanned, runs, files, [], ignored, deep, older_than)
    history.flags = _flags(history)
    return history


def _second_name(entry: _Entry, entries: list[_Entry]) -> str | None:
    """A temp file still linked to its final name: the run died between the two."""
    if entry.st.st_nlink < 2:
        return None
    for other in entries:
        if other.name != entry.name and other.st.st_ino == entry.st.st_ino:
            return f"a second name of {other.name} (removing it removes only this name)"
    return None


# -- what needs attention ----------------------------------------------------------------


def _flags(h: History) -> list[Flag]:
    flags: list[Flag] = []
    add = flags.append
    for run in h.runs:
        if not run.readable:
            continue
        if run.status == "committing":
            checked_by = [
                f"{r} ({by.status})"
                for r in run.referenced_by
                for by in h.runs
                if by.file == r and by.kind == "verify"
            ]
            since = f"; checked since by {', '.join(checked_by)}" if checked_by else ""
            if run.kind == "apply":
                action = (
                    f"run `atocore-identity verify --report {h.report_dir / run.file}` to learn"
                    " which way it went (all checks pass: it committed)"
                )
            elif run.kind == "revert" and isinstance(run.doc.get("apply_report"), str):
                action = (
                    f"run `atocore-identity revert --report {run.doc['apply_report']} --dry-run`"
                    " to learn which way it went (nothing left to revert: it committed)"
                )
            else:
                action = "check the database to learn whether the COMMIT happened"
            add(
                Flag(
                    "committing",
                    "error",
                    run.file,
                    f"{run.kind} left 'committing': the process died at COMMIT{since}",
                    action,
                )
            )
        if run.status == "refused":
            error = _text(run.doc.get("error")) or "no reason given"
            error = error.removeprefix(f"{run.kind} refused: ")
            hint = _text(run.doc.get("hint"))
            add(
                Flag(
                    "refused",
                    "notice",
                    run.file,
                    f"{run.kind} refused ({error}); nothing was changed",
                    hint or "read its error; nothing to undo",
                )
            )
        elif run.status == "interrupted":
            add(
                Flag(
                    "interrupted",
                    "notice",
                    run.file,
                    f"{run.kind} interrupted by a signal before COMMIT; it rolled back,"
                    " nothing was changed",
                    "run it again when ready",
                )
            )
        elif run.status == "rolled-back":
            error = _text(run.doc.get("error")) or "a postcondition failed"
            add(
                Flag(
                    "rolled-back",
                    "warning",
                    run.file,
                    f"{run.kind} rolled back ({error}); nothing was changed",
                    "a bug in atocore-identity: keep the report dir and report it",
                )
            )
        if run.kind == "verify" and run.status == "failed" and not _passed_since(h.runs, run):
            add(
                Flag(
                    "verify-failed",
                    "error",
                    run.file,
                    f"verify found {run.counts.get('failed', '?')} failing checks",
                    f"read them (`jq .checks {h.report_dir / run.file}`); see docs/runbook.md"
                    " step 6",
                )
            )
        applied = run.status in ("applied", "reverted", "committing")  # it changed the data
        for role, state in (("backup", run.backup), ("companion", run.companion)):
            if state is None or state.condition in ("ok", "unchecked"):
                continue
            add(_file_flag(run, role, state, applied))
        for ref in run.refers_to:
            if ref.field == "apply_report" and ref.file is None:
                add(
                    Flag(
                        "reference-missing",
                        "warning",
                        run.file,
                        f"its apply_report {ref.path} is not in the report dir",
                        "move it back beside the other reports, or find where it went",
                    )
                )
    for f in h.files:
        debris = _debris_flag(f, h.older_than)
        if debris is not None:
            add(debris)
    return flags


def _passed_since(runs: list[Run], failed: Run) -> bool:
    """A newer verify of the same database passed."""
    return any(
        r.kind == "verify"
        and r.status == "ok"
        and r.database == failed.database
        and r.moment > failed.moment
        for r in runs
    )


def _file_flag(run: Run, role: str, state: FileState, applied: bool) -> Flag:
    what = "archive" if (role == "companion" and run.kind == "apply") else role
    message = f"{what} {state.name} named by this {run.kind} is {state.condition}: {state.detail}"
    if role == "backup":
        first = (
            "find where it went (moved or deleted?)"
            if state.condition == "missing"
            else "do not restore from it"
        )
        action = (
            f"{first}; until then, the data from before {run.created_at} is only in your own"
            " backups" + ("; `revert --report` undoes the apply without it" if applied else "")
        )
    elif what == "archive":
        action = (
            "restore it from your copies of the report dir: it is the only record of the rows"
            " the apply deleted, and `verify --report` and `revert` need it"
        )
    else:
        action = "only the row detail is lost; run the command again if you need it"
    severity = "error" if (applied or role == "backup") else "warning"
    return Flag(f"{role}-{state.condition}", severity, run.file, message, action)


PRUNE_IT = "`atocore-identity history --prune --yes` removes it"


def _debris_flag(f: DirFile, older_than: int) -> Flag | None:
    age = f"{f.age_minutes:.0f} min old"
    young = f.age_minutes < older_than
    if f.role == "temp":
        second = f"; {f.note}" if f.note else ""
        if young:
            message = f"temporary file ({age}): a run in progress is probably writing it{second}"
            action = f"leave it; if no run is going on, prune removes it after {older_than} min"
            return Flag("temp-file", "notice", f.name, message, action)
        message = f"half-written temporary file of a run that died ({age}){second}"
        return Flag("temp-file", "warning", f.name, message, PRUNE_IT)
    if f.role == "orphan-backup":
        cond = f" ({f.state.condition}: {f.state.detail})" if f.state else ""
        message = (
            "a backup no report names: an apply stopped after its backup and before a report"
            f" named it (so it never committed), or its report was moved away{cond}"
        )
        action = (
            "keep it until you know it is not needed, then delete it by hand;"
            " prune never removes a backup"
        )
        return Flag("orphan-backup", "warning", f.name, message, action)
    if f.role == "orphan-companion":
        message = (
            f"a companion no report names ({age}): its run stopped before writing a report"
            " that names it (an apply writes its report before COMMIT, so it never committed)"
        )
        action = (
            f"{PRUNE_IT} once it is {older_than} min old; if you moved its report away,"
            " move this file with it instead"
        )
        return Flag("orphan-companion", "notice" if young else "warning", f.name, message, action)
    if f.role == "side-file":
        return Flag(
            "backup-side-file",
            "warning",
            f.name,
            f"SQLite side file of {side_file_of(f.name)}: the backup was opened read-write"
            " since, and this file may hold part of its content",
            "never delete it alone: keep or move it together with its backup; prune leaves it",
        )
    return None  # backups and companions a report names are flagged with that report


# -- prune ------------------------------------------------------------------------------


@dataclass
class PruneItem:
    file: str
    reason: str
    action: str  # "remove" | "removed" | "failed" | "keep"
    detail: str | None = None


def prune_plan(h: History) -> list[PruneItem]:
    """What prune removes (``remove``) and the debris it keeps (``keep``), with why."""
    items: list[PruneItem] = []
    older_than_minutes = h.older_than
    for f in h.files:
        young = f.age_minutes < older_than_minutes
        if f.role == "temp" and young:
            reason = (
                f"temporary file younger than {older_than_minutes} min: a run may be writing it"
            )
            items.append(PruneItem(f.name, reason, "keep"))
        elif f.role == "temp":
            items.append(
                PruneItem(f.name, "half-written temporary file of a run that died", "remove")
            )
        elif f.role == "orphan-companion" and young:
            reason = (
                f"orphan companion younger than {older_than_minutes} min: its run may still be"
                " writing its report"
            )
            items.append(PruneItem(f.name, reason, "keep"))
        elif f.role == "orphan-companion":
            items.append(PruneItem(f.name, "companion no report names", "remove"))
        elif f.role == "orphan-backup":
            reason = (
                "backup no report names: prune never removes a backup;"
                " delete it by hand once verified"
            )
            items.append(PruneItem(f.name, reason, "keep"))
        elif f.role == "side-file":
            reason = "SQLite side file of a backup: may hold part of it; prune never removes it"
            items.append(PruneItem(f.name, reason, "keep"))
    return items


def _still_debris(path: Path, known: DirFile, names: dict[str, list[str]], older_than: int) -> bool:
    """The last look before removing: the same file, still old, still named by no report,
    and by its name neither a backup nor a backup's side file."""
    if is_backup(known.name) or side_file_of(known.name) or known.name in names:
        return False
    if known.role not in ("temp", "orphan-companion"):
        return False
    try:
        st = path.lstat()
    except OSError:
        return False
    if stat.S_ISDIR(st.st_mode) or st.st_ino != known.inode or st.st_size != known.bytes:
        return False
    return (datetime.now(UTC).timestamp() - st.st_mtime) / 60 >= older_than


def prune(h: History, items: list[PruneItem]) -> list[PruneItem]:
    """Remove the ``remove`` items; everything else is returned as it is."""
    names = scan_names(h.report_dir)  # reports written since the scan count too
    files = {f.name: f for f in h.files}
    out: list[PruneItem] = []
    for item in items:
        if item.action != "remove":
            out.append(item)
            continue
        path = h.report_dir / item.file
        if not _still_debris(path, files[item.file], names, h.older_than):
            out.append(PruneItem(item.file, "changed, renamed or named by a report since", "keep"))
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            out.append(PruneItem(item.file, item.reason, "removed", "already gone"))
        except OSError as exc:
            out.append(PruneItem(item.file, item.reason, "failed", exc.strerror or str(exc)))
        else:
            out.append(PruneItem(item.file, item.reason, "removed"))
    return out
