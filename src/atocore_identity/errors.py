"""Typed errors that carry their exit code.

The core raises these; exactly one place in the CLI (``cli.main``) turns them
into a one-line message on stderr and the process exit code.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_CHANGES_PENDING = 4  # plan --detailed-exitcode only
EXIT_BUG = 70  # BSD sysexits EX_SOFTWARE: an unexpected exception
EXIT_SIGINT = 130  # 128 + SIGINT, as shells report it
EXIT_SIGTERM = 143  # 128 + SIGTERM

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_CHECK_FAILED: "a check failed (verify)",
    EXIT_BAD_INPUT: "bad input or usage",
    EXIT_REFUSED: "refused by a safety rail (the database was not changed)",
    EXIT_CHANGES_PENDING: "changes pending (plan --detailed-exitcode)",
    EXIT_BUG: "an unexpected error (a bug: rerun with --debug and report it)",
    EXIT_SIGINT: "interrupted by Ctrl-C (SIGINT)",
    EXIT_SIGTERM: "terminated by SIGTERM",
}


class IdentityError(Exception):
    """Base class: a message for a person, a hint, and an exit code."""

    exit_code: int = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"

    def __reduce__(self) -> tuple[type[IdentityError], tuple[str, str | None]]:
        # pickled with its hint: discovery's worker process sends its errors back
        return (type(self), (self.message, self.hint))


class BadInput(IdentityError):
    """Unusable input: a missing file, a bad registry, a database we cannot read."""

    exit_code = EXIT_BAD_INPUT


class RegistryError(BadInput):
    """The registry is missing, unreadable or invalid."""


class DatabaseError(BadInput):
    """The database is missing, not SQLite, locked, corrupt or lacks `projects`."""


class DatabaseLocked(DatabaseError):
    """Another process holds a lock for longer than we were willing to wait.

    Exit 2 for the read commands (the input is unusable right now); apply
    turns it into a refusal (exit 3), the same as a busy write lock.
    """


class Refused(IdentityError):
    """A safety rail refused; nothing in the database changed."""

    exit_code = EXIT_REFUSED


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; raised by the CLI's signal handler so every
    ``finally`` runs (rollback, temp files removed) before the process exits."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum
        self.exit_code = 128 + signum


class InterruptedAfterCommit(Interrupted):
    """SIGINT or SIGTERM arrived while COMMIT and its reports ran: held back
    until they finished, so the write is committed; nothing was left to stop
    (``transaction.signals_deferred``). ``warning``: what went wrong with its
    report, if anything (set by the command that kept the report)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.warning: str | None = None
