"""history: what the report dir says ran (SPEC §7): reading the directory,
classifying its files, and the model (``Run``, ``DirFile``, ``Flag``,
``History``) that ``attention`` (what needs attention) and ``prune`` (removing
debris) work on. Reads one directory, never writes to it. Every file is
classified by its name first and its content second:

- reports: JSON objects with ``report_version`` and ``kind``; version 1 is
  read (generically: any kind, so kinds added later are listed too), other
  versions are listed, not read; anything else is ignored;
- backups (``backup-*.db``) and companions (``*.rows.jsonl.gz``): checked by
  ``artifacts`` (backups newest first, within ``QUICK_CHECK_BUDGET`` bytes of
  ``quick_check``; ``deep`` lifts it);
- debris: ``.tmp-*`` (and ``.probe-*``) files half-written by a run that
  died, backups and companions no report names, SQLite side files beside a
  backup.

Files are matched to the reports that name them by file name: reports name
their backup and companion by file name beside them, and every name the tool
writes carries a UTC time to the microsecond.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from atocore_identity.artifacts import SIDE_SUFFIXES, FileState, check_backup, check_companion
from atocore_identity.errors import BadInput
from atocore_identity.reports import REPORT_VERSION

# quick_check reads every page: up to this many bytes of backups per run
# (newest first), about a second warm and a few seconds from a cold disk.
QUICK_CHECK_BUDGET = 1 << 30
# A report is a few KiB to a few MiB; a bigger file is not read.
MAX_REPORT_BYTES = 64 << 20
# prune removes temp files and orphan companions untouched for this long.
PRUNE_AGE_MINUTES = 60

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


def text_of(value: Any) -> str | None:
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
        database=text_of(doc.get("database")),
        registry_path=text_of(registry.get("path")),
        registry_sha256=text_of(registry.get("sha256")),
        fingerprint=text_of(doc.get("fingerprint")),
        counts=counts,
        headline=headline(kind, counts),
        doc=doc,
        moment=moment,
    )


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
    """Read the report dir; change nothing. ``flags`` is left empty:
    ``attention.flags`` says what needs attention."""
    scanned = now or datetime.now(UTC)
    entries = _list_dir(report_dir)
    runs, ignored, other = _sort_entries(entries)
    runs.sort(key=lambda r: (r.moment, r.file), reverse=True)
    _link(runs, {e.name for e in entries})
    named = _names(runs)
    budget = [QUICK_CHECK_BUDGET]
    checked = _check_run_files(report_dir, runs, budget, deep)
    files = [_dir_file(entry, entries, scanned, named, checked, budget, deep) for entry in other]
    return History(report_dir, scanned, runs, files, [], ignored, deep, older_than)


def _sort_entries(entries: list[_Entry]) -> tuple[list[Run], list[str], list[_Entry]]:
    """Reports read as runs, JSON that is not a report (ignored), and every
    other file (backups, companions, debris); directories are skipped."""
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
    return runs, ignored, other


def _check_run_files(
    report_dir: Path, runs: list[Run], budget: list[int], deep: bool
) -> dict[str, FileState]:
    """Check the backup and companion each run names, once per file; fills
    ``run.backup`` and ``run.companion`` and returns the states by file name."""
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
                    report_dir / base, text_of(run.doc.get("companion_sha256"))
                )
            run.companion = checked[base]
    return checked


def _dir_file(
    entry: _Entry,
    entries: list[_Entry],
    scanned: datetime,
    named: dict[str, list[str]],
    checked: dict[str, FileState],
    budget: list[int],
    deep: bool,
) -> DirFile:
    """A file that is not a report: its role, and its state (checked here
    when no report named it)."""
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
    return DirFile(
        name,
        role,
        named.get(name, []),
        entry.st.st_size,
        age,
        state,
        note,
        entry.st.st_ino,
    )


def _second_name(entry: _Entry, entries: list[_Entry]) -> str | None:
    """A temp file still linked to its final name: the run died between the two."""
    if entry.st.st_nlink < 2:
        return None
    for other in entries:
        if other.name != entry.name and other.st.st_ino == entry.st.st_ino:
            return f"a second name of {other.name} (removing it removes only this name)"
    return None
