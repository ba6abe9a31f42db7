"""Read-only SQLite work on a second connection and thread, beside the main one.

apply and revert check the file (``PRAGMA quick_check``) while they plan,
and check their backup's copy while they archive and write. sqlite3 releases
the GIL while a statement runs, and a check reads pages more than it
allocates, so it overlaps well with the main connection's work (plan's
discovery, which allocates for every value, runs in a process instead:
``discovery.py``). A job's connection is its own: it sees the committed file
(or the backup's copy), never the main connection's TEMP tables or
uncommitted writes, and every job here reads only that. The main thread
always collects or cancels a job before it goes on past the point the job
guards (``in_background`` cancels on any exit).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")

JOB_CACHE_KIB = 256


class Background(Generic[T]):
    """``job(conn)`` on a thread, with a connection from ``connect(stop)``.

    ``connect`` gets the event that cancels the job: it installs it as the
    connection's progress handler (``database.watch``), so a statement in
    flight stops at its next VM step (a quick_check's B-tree walk finishes
    first).
    """

    def __init__(
        self,
        connect: Callable[[threading.Event], sqlite3.Connection],
        job: Callable[[sqlite3.Connection], T],
        name: str,
    ) -> None:
        self._connect = connect
        self._job = job
        self._stop = threading.Event()
        self._result: list[T] = []  # empty until the job returns
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Background[T]:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            conn = self._connect(self._stop)
            try:
                # a job reads each page about once: SQLite's default 2 MiB cache
                # would only add to the process's peak memory
                conn.execute(f"PRAGMA cache_size = {-JOB_CACHE_KIB}")
                self._result.append(self._job(conn))
            finally:
                conn.close()
        except BaseException as exc:
            self._error = exc

    def result(self) -> T:
        """Wait for the job; its return value, or its exception raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if not self._result:
            raise RuntimeError(f"background job {self._thread.name} did not finish")
        return self._result[0]

    def cancel(self) -> None:
        """Stop the job if it still runs and wait for its thread to end."""
        self._stop.set()
        self._thread.join()


@contextmanager
def in_background(
    connect: Callable[[threading.Event], sqlite3.Connection],
    job: Callable[[sqlite3.Connection], T],
    name: str,
) -> Iterator[Background[T]]:
    """Start ``job``; on leaving the block (normally or not) cancel what is left."""
    bg = Background(connect, job, name).start()
    try:
        yield bg
    finally:
        bg.cancel()
