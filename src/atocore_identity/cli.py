"""The Click command group: parse options, call ``commands``, render.

Each command imports its ``commands`` module when it runs, and rich loads
only for a terminal: a run pays the start-up of its own command, not of all
eight (importing what plan needs, 20 runs each, alternating: 0.18-0.21 ->
0.12-0.15 s; decision 50).

``main`` is the one place where typed errors become a one-line message on
stderr and an exit code. Everything a person reads while a command works
(progress, prompts, warnings) goes to stderr; stdout carries the result.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from atocore_identity import __version__
from atocore_identity.commands.base import Inputs
from atocore_identity.completion import complete_picks, complete_report_projects, complete_reports
from atocore_identity.errors import (
    EXIT_BAD_INPUT,
    EXIT_BUG,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_SIGINT,
    IdentityError,
    Interrupted,
    InterruptedAfterCommit,
)
from atocore_identity.history import PRUNE_AGE_MINUTES
from atocore_identity.interaction import (
    Phases,
    confirm_on_terminal,
    confirm_revert,
    confirmer,
    is_terminal,
    prompt_choice,
)
from atocore_identity.options import (
    EXIT_CODES_HELP,
    Common,
    common_options,
    debug_option,
    format_option,
    format_or_sql_option,
    no_backup_option,
    report_dir_option,
    resolutions_option,
    yes_option,
)
from atocore_identity.paths import resolve_db, resolve_registry, resolve_report_dir
from atocore_identity.render import emit
from atocore_identity.resolutions import KEEP_RULES
from atocore_identity.targets import Config, load_config


@dataclass(frozen=True)
class Run:
    """What a subcommand gets once the shared options are resolved."""

    inputs: Inputs
    phases: Phases
    quiet: bool


def build_inputs(common: Common, phases: Phases) -> Inputs:
    config = load_config(common.config) if common.config is not None else Config()
    return Inputs(
        db=resolve_db(common.db),
        registry=resolve_registry(common.registry),
        report_dir=resolve_report_dir(common.report_dir),
        busy_timeout=common.busy_timeout,
        columns=config.columns + common.columns,
        ignore=config.ignore + common.ignore_columns,
        discover=common.discover,
        progress=phases,
    )


def with_run(f: Callable[..., int]) -> Callable[..., int]:
    """Stack the shared options and resolve them once into a ``Run``."""

    @common_options
    @functools.wraps(f)
    def wrapper(common: Common, **kwargs: Any) -> int:
        phases = Phases(common.quiet, common.verbose)
        return f(Run(build_inputs(common, phases), phases, common.quiet), **kwargs)

    return wrapper


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="atocore-identity")
def cli() -> None:
    """Find AtoCore rows keyed by a project alias, plan their migration to the
    canonical project id, apply it in one transaction, and verify nothing was lost.

    The runbook: inspect, plan, resolve (if there are collisions), apply, verify.
    """


# -- inspect ---------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP, short_help="Show the blast radius (read-only).")
@with_run
@format_option
@click.option(
    "--sql",
    "show_sql",
    is_flag=True,
    help="Print the exact read-only SQL inspect runs (sqlite3-shell ready).",
)
def inspect(run: Run, fmt: str, show_sql: bool) -> int:
    """Show the blast radius: every alias-keyed row, by table and status."""
    from atocore_identity.commands import inspect as inspect_cmd

    with run.phases.running():
        outcome = inspect_cmd.run(run.inputs)
    if outcome.warning and not run.quiet:
        click.echo(f"Warning: {outcome.warning}", err=True)
    if show_sql and fmt != "json":
        click.echo("\n".join(q.rstrip() + ";" for q in outcome.statements))
    else:
        emit(inspect_cmd.view(outcome), fmt, outcome.payload)
    return outcome.exit_code


# -- plan ------------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP, short_help="Compute the migration plan (read-only).")
@with_run
@format_or_sql_option("apply")
@resolutions_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Where to write the plan report (default: the report dir).",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 nothing to do; 4 changes pending and applicable; 3 apply would refuse.",
)
def plan(
    run: Run, fmt: str, resolutions: Path | None, out: Path | None, detailed_exitcode: bool
) -> int:
    """Compute the migration plan, print it, and write a plan report."""
    from atocore_identity.commands import plan as plan_cmd

    with run.phases.running():
        outcome = plan_cmd.run(run.inputs, resolutions, out, detailed_exitcode)
    if fmt == "sql":
        click.echo(outcome.script, nl=False)
        for warning in outcome.plan.warnings:  # the script has no room for them
            click.echo(f"Warning: {warning}", err=True)
    else:
        emit(plan_cmd.view(outcome), fmt, outcome.payload)
    if not run.quiet and fmt != "text":
        click.echo(f"plan report: {outcome.report}", err=True)
    return outcome.exit_code


# -- resolve -----------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP, short_help="Decide which row wins each collision.")
@with_run
@format_option
@click.option(
    "--keep",
    type=click.Choice(KEEP_RULES),
    default=None,
    help="Decide every collision: the shadow's row; the canonical row's; or the newest.",
)
@click.option(
    "--pick",
    "picks",
    multiple=True,
    metavar="CATEGORY/KEY=ROW_ID",
    shell_complete=complete_picks,
    help="Decide one collision (repeatable).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    help="Where to write the resolutions file.",
)
def resolve(run: Run, fmt: str, keep: str | None, picks: tuple[str, ...], out: Path | None) -> int:
    """Decide which row wins each project_state collision; write a resolutions file."""
    from atocore_identity.commands import resolve as resolve_cmd

    chooser = prompt_choice if (keep is None and is_terminal() and fmt != "json") else None
    outcome = resolve_cmd.run(run.inputs, keep, picks, chooser, out)
    emit(resolve_cmd.view(outcome), fmt, outcome.payload)
    return outcome.exit_code


# -- apply -------------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP, short_help="Migrate in one transaction.")
@with_run
@format_option
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    shell_complete=complete_reports("plan"),
    help="Refuse unless the database still matches this plan report's fingerprint.",
)
@resolutions_option
@yes_option
@click.option(
    "--allow-empty", is_flag=True, help="Succeed (and report) when there is nothing to do."
)
@no_backup_option
def apply(
    run: Run,
    fmt: str,
    plan_file: Path | None,
    resolutions: Path | None,
    yes: bool,
    allow_empty: bool,
    no_backup: bool,
) -> int:
    """Migrate in one transaction, with a backup and postcondition checks."""
    from atocore_identity.commands import apply as apply_cmd

    confirm = confirmer(yes, confirm_on_terminal, "apply")
    options = apply_cmd.ApplyOptions(plan_file, resolutions, allow_empty, not no_backup)
    with run.phases.running(bar=confirm is None):
        outcome = apply_cmd.run(run.inputs, options, confirm)
    if outcome.warning:
        click.echo(f"Warning: {outcome.warning}", err=True)
    emit(apply_cmd.view(outcome), fmt, outcome.payload)
    return outcome.exit_code


# -- verify -------------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP, short_help="Check the postconditions (exit 1 on failure).")
@with_run
@format_option
@click.option(
    "--report",
    "apply_report",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="APPLY_REPORT",
    shell_complete=complete_reports("apply"),
    help="Check every moved row is where this apply report says.",
)
@click.option(
    "--backup",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    shell_complete=complete_reports("backup"),
    help="Check conservation: every backup row is in the database or the archive.",
)
def verify(run: Run, fmt: str, apply_report: Path | None, backup: Path | None) -> int:
    """Check the postconditions; exit 0 when all pass, 1 when any fails."""
    from atocore_identity.commands import verify as verify_cmd

    with run.phases.running():
        outcome = verify_cmd.run(run.inputs, apply_report, backup)
    emit(verify_cmd.view(outcome), fmt, outcome.payload)
    return outcome.exit_code


# -- revert -------------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP, short_help="Undo an apply and keep what was written since.")
@with_run
@format_or_sql_option("revert")
@click.option(
    "--report",
    "apply_report",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    metavar="APPLY_REPORT",
    shell_complete=complete_reports("apply"),
    help="The report of the apply to undo.",
)
@click.option(
    "--project",
    "projects",
    multiple=True,
    metavar="ID",
    shell_complete=complete_report_projects,
    help="Revert only this canonical project's part of the apply (repeatable).",
)
@click.option("--dry-run", is_flag=True, help="Show what revert would do; change nothing.")
@click.option(
    "--skip-changed", is_flag=True, help="Revert the rest when rows changed since the apply."
)
@yes_option
@no_backup_option
def revert(
    run: Run,
    fmt: str,
    apply_report: Path,
    projects: tuple[str, ...],
    dry_run: bool,
    skip_changed: bool,
    yes: bool,
    no_backup: bool,
) -> int:
    """Undo an apply from its report and archive, keeping every row written since."""
    from atocore_identity.commands import revert as revert_cmd

    dry_run = dry_run or fmt == "sql"  # the script is printed, not run
    options = revert_cmd.RevertOptions(apply_report, projects, skip_changed, not no_backup, dry_run)
    confirm = None if dry_run else confirmer(yes, confirm_revert, "revert")
    with run.phases.running(bar=confirm is None):
        outcome = revert_cmd.run(run.inputs, options, confirm)
    if outcome.warning:
        click.echo(f"Warning: {outcome.warning}", err=True)
    if fmt == "sql":
        click.echo(outcome.script, nl=False)
    else:
        emit(revert_cmd.view(outcome), fmt, outcome.payload)
    return outcome.exit_code


# -- history ------------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP, short_help="List every run in the report dir (read-only).")
@report_dir_option
@format_option
@click.option(
    "--prune",
    "prune_debris",
    is_flag=True,
    help="Remove debris: old .tmp-* files and companions no report names."
    " A dry run unless --yes; never a backup.",
)
@click.option("--yes", "-y", is_flag=True, help="With --prune: really remove.")
@click.option(
    "--older-than",
    type=click.IntRange(min=0),
    default=PRUNE_AGE_MINUTES,
    show_default=True,
    metavar="MINUTES",
    help="--prune leaves debris younger than this: a running command may own it.",
)
@click.option("--deep", is_flag=True, help="quick_check every backup even beyond the 1 GiB budget.")
@debug_option
def history(
    report_dir: Path | None, fmt: str, prune_debris: bool, yes: bool, older_than: int, deep: bool
) -> int:
    """List every run in the report dir, newest first, and flag what needs attention.

    Needs no --db or --registry, changes nothing and writes no report; only
    --prune --yes removes files. Exit 0 (also when something needs attention),
    1 if --prune --yes could not remove a file.
    """
    from atocore_identity.commands import history as history_cmd

    if yes and not prune_debris:
        raise click.UsageError("--yes goes with --prune")
    outcome = history_cmd.run(
        resolve_report_dir(report_dir),
        prune_debris=prune_debris,
        remove=yes,
        older_than=older_than,
        deep=deep,
    )
    emit(history_cmd.view(outcome), fmt, outcome.payload)
    return outcome.exit_code


# -- demo ---------------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP, short_help="Write a small legacy database to try the tool.")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=Path("demo"))
@click.option("--force", is_flag=True, help="Replace demo files that already exist.")
def demo(directory: Path, force: bool) -> int:
    """Write a small legacy database and registry to DIRECTORY (default ./demo)."""
    from atocore_identity.demo import write_demo

    db, registry = write_demo(directory, force)
    click.echo(f"database: {db}\nregistry: {registry}", err=True)
    click.echo(f"try: atocore-identity inspect --db {db} --registry {registry}", err=True)
    return EXIT_OK


# -- the one place errors become exit codes -----------------------------------


def one_line(text: str) -> str:
    """Names from the data may hold newlines; an error stays one line whatever it quotes."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _raise_interrupted(signum: int, _frame: object) -> None:
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; the only caller of sys.exit."""
    sys.exit(run_main(argv))


def run_main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or bool(os.environ.get("ATOCORE_IDENTITY_DEBUG"))
    # SIGINT and SIGTERM alike unwind through every finally: an open write
    # rolls back, temp files go, and an apply records the attempt.
    held = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        rv = cli.main(args=args, prog_name="atocore-identity", standalone_mode=False)
        return rv if isinstance(rv, int) else EXIT_OK
    except IdentityError as exc:
        if debug:
            traceback.print_exc()
        line = f"Error: {exc.message}"
        if exc.hint:
            line += f"; {exc.hint}"
        click.echo(one_line(line), err=True)
        return exc.exit_code
    except InterruptedAfterCommit as exc:
        name = "interrupted (Ctrl-C)" if exc.signum == signal.SIGINT else "terminated (SIGTERM)"
        report = f"but {exc.warning}" if exc.warning else "and its report written"
        click.echo(
            one_line(
                f"Error: {name} during COMMIT, held back until it finished: the write is"
                f" committed {report}; see `atocore-identity history`"
            ),
            err=True,
        )
        return exc.exit_code
    except Interrupted as exc:
        name = "interrupted (Ctrl-C)" if exc.signum == signal.SIGINT else "terminated (SIGTERM)"
        click.echo(f"Error: {name}; an unfinished write rolled back, nothing changed", err=True)
        return exc.exit_code
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            click.echo("Error: interrupted (Ctrl-C); nothing was changed", err=True)
            return EXIT_SIGINT
        click.echo("Error: aborted at the prompt; nothing was changed", err=True)
        return EXIT_REFUSED
    except click.ClickException as exc:
        # One line, like every other error; --help still shows the full usage.
        line = f"Error: {exc.format_message()}"
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            line += f"; see '{exc.ctx.command_path} --help'"
        click.echo(one_line(line), err=True)
        return EXIT_BAD_INPUT
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        if debug:
            traceback.print_exc()
        click.echo(
            f"Error: unexpected {type(exc).__name__}: {exc}; this is a bug in atocore-identity:"
            " rerun with --debug and report the traceback",
            err=True,
        )
        return EXIT_BUG
    finally:
        for signum, handler in held.items():  # in-process callers get theirs back
            signal.signal(signum, handler)
