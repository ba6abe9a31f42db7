"""Shared Click options, each defined once and stacked onto the subcommands.

Also the one place that resolves paths from options and the environment
(SPEC §5 table), and the shell-completion callbacks.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from atocore_identity.errors import BadInput
from atocore_identity.render import FORMATS
from atocore_identity.targets import OWNED

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 a check failed (verify); 2 bad input or usage; "
    "3 refused by a safety rail (the database was not changed); "
    "4 changes pending (plan --detailed-exitcode)."
)


def resolve_db(value: Path | None) -> Path:
    if value is not None:
        return value
    env = os.environ
    if env.get("ATOCORE_IDENTITY_DB"):
        return Path(env["ATOCORE_IDENTITY_DB"])
    if env.get("ATOCORE_DB_DIR"):
        return Path(env["ATOCORE_DB_DIR"]) / "atocore.db"
    if env.get("ATOCORE_DATA_DIR"):
        return Path(env["ATOCORE_DATA_DIR"]) / "db" / "atocore.db"
    raise BadInput(
        "no database given",
        "pass --db PATH or set ATOCORE_IDENTITY_DB (or ATOCORE_DB_DIR / ATOCORE_DATA_DIR)",
    )


def resolve_registry(value: Path | None) -> Path:
    if value is not None:
        return value
    env = os.environ.get("ATOCORE_PROJECT_REGISTRY_PATH")
    if env:
        return Path(env)
    raise BadInput("no registry given", "pass --registry PATH or set ATOCORE_PROJECT_REGISTRY_PATH")


def resolve_report_dir(value: Path | None) -> Path:
    if value is not None:
        return value
    env = os.environ
    if env.get("ATOCORE_IDENTITY_REPORT_DIR"):
        return Path(env["ATOCORE_IDENTITY_REPORT_DIR"])
    if env.get("ATOCORE_DATA_DIR"):
        return Path(env["ATOCORE_DATA_DIR"]) / "migrations"
    return Path("data/migrations")


# -- completion callbacks -----------------------------------------------------


def _report_dir_from(ctx: click.Context) -> Path:
    value = ctx.params.get("report_dir")
    try:
        return resolve_report_dir(Path(value) if value else None)
    except BadInput:
        return Path("data/migrations")


def complete_reports(
    pattern: str,
) -> Callable[[click.Context, click.Parameter, str], list[CompletionItem]]:
    """Complete report files of one kind from the report dir, newest first."""

    def complete(
        ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        directory = _report_dir_from(ctx)
        if not directory.is_dir():
            return [CompletionItem(incomplete, type="file")]
        found = sorted(directory.glob(pattern), reverse=True)
        items = [str(p) for p in found if str(p).startswith(incomplete)]
        return [CompletionItem(i) for i in items] or [CompletionItem(incomplete, type="file")]

    return complete


def _inputs_from(ctx: click.Context) -> tuple[Path, Path] | None:
    try:
        db = resolve_db(Path(ctx.params["db"]) if ctx.params.get("db") else None)
        reg = resolve_registry(Path(ctx.params["registry"]) if ctx.params.get("registry") else None)
    except BadInput:
        return None
    return db, reg


def complete_picks(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """CATEGORY/KEY=ROW_ID for every candidate of every current collision."""
    from atocore_identity.commands import Inputs, read_session
    from atocore_identity.errors import IdentityError
    from atocore_identity.planner import build_plan

    found = _inputs_from(ctx)
    if found is None:
        return []
    try:
        with read_session(Inputs(found[0], found[1], Path("."))) as s:
            plan = build_plan(s.conn, s.registry, s.targets, s.missing)
    except IdentityError:
        return []
    out = []
    for c in plan.collisions:
        for x in c.candidates:
            value = f"{c.category}/{c.key}={x.id}"
            if value.startswith(incomplete):
                out.append(CompletionItem(value, help=f"{x.project_name}: {x.value[:40]}"))
    return out


def complete_columns(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """TABLE.COLUMN for every text column of the database."""
    from atocore_identity.database import read_only, text_columns
    from atocore_identity.errors import IdentityError

    found = _inputs_from(ctx)
    if found is None:
        return []
    try:
        with read_only(found[0]) as conn:
            columns = text_columns(conn)
    except IdentityError:
        return []
    owned = {f"{t}.{c}" for t, c in OWNED}
    return [CompletionItem(c) for c in columns if c.startswith(incomplete) and c not in owned]


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
config_option = click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    envvar="ATOCORE_IDENTITY_CONFIG",
    metavar="FILE",
    help='TOML config with columns = ["TABLE.COLUMN", ...]. Env: ATOCORE_IDENTITY_CONFIG.',
)
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text (rich on a terminal, plain tables otherwise), json or markdown.",
)
resolutions_option = click.option(
    "--resolutions",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="FILE",
    shell_complete=complete_reports("resolve-*.json"),
    help="Collision decisions written by `resolve`.",
)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
verbose_option = click.option("-v", "--verbose", is_flag=True, help="Say each phase on stderr.")
debug_option = click.option("--debug", is_flag=True, help="Show the traceback of an error.")


@dataclass(frozen=True)
class Common:
    """The values of the options every subcommand shares."""

    db: Path | None
    registry: Path | None
    report_dir: Path | None
    columns: tuple[str, ...]
    config: Path | None
    quiet: bool
    verbose: bool
    debug: bool


COMMON = (
    ("db", db_option),
    ("registry", registry_option),
    ("report_dir", report_dir_option),
    ("columns", column_option),
    ("config", config_option),
    ("quiet", quiet_option),
    ("verbose", verbose_option),
    ("debug", debug_option),
)


def common_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Stack the shared options (SPEC §5) and hand them to ``f`` as one ``Common``."""

    @functools.wraps(f)
    def wrapper(**kwargs: Any) -> Any:
        common = Common(**{name: kwargs.pop(name) for name, _ in COMMON})
        return f(common, **kwargs)

    for _, option in reversed(COMMON):
        wrapper = option(wrapper)
    return wrapper
