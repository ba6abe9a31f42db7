"""Shell completion: the callbacks that offer values at <TAB> (report files,
a report's projects, collision picks, TABLE.COLUMN) and the bash, zsh and
fish scripts (Click's, with fixes), registered with Click on import."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG as stat_is_file
from typing import Any

import click
from click.shell_completion import (
    BashComplete,
    CompletionItem,
    FishComplete,
    ShellComplete,
    ZshComplete,
    add_completion_class,
)

from atocore_identity.database import SQLITE_MAGIC
from atocore_identity.errors import BadInput, IdentityError
from atocore_identity.paths import resolve_db, resolve_registry, resolve_report_dir
from atocore_identity.reports import CHANGED_SOMETHING, file_sha256
from atocore_identity.targets import OWNED

# -- completion callbacks -----------------------------------------------------
#
# Each runs at every <TAB> (the shell scripts call the program with
# _ATOCORE_IDENTITY_COMPLETE set): they never raise, never write, and fall
# back to the shell's own file completion when they have nothing to offer.

# A report bigger than this is judged by its file name, not read at <TAB>.
_READ_LIMIT = 16 * 1024 * 1024


def _option_value(ctx: click.Context, opt: str) -> Any:
    """The value given earlier on the line to the option spelled ``opt``, whatever
    its parameter name (``--report`` is ``apply_report`` in verify)."""
    for param in ctx.command.params:
        if opt in param.opts and param.name is not None:
            return ctx.params.get(param.name)
    return None


def _user_path(value: Any) -> Path | None:
    """A path as typed on the line: the shell has not expanded ``~`` yet."""
    if not value:
        return None
    return Path(os.path.expanduser(str(value)))


def _report_dir_from(ctx: click.Context) -> Path:
    value = _option_value(ctx, "--report-dir")
    try:
        return resolve_report_dir(Path(str(value)) if value else None)
    except BadInput:
        return Path("data/migrations")


@dataclass(frozen=True)
class _Report:
    """What completion needs from a report file's JSON."""

    kind: str | None
    status: str | None
    created: float | None
    resolutions: str | None
    resolutions_sha256: str | None
    applicable: bool | None
    decisions: int | None
    backup: str | None


def _read_report(path: Path) -> _Report | None:
    """The fields of an atocore-identity report, or None if the file is not one
    (or too big to read at <TAB>)."""
    try:
        if path.stat().st_size > _READ_LIMIT:
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or "report_version" not in doc:
        return None

    def text(key: str, within: Any = doc) -> str | None:
        value = within.get(key) if isinstance(within, dict) else None
        return value if isinstance(value, str) else None

    created: float | None = None
    with contextlib.suppress(ValueError):
        created = datetime.fromisoformat(text("created_at") or "").timestamp()
    applicable = doc.get("applicable")
    decisions = doc.get("decisions")
    return _Report(
        kind=text("kind"),
        status=text("status"),
        created=created,
        resolutions=text("resolutions"),
        resolutions_sha256=text("resolutions_sha256"),
        applicable=applicable if isinstance(applicable, bool) else None,
        decisions=len(decisions) if isinstance(decisions, list) else None,
        backup=text("path", doc.get("backup")),
    )


def _report_kind(path: Path, size: int) -> tuple[str | None, str | None, _Report | None]:
    """(kind, status, fields) of a report file of ``size`` bytes, read from its
    JSON; Nones if it is not a report. A file over the read limit is judged by
    its name (``plan-….json`` is a plan, ``refused-apply-….json`` a refused
    apply), so <TAB> stays fast."""
    if size > _READ_LIMIT:
        kind = path.name.partition("-")[0]
        if kind in ("refused", "interrupted"):
            return "apply", kind, None
        return (kind, None, None) if kind in ("plan", "resolve", "apply") else (None, None, None)
    report = _read_report(path)
    return (None, None, None) if report is None else (report.kind, report.status, report)


def _search_dirs(ctx: click.Context, incomplete: str) -> list[tuple[Path, str]]:
    """Where to look, each with the text its files are shown with: the directory
    the operator is typing in (the cwd for a bare name) and the report dir
    (--report-dir, else the environment). ``~`` is expanded for reading only:
    the value shown keeps what was typed."""
    typed = incomplete[: incomplete.rfind("/") + 1]  # "" or up to the last "/"
    out = [(Path(os.path.expanduser(typed)) if typed else Path("."), typed)]
    report_dir = _report_dir_from(ctx)
    shown = str(report_dir)
    out.append((Path(os.path.expanduser(shown)), "" if shown == "." else shown.rstrip("/") + "/"))
    return [(d, s) for d, s in out if _is_dir(d)]


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _sha256(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        if path.stat().st_size > _READ_LIMIT:
            return None
        return file_sha256(path)
    except (OSError, IdentityError):  # completion never fails: it offers less
        return None


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def _candidates(
    ctx: click.Context, incomplete: str, pattern: str
) -> list[tuple[Path, str, float, int]]:
    """Files matching ``pattern`` whose shown path starts with ``incomplete``:
    (path, shown, mtime, size), each file once (under the first name that matches)."""
    out: list[tuple[Path, str, float, int]] = []
    seen: set[Path] = set()
    for directory, prefix in _search_dirs(ctx, incomplete):
        for path in directory.glob(pattern):
            shown = prefix + path.name
            if path.name.startswith(".") or not shown.startswith(incomplete):
                continue
            try:
                real, stat = path.resolve(), path.stat()
            except (OSError, RuntimeError):
                continue
            if real in seen or not stat_is_file(stat.st_mode):
                continue
            seen.add(real)
            out.append((path, shown, stat.st_mtime, stat.st_size))
    return out


def _describe(kind: str, report: _Report | None) -> str:
    """The help shown beside a completed report: one short phrase, no commas."""
    if report is None:
        return f"{kind} report"
    if kind == "plan":
        state = {None: "plan", True: "applicable plan", False: "blocked plan"}[report.applicable]
        if report.resolutions:
            return f"{state} made with {Path(report.resolutions).name}"
        return f"{state} made without resolutions"
    if kind == "resolve":
        n = report.decisions
        return "resolutions" if n is None else f"resolutions: {n} decision{'' if n == 1 else 's'}"
    when = (
        datetime.fromtimestamp(report.created, UTC).strftime(" %Y-%m-%d %H:%M UTC")
        if report.created is not None
        else ""
    )
    return f"apply {report.status or ''}{when}"


def complete_reports(
    kind: str,
) -> Callable[[click.Context, click.Parameter, str], list[CompletionItem]]:
    """Complete the files an option takes, judged by their content, newest first.

    ``kind`` is ``plan`` (plan reports; those made with the --resolutions given
    earlier on the line first: their ``resolutions_sha256`` is that file's),
    ``resolve`` (resolution files), ``apply`` (apply reports that applied:
    status ``applied`` or ``committing``, never a refused, interrupted,
    rolled-back or empty attempt) or ``backup`` (``backup-*.db`` SQLite files;
    the one the --report given earlier names first). Files are looked for in the
    directory being typed (the cwd for a bare name) and in the report dir, whatever
    their names (``plan.json`` and ``plan-<time>.json`` alike). With nothing to
    offer the shell completes file names itself."""

    def complete(
        ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[CompletionItem]:
        found = _complete_reports(kind, ctx, incomplete)
        return found or [CompletionItem(incomplete, type="file")]

    return complete


def _complete_reports(kind: str, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    ranked: list[tuple[int, float, str, str]] = []
    if kind == "backup":
        report_path = _user_path(_option_value(ctx, "--report"))
        named = _read_report(report_path) if report_path is not None else None
        wanted = named.backup if named is not None else None
        for path, shown, mtime, _ in _candidates(ctx, incomplete, "backup-*.db"):
            if _is_sqlite(path):
                first = wanted is not None and path.name == Path(wanted).name
                ranked.append((0 if first else 1, -mtime, shown, "SQLite backup"))
    else:
        wanted_sha = _sha256(_user_path(_option_value(ctx, "--resolutions")))
        for path, shown, mtime, size in _candidates(ctx, incomplete, "*.json"):
            got, status, report = _report_kind(path, size)
            if got != kind:
                continue
            # an apply report judged by its name alone (too big to read) has no status
            if kind == "apply" and status not in CHANGED_SOMETHING and (report or status):
                continue
            rank = 0
            if kind == "plan" and wanted_sha is not None:
                rank = 0 if report is not None and report.resolutions_sha256 == wanted_sha else 1
            created = report.created if report is not None and report.created else mtime
            ranked.append((rank, -created, shown, _describe(kind, report)))
    ranked.sort()
    return [CompletionItem(shown, help=help_text) for _, _, shown, help_text in ranked]


def complete_report_projects(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Complete the canonical project ids of the apply report given with --report.

    Contract, for an option such as ``revert --project ID``: the command must
    also have a ``--report`` option (any parameter name), given earlier on the
    line (shells send only the words before the cursor; ``~`` is expanded). The
    report is read as JSON; the completions are its ``groups[].canonical_id``
    values in report order, each once, that start with what is typed and were
    not given to this option already, with the group's shadow names as help.
    Nothing is offered (and no file completion either) when --report is
    missing, unreadable or not an ``apply`` report; the report's status is not
    checked here (``complete_reports("apply")`` offers only applied ones).
    Never raises."""
    path = _user_path(_option_value(ctx, "--report"))
    if path is None:
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(doc, dict) or doc.get("kind") != "apply":
        return []
    groups = doc.get("groups")
    out: list[CompletionItem] = []
    given = ctx.params.get(param.name) if param.name else None
    seen: set[str] = set(given) if isinstance(given, tuple | list) else set()
    for group in groups if isinstance(groups, list) else []:
        cid = group.get("canonical_id") if isinstance(group, dict) else None
        if not isinstance(cid, str) or cid in seen or not cid.startswith(incomplete):
            continue
        seen.add(cid)
        shadows = group.get("shadows")
        names = [
            s["name"]
            for s in (shadows if isinstance(shadows, list) else [])
            if isinstance(s, dict) and isinstance(s.get("name"), str)
        ]
        out.append(CompletionItem(cid, help=("from " + " ".join(names)) if names else None))
    return out


def _inputs_from(ctx: click.Context) -> tuple[Path, Path] | None:
    try:
        db = resolve_db(_user_path(_option_value(ctx, "--db")))
        reg = resolve_registry(_user_path(_option_value(ctx, "--registry")))
    except BadInput:
        return None
    return db, reg


def complete_picks(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """CATEGORY/KEY=ROW_ID for every candidate of every current collision.

    The whole value is offered in every shell: bash splits words at ``=``, and
    its script (``BashCompletion``) joins them back and trims what bash keeps."""
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


# -- the shell scripts ----------------------------------------------------------
#
# Click's own scripts, with two fixes; registered under Click's names, so
# `_ATOCORE_IDENTITY_COMPLETE=bash_source atocore-identity` prints exactly what
# tools/gen_completions.py commits to completions/.


def first_sentence(text: str | None) -> str:
    """What a shell shows beside a completion: the help text up to its first
    ". " (whitespace collapsed). Help texts keep it short and comma-free."""
    flat = " ".join((text or "").split())
    head, dot, _ = flat.partition(". ")
    return head + "." if dot else flat


# bash splits a word at the characters of COMP_WORDBREAKS, so `--pick
# decision/x=st-02` reaches the function as `decision/x`, `=`, `st-02`, and
# Click would read `=` as the value of --pick. The function joins the pieces
# around `=` and `:` back into the word the program reads (as bash-completion's
# `_get_comp_words_by_ref -n =:` does, but without needing bash-completion),
# and, since bash replaces only the text after the last of those characters,
# trims that much from each candidate (as `__ltrim_colon_completions` does).
# `%` is doubled for Click's %-formatting.
_SOURCE_BASH = r"""%(complete_func)s() {
    local IFS=$'\n'
    local response completion type value word rest gap cur prefix='' breaks=''
    local -a words=()
    local i n=-1 pos=0

    for ((i = 0; i <= COMP_CWORD && i < ${#COMP_WORDS[@]}; i++)); do
        word=${COMP_WORDS[i]}
        rest=${COMP_LINE:pos}
        gap=${rest%%%%[![:space:]]*}
        rest=${rest:${#gap}}
        if [[ ${rest:0:${#word}} != "$word" ]]; then
            # not the line bash split: send its words as they are
            words=("${COMP_WORDS[@]:0:COMP_CWORD+1}")
            n=$COMP_CWORD
            break
        fi
        pos=$((pos + ${#gap} + ${#word}))
        if ((n >= 0 && ${#gap} == 0)) &&
            [[ ( -n $word && $word != *[!=:]* ) ||
                ( -n ${COMP_WORDS[i-1]} && ${COMP_WORDS[i-1]} != *[!=:]* ) ]]; then
            words[n]+=$word
        else
            words[++n]=$word
        fi
    done
    cur=${words[n]}
    [[ $COMP_WORDBREAKS == *=* ]] && breaks+='='
    [[ $COMP_WORDBREAKS == *:* ]] && breaks+=':'
    [[ -n $breaks && $cur == *[$breaks]* ]] && prefix=${cur%%"${cur##*[$breaks]}"}

    response=$(env COMP_WORDS="${words[*]}" COMP_CWORD=$n \
%(complete_var)s=bash_complete $1)

    for completion in $response; do
        IFS=',' read -r type value <<< "$completion"

        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            COMPREPLY+=("${value#"$prefix"}")
        fi
    done

    return 0
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""

# fish: Click's script splits "plain,VALUE<TAB>HELP" at every comma and keeps
# the second piece, so a description (or a value) was cut at its first comma.
_SOURCE_FISH = """\
function %(complete_func)s;
    set -l response (env %(complete_var)s=fish_complete COMP_WORDS=(commandline -cp) \
COMP_CWORD=(commandline -t) %(prog_name)s);

    for completion in $response;
        set -l metadata (string split -m 1 "," -- $completion);

        if test $metadata[1] = "dir";
            __fish_complete_directories $metadata[2];
        else if test $metadata[1] = "file";
            __fish_complete_path $metadata[2];
        else if test $metadata[1] = "plain";
            echo $metadata[2];
        end;
    end;
end;

complete --no-files --command %(prog_name)s --arguments \
"(%(complete_func)s)";
"""


class BashCompletion(BashComplete):
    """Click's bash completion, with ``=`` and ``:`` inside a value handled."""

    source_template = _SOURCE_BASH


class ZshCompletion(ZshComplete):
    """Click's zsh completion, describing each candidate by its first sentence."""

    def format_completion(self, item: CompletionItem[str]) -> str:
        short = first_sentence(item.help)
        return super().format_completion(CompletionItem(item.value, item.type, help=short or None))


class FishCompletion(FishComplete):
    """Click's fish completion, keeping a description whole past its commas and
    showing its first sentence."""

    source_template = _SOURCE_FISH

    def format_completion(self, item: CompletionItem[str]) -> str:
        short = first_sentence(item.help)
        return super().format_completion(CompletionItem(item.value, item.type, help=short or None))


SHELLS: tuple[type[ShellComplete], ...] = (BashCompletion, ZshCompletion, FishCompletion)
for _shell in SHELLS:
    add_completion_class(_shell)
