"""Checking the files a report names: is a backup there and whole (SQLite
header, size, ``PRAGMA quick_check`` within a budget), is a companion there
and whole (decompressed to the end, its sha256 compared)? ``FileState`` is
the answer. Read-only: a backup is opened ``immutable``, so no side files.
"""

from __future__ import annotations

import gzip
import hashlib
import sqlite3
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atocore_identity.database import SQLITE_MAGIC, immutable_uri, quick_check_problems

SIDE_SUFFIXES = ("-journal", "-wal", "-shm")


@dataclass
class FileState:
    """A file a report names, or debris: is it there, and is it whole?"""

    name: str
    exists: bool
    condition: str  # "ok" | "missing" | "unreadable" | "unchecked"
    detail: str
    bytes: int | None = None
    quick_check: str | None = None  # "ok" | "failed" | "skipped" | None (not a backup)


def check_backup(
    path: Path, expected_bytes: int | None, budget: list[int], deep: bool
) -> FileState:
    """Header and size always; ``quick_check`` while ``budget`` (bytes) lasts."""
    name = path.name
    opened = _read_header(path)
    if isinstance(opened, FileState):
        return opened
    header, size = opened
    problem = _header_problem(header, size, expected_bytes)
    if problem is not None:
        return FileState(name, True, "unreadable", problem, size)
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
    return _quick_check(path, size)


def _regular_size(path: Path) -> int | FileState:
    """The size of a regular file (never followed if a link), or why not."""
    name = path.name
    try:
        st = path.lstat()
    except FileNotFoundError:
        return FileState(name, False, "missing", "no such file")
    except OSError as exc:
        return FileState(name, False, "unreadable", f"cannot stat: {exc.strerror}")
    if not stat.S_ISREG(st.st_mode):
        return FileState(name, True, "unreadable", "not a regular file", st.st_size)
    return st.st_size


def _read_header(path: Path) -> tuple[bytes, int] | FileState:
    """The first 100 bytes and the size of a regular file, or why not."""
    name = path.name
    size = _regular_size(path)
    if isinstance(size, FileState):
        return size
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        return FileState(name, True, "unreadable", f"cannot read: {exc.strerror}", size)
    return header, size


def _header_problem(header: bytes, size: int, expected_bytes: int | None) -> str | None:
    """Why the header or the size rules the file out, or None."""
    if not header.startswith(SQLITE_MAGIC) or len(header) < 100:
        return "not an SQLite database (no header)"
    if expected_bytes is not None and size != expected_bytes:
        return f"{size} bytes, its report says {expected_bytes}: truncated or replaced"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    valid_for = int.from_bytes(header[92:96], "big")
    changes = int.from_bytes(header[24:28], "big")
    if pages and valid_for == changes and size < pages * page_size:
        return f"{size} bytes, its header says {pages} pages of {page_size}: truncated"
    return None


def _quick_check(path: Path, size: int) -> FileState:
    name = path.name
    try:
        conn = sqlite3.connect(immutable_uri(path), uri=True)
        try:
            found = quick_check_problems(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return FileState(name, True, "unreadable", f"quick_check cannot run: {exc}", size, "failed")
    if found:
        detail = "quick_check: " + "; ".join(found)
        return FileState(name, True, "unreadable", detail, size, "failed")
    return FileState(name, True, "ok", "SQLite header, size and quick_check ok", size, "ok")


def check_companion(path: Path, expected_sha256: str | None) -> FileState:
    """Decompress to the end (streaming): a truncated or damaged gzip fails."""
    name = path.name
    size = _regular_size(path)
    if isinstance(size, FileState):
        return size
    digest = hashlib.sha256()
    lines = 0
    try:
        with open(path, "rb") as raw:
            hashing = _Hashing(raw, digest)
            with gzip.GzipFile(fileobj=hashing, mode="rb") as handle:
                while chunk := handle.read(1 << 20):
                    lines += chunk.count(b"\n")
    except (OSError, EOFError, zlib.error) as exc:
        return FileState(name, True, "unreadable", f"not a complete gzip: {exc}", size)
    if expected_sha256 is not None and digest.hexdigest() != expected_sha256:
        return FileState(name, True, "unreadable", "its sha256 differs from the report's", size)
    return FileState(name, True, "ok", f"complete gzip, {lines} lines", size)


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
