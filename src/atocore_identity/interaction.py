"""What a person sees and answers on a terminal: progress and prompts, on stderr.

Progress is a transient rich bar per phase on a terminal, plain lines with
--verbose, nothing otherwise; prompts ask which collision candidate wins and
whether to apply or revert. stdout stays for the result alone.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import click

from atocore_identity.errors import Refused
from atocore_identity.plan_objects import Collision, Plan
from atocore_identity.render import Doc, emit, terminal_console

if TYPE_CHECKING:  # rich and the commands load when a terminal or a prompt needs them
    from rich.progress import Progress, TaskID

    from atocore_identity.reverter import Inverse

T = TypeVar("T")


class Phases:
    """Progress on stderr: a transient bar per phase on a terminal, plain lines
    with --verbose, nothing otherwise."""

    def __init__(self, quiet: bool, verbose: bool) -> None:
        self.console = None if quiet else terminal_console(sys.stderr)
        self.verbose = verbose and not quiet
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def __call__(self, phase: str) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description=phase)
        elif self.verbose:
            click.echo(f"atocore-identity: {phase}", err=True)

    @contextmanager
    def running(self, bar: bool = True) -> Iterator[Phases]:
        """Show the bar while the block runs; ``bar=False`` while a prompt may
        come (a live bar would redraw over the question)."""
        if self.console is None or not bar:
            yield self
            return
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

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


def confirmer(yes: bool, ask: Callable[[T], bool], command: str) -> Callable[[T], bool] | None:
    """None with --yes (do not ask), ``ask`` on a terminal; off a terminal
    without --yes, a refusal: nobody could answer."""
    if yes:
        return None
    if not is_terminal():
        raise Refused("no terminal to confirm on", f"pass --yes to {command} without a prompt")
    return ask


def is_terminal() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def prompt_choice(collision: Collision) -> str | None:
    """Ask on the terminal which candidate wins; 's' skips."""
    from atocore_identity.commands import plan as plan_cmd

    doc = Doc()
    doc.heading(f"{collision.canonical_id}  {collision.ref}")
    plan_cmd.collision_table(doc, collision, numbered=True)
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


def confirm_on_terminal(plan: Plan) -> bool:
    from atocore_identity.commands import plan as plan_cmd

    doc = Doc()
    plan_cmd.plan_summary(doc, plan)
    emit(doc, "text", None, out=sys.stderr)
    click.echo(plan_cmd.confirm_text(plan), err=True)
    return click.confirm("Apply this migration now?", default=False, err=True)


def confirm_revert(inverse: Inverse) -> bool:
    from atocore_identity.commands import revert as revert_cmd

    doc = Doc()
    revert_cmd.summary(doc, inverse)
    emit(doc, "text", None, out=sys.stderr)
    click.echo(revert_cmd.confirm_text(inverse), err=True)
    return click.confirm("Revert now?", default=False, err=True)
