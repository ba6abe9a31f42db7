"""Shared Click options, each defined once and stacked onto the subcommands
(``common_options`` hands them over as one ``Common``); their completion
callbacks come from ``completion``, path resolution from ``paths``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from atocore_identity.completion import complete_columns, complete_reports
from atocore_identity.errors import EXIT_CODES
from atocore_identity.render import FORMATS

EXIT_CODES_HELP = "Exit codes: " + "; ".join(f"{c} {m}" for c, m in EXIT_CODES.items()) + "."

# -- the options ---------------------------------------------------------------

# Existence and kind are checked by the core, which says what is wrong in one line.
PathType = click.Path(path_type=Path)

db_option = click.option(
    "--db",
    type=PathType,
    default=None,
    metavar="PATH",
    help="AtoCore's SQLite database. Env: ATOCORE_IDENTITY_DB, else "
    "$ATOCORE_DB_DIR/atocore.db, else $ATOCORE_DATA_DIR/db/atocore.db.",
)
registry_option = click.option(
    "--registry",
    type=PathType,
    default=None,
    metavar="PATH",
    help="The project registry JSON. Env: ATOCORE_PROJECT_REGISTRY_PATH.",
)
report_dir_option = click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    metavar="DIR",
    help="Where reports and backups go. Env: ATOCORE_IDENTITY_REPORT_DIR, else "
    "$ATOCORE_DATA_DIR/migrations, else ./data/migrations.",
)
column_option = click.option(
    "--column",
    "columns",
    multiple=True,
    metavar="TABLE.COLUMN",
    shell_complete=complete_columns,
    help="Another text column that holds a project name (repeatable).",
)
ignore_column_option = click.option(
    "--ignore-column",
    "ignore_columns",
    multiple=True,
    metavar="TABLE.COLUMN",
    shell_complete=complete_columns,
    help="A text column that rightly holds aliases: never read or flagged (repeatable).",
)
discover_option = click.option(
    "--discover/--no-discover",
    default=True,
    show_default=True,
    help="Look for alias-keyed values in text columns nobody configured.",
)
config_option = click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    envvar="ATOCORE_IDENTITY_CONFIG",
    metavar="FILE",
    help="A TOML file naming columns to migrate or ignore."
    ' Keys: columns = ["TABLE.COLUMN", ...] and ignore = [...].'
    " Env: ATOCORE_IDENTITY_CONFIG.",
)
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="How to print the result. text: rich on a terminal, plain tables otherwise;"
    " or json or markdown.",
)
yes_option = click.option(
    "--yes", "-y", is_flag=True, help="Do not ask; required without a terminal."
)
no_backup_option = click.option(
    "--no-backup", is_flag=True, help="Skip the backup (only if you have your own)."
)


def format_or_sql_option(script: str) -> Callable[[Any], Any]:
    """--format for the commands that can also print their SQL (plan, revert)."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice((*FORMATS, "sql")),
        default="text",
        show_default=True,
        help=f"How to print the result. text, json, markdown, or sql: the script {script} runs.",
    )


resolutions_option = click.option(
    "--resolutions",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    shell_complete=complete_reports("resolve"),
    help="Collision decisions written by `resolve`.",
)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
verbose_option = click.option("-v", "--verbose", is_flag=True, help="Say each phase on stderr.")
# main reads --debug from argv before Click runs, so it also covers errors
# raised while parsing; the option only has to be accepted and documented.
debug_option = click.option(
    "--debug", is_flag=True, expose_value=False, help="Show the traceback of an error."
)

BUSY_TIMEOUT_DEFAULT = 30.0
# SQLite takes the busy timeout in whole milliseconds as a C int: beyond
# this it wraps around to "do not wait".
BUSY_TIMEOUT_MAX = 2_147_483.0


class Seconds(click.ParamType[float]):
    """A finite number of seconds within SQLite's busy-timeout range."""

    name = "seconds"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or not 0 <= seconds <= BUSY_TIMEOUT_MAX:
            self.fail(
                f"{value!r} is out of range: give seconds from 0 to {BUSY_TIMEOUT_MAX:.0f}",
                param,
                ctx,
            )
        return seconds


busy_timeout_option = click.option(
    "--busy-timeout",
    type=Seconds(),
    default=BUSY_TIMEOUT_DEFAULT,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for another process's lock.",
)


@dataclass(frozen=True)
class Common:
    """The values of the options every subcommand shares."""

    db: Path | None
    registry: Path | None
    report_dir: Path | None
    columns: tuple[str, ...]
    ignore_columns: tuple[str, ...]
    discover: bool
    config: Path | None
    busy_timeout: float
    quiet: bool
    verbose: bool


COMMON = (
    ("db", db_option),
    ("registry", registry_option),
    ("report_dir", report_dir_option),
    ("columns", column_option),
    ("ignore_columns", ignore_column_option),
    ("discover", discover_option),
    ("config", config_option),
    ("busy_timeout", busy_timeout_option),
    ("quiet", quiet_option),
    ("verbose", verbose_option),
)


def common_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Stack the shared options (SPEC §5) and hand them to ``f`` as one ``Common``."""

    @functools.wraps(f)
    def wrapper(**kwargs: Any) -> Any:
        common = Common(**{name: kwargs.pop(name) for name, _ in COMMON})
        return f(common, **kwargs)

    for _, option in reversed(COMMON):
        wrapper = option(wrapper)
    return debug_option(wrapper)
