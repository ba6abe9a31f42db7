"""prune: removing the report dir's provable debris (old temp files, old
companions no report names), never a backup, a backup's side file or a file
a report names; every file gets a last look just before it is removed."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from atocore_identity import history
from atocore_identity.history import DirFile, History, is_backup, side_file_of


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
    names = history.scan_names(h.report_dir)  # reports written since the scan count too
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
