"""companion.CompanionWriter: records compressed on a thread of their own.

What a caller meets: the records read back in order; a write error of the
compressing thread (a full disk) raised to the caller, never a hang; a block
that fails leaves no thread running and no file behind.
"""

from __future__ import annotations

import errno
import io
import threading
from pathlib import Path

import pytest

from atocore_identity.companion import (
    BATCH,
    CompanionWriter,
    SupersedeRecord,
    read_records,
    writing,
)


def records(n: int) -> list[SupersedeRecord]:
    return [SupersedeRecord("memories", f"m{i}", f"k{i}", "p05-interferometer") for i in range(n)]


def test_many_batches_read_back_whole_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    written = records(BATCH * 9 + 7)  # more batches than the queue holds
    with writing(path) as comp:
        for rec in written:
            comp.write(rec)
    assert list(read_records(path)) == written
    assert [t for t in threading.enumerate() if t.name == "companion-gzip"] == []


class FullDisk(io.RawIOBase):
    """A file that takes ``room`` bytes and then fails like a full disk."""

    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return len(data)


def test_a_full_disk_on_the_thread_is_the_callers_error() -> None:
    comp = CompanionWriter(FullDisk(room=64))  # type: ignore[arg-type]
    with pytest.raises(OSError) as caught:
        for rec in records(BATCH * 20):
            comp.write(rec)
        comp.end()
    assert caught.value.errno == errno.ENOSPC
    comp.abandon()
    assert [t for t in threading.enumerate() if t.name == "companion-gzip"] == []


def test_a_block_that_fails_leaves_no_thread_and_no_file(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    with pytest.raises(KeyError), writing(path) as comp:
        for rec in records(BATCH * 3):
            comp.write(rec)
        raise KeyError("the caller failed mid-way")
    assert list(tmp_path.iterdir()) == []
    assert [t for t in threading.enumerate() if t.name == "companion-gzip"] == []
