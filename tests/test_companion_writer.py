"""companion.CompanionWriter: records compressed on a thread of their own.

What a caller meets: the records read back in order; a write error of the
compressing thread (a full disk) raised to the caller, never a hang; a block
that fails leaves no thread running and no file behind.
"""

from __future__ import annotations

import errno
import io
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from atocore_identity.companion import (
    BATCH,
    CompanionWriter,
    SupersedeRecord,
    read_records,
    writing,
)


def gzip_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "companion-gzip"}


def records(n: int) -> list[SupersedeRecord]:
    return [SupersedeRecord("memories", f"m{i}", f"k{i}", "p05-interferometer") for i in range(n)]


def test_many_batches_read_back_whole_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    before = gzip_threads()
    written = records(BATCH * 9 + 7)  # more batches than the queue holds
    with writing(path) as comp:
        for rec in written:
            comp.write(rec)
    assert list(read_records(path)) == written
    assert gzip_threads() == before


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


def within(seconds: float, body: Callable[[], None]) -> None:
    """Run ``body`` on a thread and fail, not hang, if it does not end in time."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            body()
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: a hang"
    if failure:
        raise failure[0]


def test_a_full_disk_on_the_thread_is_the_callers_error() -> None:
    before = gzip_threads()
    comp = CompanionWriter(FullDisk(room=64))  # type: ignore[arg-type]

    def write_all() -> None:
        for rec in records(BATCH * 20):
            comp.write(rec)
        comp.end()

    with pytest.raises(OSError) as caught:
        within(60, write_all)
    assert caught.value.errno == errno.ENOSPC
    comp.abandon()
    assert gzip_threads() == before


class FailsOnceOnTheThread(io.RawIOBase):
    """A file whose one write from the compressing thread, once armed, fails
    (a transient EIO); every other write succeeds."""

    def __init__(self) -> None:
        self.armed = False
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.armed and threading.current_thread().name == "companion-gzip":
            self.armed = False
            raise OSError(errno.EIO, "Input/output error")
        self.data += data
        return len(data)


def test_an_error_of_the_last_batch_on_the_thread_is_raised_at_the_end() -> None:
    """The error comes after the caller's last write: only end() can tell it,
    and a companion missing that batch must never be finished as whole."""
    raw = FailsOnceOnTheThread()
    comp = CompanionWriter(raw)  # type: ignore[arg-type]
    try:
        for rec in records(BATCH * 2):
            comp.write(rec)
        # one batch less one record: buffered, sent to the thread only by end()
        # (random text does not compress: zlib hands it to the file at once)
        for _ in range(BATCH - 1):
            comp.write(SupersedeRecord("memories", os.urandom(600).hex(), "k", "p"))
        raw.armed = True
        with pytest.raises(OSError) as caught:
            within(60, comp.end)
        assert caught.value.errno == errno.EIO
    finally:
        comp.abandon()
    assert not raw.armed  # the failure did happen, on the thread


def test_a_block_that_fails_leaves_no_thread_and_no_file(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    before = gzip_threads()
    with pytest.raises(KeyError), writing(path) as comp:
        for rec in records(BATCH * 3):
            comp.write(rec)
        raise KeyError("the caller failed mid-way")
    assert list(tmp_path.iterdir()) == []
    assert gzip_threads() == before
