"""What needs attention in a report dir: one ``Flag`` per problem (a run
left committing, refused, rolled back or failing verify; a damaged or
missing backup or companion; debris), each with what to do about it.
Reads a ``History``; changes nothing."""

from __future__ import annotations

from atocore_identity.artifacts import FileState
from atocore_identity.history import DirFile, Flag, History, Run, side_file_of, text_of


def flags(h: History) -> list[Flag]:
    found: list[Flag] = []
    for run in h.runs:
        if run.readable:
            found += _run_flags(h, run)
    for f in h.files:
        debris = _debris_flag(f, h.older_than)
        if debris is not None:
            found.append(debris)
    return found


def _run_flags(h: History, run: Run) -> list[Flag]:
    """One run's flags, in the order history lists them."""
    found: list[Flag] = []
    if run.status == "committing":
        found.append(_committing_flag(h, run))
    ended = _ended_flag(run)
    if ended is not None:
        found.append(ended)
    if run.kind == "verify" and run.status == "failed" and not _passed_since(h.runs, run):
        found.append(
            Flag(
                "verify-failed",
                "error",
                run.file,
                f"verify found {run.counts.get('failed', '?')} failing checks",
                f"read them (`jq .checks {h.report_dir / run.file}`); see docs/runbook.md step 6",
            )
        )
    applied = run.status in ("applied", "reverted", "committing")  # it changed the data
    for role, state in (("backup", run.backup), ("companion", run.companion)):
        if state is None or state.condition in ("ok", "unchecked"):
            continue
        found.append(_file_flag(run, role, state, applied))
    for ref in run.refers_to:
        if ref.field == "apply_report" and ref.file is None:
            found.append(
                Flag(
                    "reference-missing",
                    "warning",
                    run.file,
                    f"its apply_report {ref.path} is not in the report dir",
                    "move it back beside the other reports, or find where it went",
                )
            )
    return found


def _committing_flag(h: History, run: Run) -> Flag:
    """A run that died at COMMIT: say how to learn which way it went."""
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
    return Flag(
        "committing",
        "error",
        run.file,
        f"{run.kind} left 'committing': the process died at COMMIT{since}",
        action,
    )


def _ended_flag(run: Run) -> Flag | None:
    """A run that ended before COMMIT (refused, interrupted, rolled back): nothing changed."""
    if run.status == "refused":
        error = text_of(run.doc.get("error")) or "no reason given"
        error = error.removeprefix(f"{run.kind} refused: ")
        hint = text_of(run.doc.get("hint"))
        return Flag(
            "refused",
            "notice",
            run.file,
            f"{run.kind} refused ({error}); nothing was changed",
            hint or "read its error; nothing to undo",
        )
    if run.status == "interrupted":
        return Flag(
            "interrupted",
            "notice",
            run.file,
            f"{run.kind} interrupted by a signal before COMMIT; it rolled back,"
            " nothing was changed",
            "run it again when ready",
        )
    if run.status == "rolled-back":
        error = text_of(run.doc.get("error")) or "a postcondition failed"
        return Flag(
            "rolled-back",
            "warning",
            run.file,
            f"{run.kind} rolled back ({error}); nothing was changed",
            "a bug in atocore-identity: keep the report dir and report it",
        )
    return None


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
