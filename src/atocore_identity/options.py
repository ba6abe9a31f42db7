"""Shared Click options, each defined once and stacked onto the subcommands.

Also the one place that resolves paths from options and the environment
(SPEC §5 table), and the shell-completion callbacks.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from atocore_identity.errors import EXIT_CODES, BadInput
from atocore_identity.render import FORMATS
from atocore_identity.targets import OWNED

EXIT_CODES_HELP = "Exit codes: " + "; ".join(f"{c} {m}" for c, m in EXIT_CODES.items()) + "."


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


def _report_kind(path: Path) -> tuple[str | None, str | None, str | None]:
    """(kind, status, resolutions) of a report file, or Nones if it is not one."""
    try:
        if path.stat().st_size > 64 * 1024 * 1024:
            return None, None, None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None, None
    if not isinstance(doc, dict) or "report_version" not in doc:
        return None, None, None
    kind, status, res = doc.get("kind"), doc.get("status"), doc.get("resolutions")
    return (
        kind if isinstance(kind, str) else None,
        status if isinstance(status, str) else None,
        res if isinstance(res, str) else None,
    )


def _search_dirs(ctx: click.Context, incomplete: str) -> list[Path]:
    """The report dir, and the directory the operator is typing in (or the cwd)."""
    typed = Path(incomplete).parent if incomplete else Path(".")
    dirs = [_report_dir_from(ctx), typed]
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in {x.resolve() for x in out}:
            out.append(d)
    return out


def _shown(directory: Path, path: Path) -> str:
    return str(path) if str(directory) != "." else path.name


def complete_reports(
    kind: str,
) -> Callable[[click.Context, click.Parameter, str], list[CompletionItem]]:
    """Complete files by what they are, read from their content, newest first:
    ``plan`` reports (made with the given --resolutions first), ``resolve``
    files, ``apply`` reports that applied, ``backup`` databases."""

    def complete(
        ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        found: list[tuple[int, float, str, str]] = []
        wanted_res = ctx.params.get("resolutions")
        for directory in _search_dirs(ctx, incomplete):
            pattern = "backup-*.db" if kind == "backup" else "*.json"
            for path in directory.glob(pattern):
                shown = _shown(directory, path)
                if not shown.startswith(incomplete) or not path.is_file():
                    continue
                rank, help_text = 0, kind
                if kind != "backup":
                    got, status, res = _report_kind(path)
                    if got != kind:
                        continue
                    if kind == "apply" and status not in ("applied", "committing"):
                        continue
                    help_text = f"{kind} {status}" if status else kind
                    if kind == "plan" and wanted_res and res is not None:
                        rank = 0 if Path(res).resolve() == Path(wanted_res).resolve() else 1
                    elif kind == "plan" and wanted_res:
                        rank = 1
                found.append((rank, -path.stat().st_mtime, shown, help_text))
        found.sort()
        seen: set[str] = set()
        items = []
        for _, _, shown, help_text in found:
            if shown not in seen:
                seen.add(shown)
                items.append(CompletionItem(shown, help=help_text))
        return items or [CompletionItem(incomplete, type="file")]

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
    from atocore_identity.commands.base import Inputs, read_session
    from atocore_identity.errors import IdentityError
    from atocore_identity.planner import build_plan

    found = _inputs_from(ctx)
    if found is None:
        return []
    try:
        with read_session(Inputs(found[0], found[1], Path("."), 1.0)) as s:
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
ignore_column_option = click.option(
    "--ignore-column",
    "ignore_columns",
    multiple=True,
    metavar="TABLE.COLUMN",
    shell_complete=complete_columns,
    help="A text column that legitimately names aliases: never read or flagged (repeatable).",
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
    help='TOML config: columns = ["TABLE.COLUMN", ...] and ignore = [...].'
    " Env: ATOCORE_IDENTITY_CONFIG.",
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
                f"{value!r} is out of range: give seconds from 0 to {BUSY_TIMEOUT_MAX:g}",
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
