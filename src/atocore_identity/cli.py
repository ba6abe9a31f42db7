"""The Click command group: parse options, call ``commands``, render.

``main`` is the one place where typed errors become a one-line message on
stderr and an exit code. Everything a person reads while a command works
(progress, prompts, warnings) goes to stderr; stdout carries the result.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from atocore_identity import __version__, commands, views
from atocore_identity.demo import write_demo
from atocore_identity.errors import (
    EXIT_BAD_INPUT,
    EXIT_CHANGES_PENDING,
    EXIT_CHECK_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    BadInput,
    IdentityError,
    Refused,
)
from atocore_identity.options import (
    EXIT_CODES_HELP,
    Common,
    common_options,
    complete_picks,
    complete_reports,
    format_option,
    resolutions_option,
    resolve_db,
    resolve_registry,
    resolve_report_dir,
)
from atocore_identity.planner import Collision, Plan
from atocore_identity.render import FORMATS, Doc, emit
from atocore_identity.resolutions import KEEP_RULES
from atocore_identity.targets import load_config_columns


def stderr_console() -> Console:
    return Console(file=sys.stderr, highlight=False)


class Phases:
    """Progress on stderr: a transient bar per phase on a terminal, plain lines
    with --verbose, nothing otherwise."""

    def __init__(self, quiet: bool, verbose: bool) -> None:
        self.console = stderr_console()
        self.live = self.console.is_terminal and not quiet
        self.verbose = verbose and not quiet
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __call__(self, phase: str) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description=phase)
        elif self.verbose:
            click.echo(f"atocore-identity: {phase}", err=True)

    @contextmanager
    def running(self) -> Iterator[Phases]:
        if not self.live:
            yield self
            return
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as progress:
            self.progress = progress
            self.task = progress.add_task("starting", total=None)
            try:
                yield self
            finally:
                self.progress = None
                self.task = None


def build_inputs(common: Common) -> commands.Inputs:
    extra = list(common.columns)
    if common.config is not None:
        extra = load_config_columns(common.config) + extra
    return commands.Inputs(
        resolve_db(common.db),
        resolve_registry(common.registry),
        resolve_report_dir(common.report_dir),
        tuple(extra),
    )


def is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


@click.group(epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="atocore-identity")
def cli() -> None:
    """Find AtoCore rows keyed by a project alias, plan their migration to the
    canonical project id, apply it in one transaction, and verify nothing was lost.

    The runbook: inspect, plan, resolve (if there are collisions), apply, verify.
    """


# -- inspect ---------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP)
@common_options
@format_option
@click.option(
    "--sql",
    "show_sql",
    is_flag=True,
    help="Print the exact read-only SQL inspect runs (sqlite3-shell ready).",
)
def inspect(
    common: Common,
    fmt: str,
    show_sql: bool,
) -> None:
    """Show the blast radius: every alias-keyed row, by table and status."""
    inputs = build_inputs(common)
    phases = Phases(common.quiet, common.verbose)
    with phases.running():
        outcome = commands.run_inspect(inputs, phases)
    if outcome.warning and not common.quiet:
        click.echo(f"Warning: {outcome.warning}", err=True)
    if show_sql and fmt != "json":
        click.echo("\n".join(q.rstrip() + ";" for q in outcome.statements))
        return
    emit(views.inspect_doc(outcome), fmt, outcome.payload)


# -- plan ------------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP)
@common_options
@click.option(
    "--format",
    "fmt",
    type=click.Choice((*FORMATS, "sql")),
    default="text",
    show_default=True,
    help="text, json, markdown, or sql: the script apply runs.",
)
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
    help="Exit 0 nothing to do, 4 changes pending and applicable, 3 apply would refuse.",
)
def plan(
    common: Common,
    fmt: str,
    resolutions: Path | None,
    out: Path | None,
    detailed_exitcode: bool,
) -> None:
    """Compute the migration plan, print it, and write a plan report."""
    inputs = build_inputs(common)
    phases = Phases(common.quiet, common.verbose)
    with phases.running():
        outcome = commands.run_plan(inputs, resolutions, out, phases)
    if fmt == "sql":
        click.echo(outcome.script, nl=False)
    else:
        emit(views.plan_doc(outcome), fmt, outcome.payload)
    if not common.quiet and fmt != "text":
        click.echo(f"plan report: {outcome.report}", err=True)
    if detailed_exitcode:
        p = outcome.plan
        code = EXIT_REFUSED if p.blockers else (EXIT_OK if p.is_empty else EXIT_CHANGES_PENDING)
        sys.exit(code)


# -- resolve -----------------------------------------------------------------


def prompt_choice(collision: Collision) -> str | None:
    """Ask on the terminal which candidate wins; 's' skips."""
    doc = Doc()
    doc.heading(f"{collision.canonical_id}  {collision.ref}")
    views.collision_table(doc, collision, numbered=True)
    emit(doc, "text", None, out=sys.stderr)
    choices = [str(i + 1) for i in range(len(collision.candidates))] + ["s"]
    answer = click.prompt(
        f"Keep which row? [1-{len(collision.candidates)}, s to skip]",
        type=click.Choice(choices),
        show_choices=False,
        err=True,
    )
    if answer == "s":
        return None
    return collision.candidates[int(answer) - 1].id


@cli.command(epilog=EXIT_CODES_HELP)
@common_options
@format_option
@click.option(
    "--keep",
    type=click.Choice(KEEP_RULES),
    default=None,
    help="Decide every collision: the shadow's row, the canonical row's, or the newest.",
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
def resolve(
    common: Common,
    fmt: str,
    keep: str | None,
    picks: tuple[str, ...],
    out: Path | None,
) -> None:
    """Decide which row wins each project_state collision; write a resolutions file."""
    inputs = build_inputs(common)
    phases = Phases(common.quiet, common.verbose)
    chooser = prompt_choice if (keep is None and is_terminal() and fmt != "json") else None
    outcome = commands.run_resolve(inputs, keep, picks, chooser, out, phases)
    emit(views.resolve_doc(outcome), fmt, outcome.payload)


# -- apply -------------------------------------------------------------------


def confirm_on_terminal(plan: Plan) -> bool:
    doc = Doc()
    views.plan_summary(doc, plan)
    emit(doc, "text", None, out=sys.stderr)
    click.echo(views.confirm_text(plan), err=True)
    return click.confirm("Apply this migration now?", default=False, err=True)


@cli.command(epilog=EXIT_CODES_HELP)
@common_options
@format_option
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    shell_complete=complete_reports("plan-*.json"),
    help="Refuse unless the database still matches this plan report's fingerprint.",
)
@resolutions_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask; required without a terminal.")
@click.option(
    "--allow-empty", is_flag=True, help="Succeed (and report) when there is nothing to do."
)
@click.option("--no-backup", is_flag=True, help="Skip the backup (only if you have your own).")
@click.option(
    "--busy-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for a live writer's lock.",
)
def apply(
    common: Common,
    fmt: str,
    plan_file: Path | None,
    resolutions: Path | None,
    yes: bool,
    allow_empty: bool,
    no_backup: bool,
    busy_timeout: float,
) -> None:
    """Migrate in one transaction, with a backup and postcondition checks."""
    inputs = build_inputs(common)
    if yes:
        confirm = None
    elif is_terminal():
        confirm = confirm_on_terminal
    else:
        raise Refused("no terminal to confirm on", "pass --yes to apply without a prompt")
    request = commands.ApplyRequest(
        plan_file=plan_file,
        resolutions=resolutions,
        allow_empty=allow_empty,
        backup=not no_backup,
        busy_timeout=busy_timeout,
        confirm=confirm,
    )
    phases = Phases(common.quiet, common.verbose)
    if confirm is None:
        with phases.running():
            outcome = commands.run_apply_command(inputs, request, phases)
    else:
        outcome = commands.run_apply_command(inputs, request, phases)
    if outcome.warning:
        click.echo(f"Warning: {outcome.warning}", err=True)
    emit(views.apply_doc(outcome), fmt, outcome.payload)


# -- verify -------------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP)
@common_options
@format_option
@click.option(
    "--report",
    "apply_report",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="APPLY_REPORT",
    shell_complete=complete_reports("apply-*.json"),
    help="Check every moved row is where this apply report says.",
)
@click.option(
    "--backup",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    shell_complete=complete_reports("backup-*.db"),
    help="Check conservation: every backup row is in the database or the archive.",
)
def verify(
    common: Common,
    fmt: str,
    apply_report: Path | None,
    backup: Path | None,
) -> None:
    """Check the postconditions; exit 0 when all pass, 1 when any fails."""
    inputs = build_inputs(common)
    phases = Phases(common.quiet, common.verbose)
    with phases.running():
        outcome = commands.run_verify_command(inputs, apply_report, backup, phases)
    emit(views.verify_doc(outcome), fmt, outcome.payload)
    if not outcome.result.ok:
        sys.exit(EXIT_CHECK_FAILED)


# -- demo ---------------------------------------------------------------------


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=Path("demo"))
@click.option("--force", is_flag=True, help="Replace demo files that already exist.")
def demo(directory: Path, force: bool) -> None:
    """Write a small legacy database and registry to DIRECTORY (default ./demo)."""
    db, registry = write_demo(directory, force)
    click.echo(f"database: {db}\nregistry: {registry}", err=True)
    click.echo(f"try: atocore-identity inspect --db {db} --registry {registry}", err=True)


# -- the one place errors become exit codes -----------------------------------


def one_line(text: str) -> str:
    """Names from the data may hold newlines; an error stays one line whatever it quotes."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or bool(os.environ.get("ATOCORE_IDENTITY_DEBUG"))
    try:
        cli.main(args=args, prog_name="atocore-identity", standalone_mode=False)
    except IdentityError as exc:
        if debug:
            traceback.print_exc()
        line = f"Error: {exc.message}"
        if exc.hint:
            line += f"; {exc.hint}"
        click.echo(one_line(line), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Error: aborted; nothing was changed", err=True)
        sys.exit(EXIT_REFUSED)
    except click.ClickException as exc:
        # One line, like every other error; --help still shows the full usage.
        line = f"Error: {exc.format_message()}"
        if isinstance(exc, click.UsageError) and exc.ctx is not None:
            line += f"; see '{exc.ctx.command_path} --help'"
        click.echo(line, err=True)
        sys.exit(EXIT_BAD_INPUT)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Error: interrupted; an unfinished apply rolls back on its own", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(EXIT_OK)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        click.echo(
            f"Error: unexpected {type(exc).__name__}: {exc}; run again with --debug"
            " for the traceback",
            err=True,
        )
        sys.exit(EXIT_BAD_INPUT)


__all__ = ["BadInput", "cli", "main"]
