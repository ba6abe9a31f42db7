"""Shell completion: the committed scripts, and the dynamic completions through
Click's real protocol (``_ATOCORE_IDENTITY_COMPLETE=bash_complete`` with
COMP_WORDS / COMP_CWORD, in a subprocess, as the shell scripts call it)."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import click
import pytest

from atocore_identity.cli import cli
from atocore_identity.completion import (
    BashCompletion,
    complete_report_projects,
    complete_reports,
    first_sentence,
)
from conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
COMPLETIONS = ROOT / "completions"
PROG = "atocore-identity"


def load_tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ATOCORE_", "_ATOCORE_", "COMP_"))
    }
    env.update(extra)
    return env


def complete(
    words: Sequence[str | Path], shell: str = "bash", cwd: Path | None = None
) -> list[str]:
    """Ask the CLI for completions of the last word, as the shell script does.

    ``words`` are the words after the program name; the last one is the
    incomplete word ("" to complete an empty word)."""
    parts = [PROG, *map(str, words)]
    line = " ".join(shlex.quote(p) for p in parts[:-1]) + " "
    if shell == "fish":  # fish sends the line up to the cursor and the current token
        env = clean_env(COMP_WORDS=line + parts[-1], COMP_CWORD=parts[-1])
    else:
        line += shlex.quote(parts[-1])
        env = clean_env(COMP_WORDS=line, COMP_CWORD=str(len(parts) - 1))
    env["_ATOCORE_IDENTITY_COMPLETE"] = f"{shell}_complete"
    proc = subprocess.run(
        [sys.executable, "-m", "atocore_identity"],
        env=env,
        cwd=cwd if cwd is not None else tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [line for line in proc.stdout.splitlines() if line]


def plain(lines: list[str]) -> list[str]:
    """The values of bash_complete's "plain,VALUE" lines."""
    return [line.split(",", 1)[1] for line in lines if line.startswith("plain,")]


# -- the committed scripts ---------------------------------------------------------


def test_committed_completions_equal_a_fresh_generation() -> None:
    fresh = load_tool("gen_completions").generate()
    assert sorted(fresh) == sorted(["atocore-identity.bash", "_atocore-identity", PROG + ".fish"])
    for name, text in fresh.items():
        path = COMPLETIONS / name
        assert path.exists(), f"{path} missing: run `make completions`"
        assert path.read_text("utf-8") == text, f"{path} is stale: run `make completions`"


def test_scripts_name_the_program_and_the_completion_variable() -> None:
    for name in ("atocore-identity.bash", "_atocore-identity", "atocore-identity.fish"):
        text = (COMPLETIONS / name).read_text("utf-8")
        assert "_ATOCORE_IDENTITY_COMPLETE=" in text
        assert PROG in text
        assert "python" not in text  # independent of how it was generated
    zsh = (COMPLETIONS / "_atocore-identity").read_text("utf-8")
    assert zsh.splitlines()[0] == "#compdef atocore-identity"  # zsh autoload needs it first
    assert "complete -o nosort -F _atocore_identity_completion atocore-identity" in (
        COMPLETIONS / "atocore-identity.bash"
    ).read_text("utf-8")


@pytest.mark.parametrize(
    ("shell", "name"),
    [("bash", "atocore-identity.bash"), ("zsh", "_atocore-identity"), ("fish", PROG + ".fish")],
)
def test_committed_scripts_equal_the_tools_own_source_output(shell: str, name: str) -> None:
    """What `_ATOCORE_IDENTITY_COMPLETE=bash_source atocore-identity` prints (the
    runbook's way to install without the repository), past the generator's header."""
    proc = subprocess.run(
        [sys.executable, "-m", "atocore_identity"],
        env=clean_env(_ATOCORE_IDENTITY_COMPLETE=f"{shell}_source"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    committed = (COMPLETIONS / name).read_text("utf-8")
    body = "\n".join(line for line in committed.splitlines() if not line.startswith("# "))
    assert body.strip() == proc.stdout.strip()


def test_fish_script_keeps_a_description_whole_past_its_commas() -> None:
    """Click's fish script split "plain,VALUE<TAB>HELP" at every comma."""
    fish = (COMPLETIONS / "atocore-identity.fish").read_text("utf-8")
    assert 'string split -m 1 "," -- $completion' in fish
    assert 'string split "," $completion' not in fish


# -- descriptions: a short first sentence without commas ------------------------------


def every_command() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli, info_name=PROG)
    assert isinstance(cli, click.Group)
    out: list[tuple[str, click.Command]] = [(PROG, cli)]
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        assert command is not None
        out.append((f"{PROG} {name}", command))
    return out


def test_every_command_has_a_short_help_without_commas() -> None:
    """fish shows it beside the subcommand, and used to cut it at the first comma."""
    for path, command in every_command()[1:]:
        assert command.short_help, f"{path}: give the command a short_help"
        short = command.get_short_help_str(limit=1000)
        assert "," not in short, f"{path}: {short!r}"
        assert len(short) <= 60, f"{path}: {short!r} is long for a completion menu"


def test_every_option_has_a_first_sentence_without_commas() -> None:
    """zsh and fish show an option's first sentence beside it."""
    for path, command in every_command():
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            assert param.help, f"{path} {param.opts[0]}: no help"
            first = first_sentence(param.help)
            assert "," not in first, f"{path} {param.opts[0]}: {first!r}"
            assert len(first) <= 80, f"{path} {param.opts[0]}: {first!r} is long"


def test_first_sentence() -> None:
    assert first_sentence("A database. Env: A, else B.") == "A database."
    assert first_sentence("One line only") == "One line only"
    assert first_sentence("  Spread\n  over lines.  More. ") == "Spread over lines."
    assert first_sentence(None) == ""


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_describe_options_by_their_first_sentence(shell: str) -> None:
    got = complete(["plan", "--d"], shell=shell)
    if shell == "zsh":
        assert got[got.index("--db") + 1] == "AtoCore's SQLite database."
    else:
        assert "plain,--db\tAtoCore's SQLite database." in got


# -- dynamic completions: the runbook's files ------------------------------------------


@pytest.fixture(scope="module")
def runbook(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`make demo`'s steps (named files as the runbook writes them), a refused
    apply, then the real apply: every report kind, named both ways."""
    root = tmp_path_factory.mktemp("completion")
    assert run_cli("demo", root / "demo").code == 0
    db, reg, rep = root / "demo" / "atocore.db", root / "demo" / "registry.json", root / "reports"
    common = ["--db", db, "--registry", reg, "--report-dir", rep]
    pre = root / "pre"  # a copy of the demo before apply, for collision completion
    assert run_cli("demo", pre).code == 0
    assert run_cli("inspect", *common).code == 0
    assert run_cli("plan", *common, "--out", rep / "plan-before-resolve.json").code == 0
    res = rep / "resolutions.json"
    resolved = run_cli("resolve", *common, "--keep", "canonical", "--out", res)
    assert resolved.code == 0, resolved.stderr
    planned = run_cli("plan", *common, "--resolutions", res, "--out", rep / "plan.json")
    assert planned.code == 0, planned.stderr
    refused = run_cli("apply", *common, "--plan", rep / "plan-before-resolve.json", "--yes")
    assert refused.code == 3, refused.stderr
    applied = run_cli("apply", *common, "--plan", rep / "plan.json", "--resolutions", res, "--yes")
    assert applied.code == 0, applied.stderr
    (apply_report,) = rep.glob("apply-*.json")
    (refused_report,) = rep.glob("refused-apply-*.json")
    (backup,) = rep.glob("backup-*.db")
    return {
        "db": db,
        "registry": reg,
        "reports": rep,
        "pre": pre,
        "root": root,
        "applied": apply_report,
        "refused": refused_report,
        "backup": backup,
    }


def pre_args(env: dict[str, Path]) -> list[str]:
    pre = env["pre"]
    return ["--db", str(pre / "atocore.db"), "--registry", str(pre / "registry.json")]


def offered(args: Sequence[str | Path], incomplete: str) -> list[tuple[str, str, str | None]]:
    """(type, value, help) of each completion, in-process, from the cwd."""
    comp = BashCompletion(cli, {}, PROG, "_ATOCORE_IDENTITY_COMPLETE")
    return [
        (i.type, i.value, i.help) for i in comp.get_completions(list(map(str, args)), incomplete)
    ]


def values(args: Sequence[str | Path], incomplete: str) -> list[str]:
    return [value for kind, value, _ in offered(args, incomplete) if kind == "plain"]


def test_pick_completes_every_candidate_of_the_current_collision(runbook: dict[str, Path]) -> None:
    got = complete(["resolve", *pre_args(runbook), "--pick", ""])
    assert plain(got) == ["decision/mirror-coating=st-02", "decision/mirror-coating=st-03"]


def test_pick_filters_by_the_typed_prefix(runbook: dict[str, Path]) -> None:
    got = complete(["resolve", *pre_args(runbook), "--pick", "decision/mirror-coating=st-03"])
    assert plain(got) == ["decision/mirror-coating=st-03"]
    assert plain(complete(["resolve", *pre_args(runbook), "--pick", "budget/"])) == []


def test_pick_has_nothing_once_the_database_is_migrated(runbook: dict[str, Path]) -> None:
    args = ["--db", str(runbook["db"]), "--registry", str(runbook["registry"])]
    assert plain(complete(["resolve", *args, "--pick", ""])) == []


def test_pick_without_a_database_completes_nothing_and_does_not_fail(tmp_path: Path) -> None:
    assert complete(["resolve", "--pick", ""], cwd=tmp_path) == []


def test_plan_offers_both_plan_reports_newest_first(runbook: dict[str, Path]) -> None:
    rep = runbook["reports"]
    got = plain(complete(["apply", "--report-dir", str(rep), "--plan", ""]))
    assert got == [str(rep / "plan.json"), str(rep / "plan-before-resolve.json")]


def test_plan_puts_the_plans_made_with_the_given_resolutions_first(
    runbook: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newer plan made without resolutions comes after plan.json once
    --resolutions resolutions.json is on the line (apply would refuse it)."""
    rep = tmp_path / "reports"
    shutil.copytree(runbook["reports"], rep)
    doc = json.loads((rep / "plan-before-resolve.json").read_text("utf-8"))
    doc["created_at"] = "2999-01-01T00:00:00.000000Z"
    (rep / "plan-later.json").write_text(json.dumps(doc), "utf-8")
    monkeypatch.chdir(tmp_path)
    base = ["apply", "--report-dir", "reports"]
    assert values([*base, "--plan"], "")[:2] == ["reports/plan-later.json", "reports/plan.json"]
    with_res = [*base, "--resolutions", "reports/resolutions.json", "--plan"]
    assert values(with_res, "")[0] == "reports/plan.json"
    # the plan report names its resolutions by the path given then; the sha256 binds,
    # so a copy of the resolutions elsewhere (or a ~ path) still ranks plan.json first
    shutil.copy(rep / "resolutions.json", tmp_path / "copy.json")
    assert values([*base, "--resolutions", "copy.json", "--plan"], "")[0] == "reports/plan.json"
    helps = {v: h for _, v, h in offered([*base, "--plan"], "")}
    assert helps["reports/plan.json"] == "applicable plan made with resolutions.json"
    assert helps["reports/plan-before-resolve.json"] == "blocked plan made without resolutions"


@pytest.mark.parametrize("command", ["plan", "apply"])
def test_resolutions_offers_the_resolution_file(runbook: dict[str, Path], command: str) -> None:
    rep = runbook["reports"]
    got = plain(complete([command, "--report-dir", str(rep), "--resolutions", ""]))
    assert got == [str(rep / "resolutions.json")]


def test_verify_report_offers_applied_apply_reports_only(
    runbook: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rep = runbook["reports"]
    got = plain(complete(["verify", "--report-dir", str(rep), "--report", ""]))
    assert got == [str(runbook["applied"])]
    # by content, not by name: a committing report counts, rolled-back/empty/refused do not
    mine = tmp_path / "r"
    mine.mkdir()
    doc = json.loads(runbook["applied"].read_text("utf-8"))
    for status in ("committing", "rolled-back", "empty", "refused", "interrupted"):
        (mine / f"attempt-{status}.json").write_text(json.dumps({**doc, "status": status}))
    shutil.copy(runbook["refused"], mine / "apply-looks-applied.json")
    monkeypatch.chdir(mine)
    assert values(["verify", "--report"], "") == ["attempt-committing.json"]


def test_backup_offers_backups_and_the_reports_own_first(
    runbook: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rep = runbook["reports"]
    assert plain(complete(["verify", "--report-dir", str(rep), "--backup", ""])) == [
        str(runbook["backup"])
    ]
    mine = tmp_path / "r"
    shutil.copytree(rep, mine)
    (mine / "backup-29990101T000000.000000Z.db").write_bytes(runbook["backup"].read_bytes())
    (mine / "backup-not-sqlite.db").write_text("not a database")
    monkeypatch.chdir(mine)
    newest_first = values(["verify", "--backup"], "")
    assert newest_first[1] == runbook["backup"].name
    assert "backup-not-sqlite.db" not in newest_first
    named = values(["verify", "--report", runbook["applied"].name, "--backup"], "")
    assert named[0] == runbook["backup"].name  # the one the apply report names


def test_report_files_are_found_where_they_are_typed(
    runbook: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the directory being typed (a trailing "/", "./", "~"), or in the cwd."""
    root, rep = runbook["root"], runbook["reports"]
    monkeypatch.chdir(root)
    monkeypatch.setenv("HOME", str(root))
    monkeypatch.delenv("ATOCORE_IDENTITY_REPORT_DIR", raising=False)
    monkeypatch.delenv("ATOCORE_DATA_DIR", raising=False)
    assert values(["apply", "--plan"], "reports/") == [
        "reports/plan.json",
        "reports/plan-before-resolve.json",
    ]
    assert values(["apply", "--plan"], "./reports/plan.") == ["./reports/plan.json"]
    assert values(["apply", "--plan"], "~/reports/plan-") == ["~/reports/plan-before-resolve.json"]
    assert values(["apply", "--plan"], f"{rep}/plan.") == [f"{rep}/plan.json"]
    monkeypatch.chdir(rep)
    assert values(["apply", "--plan"], "") == ["plan.json", "plan-before-resolve.json"]
    # the report dir from the environment, each file once
    monkeypatch.setenv("ATOCORE_IDENTITY_REPORT_DIR", str(rep))
    assert values(["verify", "--report"], "") == [runbook["applied"].name]


def test_report_completion_skips_what_is_not_a_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plan-broken.json").write_text("{not json")
    (tmp_path / "plan-other.json").write_text('{"kind": "plan"}')  # no report_version
    (tmp_path / ".tmp-0123.json").write_text('{"report_version": 1, "kind": "plan"}')
    (tmp_path / "plan-dir.json").mkdir()
    monkeypatch.chdir(tmp_path)
    assert offered(["apply", "--report-dir", "nowhere", "--plan"], "") == [("file", "", None)]


def test_a_report_too_big_to_read_at_tab_is_judged_by_its_name(
    runbook: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atocore_identity import completion as options

    for name in ("apply-1.json", "refused-apply-2.json", "plan-3.json"):
        shutil.copy(runbook["applied"], tmp_path / name)
    monkeypatch.setattr(options, "_READ_LIMIT", 10)
    monkeypatch.chdir(tmp_path)
    assert values(["verify", "--report"], "") == ["apply-1.json"]
    assert values(["apply", "--plan"], "") == ["plan-3.json"]


def test_report_completion_falls_back_to_files_without_a_report_dir(tmp_path: Path) -> None:
    got = complete(["apply", "--report-dir", str(tmp_path / "nowhere"), "--plan", ""], cwd=tmp_path)
    assert got == ["file,"]


# -- the projects of an apply report (revert --project) ----------------------------------


@click.command()
@click.option("--report", "apply_report", shell_complete=complete_reports("apply"))
@click.option("--project", "projects", multiple=True, shell_complete=complete_report_projects)
def revert_like(apply_report: str | None, projects: tuple[str, ...]) -> None:
    """A command shaped like revert: --report then --project."""


def projects_offered(args: list[str], incomplete: str) -> list[tuple[str, str | None]]:
    comp = BashCompletion(revert_like, {}, "revert", "_X")
    return [(i.value, i.help) for i in comp.get_completions(args, incomplete)]


def test_project_completes_the_canonical_ids_of_the_chosen_apply_report(
    runbook: dict[str, Path],
) -> None:
    report = str(runbook["applied"])
    got = projects_offered(["--report", report, "--project"], "")
    assert got == [
        ("p04-gigabit", "from gigabit"),
        ("p05-interferometer", "from p05 interferometer"),
        ("p06-polisher", "from p06"),
        ("p07-étalon", "from ÉTALON"),
    ]
    again = ["--report", report, "--project", "p05-interferometer", "--project"]
    assert projects_offered(again, "p0") == [g for g in got if g[0] != "p05-interferometer"]
    assert [v for v, _ in projects_offered(["--report", report, "--project"], "p05")] == [
        "p05-interferometer"
    ]


def test_project_offers_nothing_without_a_readable_apply_report(
    runbook: dict[str, Path], tmp_path: Path
) -> None:
    assert projects_offered(["--project"], "") == []
    assert projects_offered(["--report", str(tmp_path / "missing.json"), "--project"], "") == []
    not_apply = str(runbook["reports"] / "plan.json")
    assert projects_offered(["--report", not_apply, "--project"], "") == []
    (tmp_path / "odd.json").write_text('{"kind": "apply", "groups": [1, {"canonical_id": 2}]}')
    assert projects_offered(["--report", str(tmp_path / "odd.json"), "--project"], "") == []


# -- columns, subcommands, protocols -----------------------------------------------------


def test_column_completes_table_dot_column(runbook: dict[str, Path]) -> None:
    got = plain(complete(["plan", *pre_args(runbook), "--column", ""]))
    assert "conflicts.project" in got
    assert "memories.project" in got
    assert plain(complete(["plan", *pre_args(runbook), "--column", "conf"])) == [
        "conflicts.id",
        "conflicts.project",
        "conflicts.summary",
    ]


def test_column_offers_only_columns_the_option_accepts(runbook: dict[str, Path]) -> None:
    """projects.name and project_state.project_id are owned by the migration's
    own rules: --column rejects them (exit 2), so completion must not offer them."""
    got = plain(complete(["plan", *pre_args(runbook), "--column", "proj"]))
    assert "projects.name" not in got
    assert "project_state.project_id" not in got
    reports = runbook["root"] / "owned-reports"
    refused = run_cli(
        "plan", *pre_args(runbook), "--report-dir", reports, "--column", "projects.name"
    )
    assert refused.code == 2 and "owned by the migration" in refused.stderr


def test_subcommands_complete() -> None:
    assert plain(complete(["ap"])) == ["apply"]
    assert set(plain(complete([""]))) >= {"inspect", "plan", "resolve", "apply", "verify", "demo"}


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_protocols_carry_the_candidates_help(
    runbook: dict[str, Path], shell: str
) -> None:
    got = complete(["resolve", *pre_args(runbook), "--pick", ""], shell=shell)
    if shell == "zsh":  # type, value, help: three lines per item
        assert got[:3] == [
            "plain",
            "decision/mirror-coating=st-02",
            "p05-interferometer: protected silver",
        ]
        assert got[3:5] == ["plain", "decision/mirror-coating=st-03"]
    else:  # "type,value<TAB>help"
        assert got == [
            "plain,decision/mirror-coating=st-02\tp05-interferometer: protected silver",
            "plain,decision/mirror-coating=st-03\tp05: enhanced aluminium",
        ]


# -- the bash script, sourced in a real bash ----------------------------------------------


def bash_reply(words: list[str], line: str, cwd: Path, wordbreaks: str | None = None) -> list[str]:
    """COMPREPLY of the committed script's function, with COMP_WORDS split as
    bash splits ``line`` (at COMP_WORDBREAKS: `=` and `:` are separate words)."""
    script = "\n".join(
        [
            f"source {shlex.quote(str(COMPLETIONS / 'atocore-identity.bash'))}",
            *([f"COMP_WORDBREAKS={shlex.quote(wordbreaks)}"] if wordbreaks is not None else []),
            "COMP_WORDS=(" + " ".join(shlex.quote(w) for w in words) + ")",
            f"COMP_CWORD={len(words) - 1}",
            f"COMP_LINE={shlex.quote(line)}",
            f"COMP_POINT={len(line)}",
            "_atocore_identity_completion atocore-identity",
            'printf "reply:%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    # The script runs `atocore-identity` from PATH, as an installed tool would.
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / PROG).exists(), "the console script is not installed next to python"
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-i", "-c", script],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [ln.removeprefix("reply:") for ln in proc.stdout.splitlines() if ln.startswith("reply:")]


needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@needs_bash
def test_the_bash_script_completes_a_pick_across_bashs_word_breaks(
    runbook: dict[str, Path],
) -> None:
    """bash hands `--pick decision/mirror-coating=st-0` over as three words; the
    replies replace only what follows the `=` (bash keeps the rest)."""
    pre = runbook["pre"]
    head = [PROG, "resolve", "--db", "pre/atocore.db", "--registry", "pre/registry.json"]
    line = " ".join(head) + " --pick "
    assert bash_reply([*head, "--pick", ""], line, pre.parent) == [
        "decision/mirror-coating=st-02",
        "decision/mirror-coating=st-03",
    ]
    split = [*head, "--pick", "decision/mirror-coating", "=", "st-0"]
    typed = line + "decision/mirror-coating=st-0"
    assert bash_reply(split, typed, pre.parent) == ["st-02", "st-03"]
    at_the_equals = [*head, "--pick", "decision/mirror-coating", "="]
    typed = line + "decision/mirror-coating="
    assert bash_reply(at_the_equals, typed, pre.parent) == ["st-02", "st-03"]
    # a user who took `=` out of COMP_WORDBREAKS: one word, whole values
    whole = [*head, "--pick", "decision/mirror-coating=st-0"]
    got = bash_reply(whole, line + "decision/mirror-coating=st-0", pre.parent, " \t\n\"'><;|&(:")
    assert got == ["decision/mirror-coating=st-02", "decision/mirror-coating=st-03"]


@needs_bash
def test_the_bash_script_completes_an_option_joined_with_equals(
    runbook: dict[str, Path],
) -> None:
    """`--plan=demo/re` arrives as --plan, =, demo/re: the file is completed and
    bash keeps the `--plan=`."""
    root = runbook["root"]
    head = [PROG, "apply", "--report-dir", "reports"]
    line = " ".join(head) + " --plan=reports/plan."
    got = bash_reply([*head, "--plan", "=", "reports/plan."], line, root)
    assert got == ["reports/plan.json"]
