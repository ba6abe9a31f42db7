"""Shell completion: the committed scripts, and the dynamic completions through
Click's real protocol (``_ATOCORE_IDENTITY_COMPLETE=bash_complete`` with
COMP_WORDS / COMP_CWORD, in a subprocess, as the shell scripts call it)."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

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


def test_committed_scripts_equal_clicks_own_source_output() -> None:
    """What `_ATOCORE_IDENTITY_COMPLETE=bash_source atocore-identity` prints,
    past the generator's comment header."""
    proc = subprocess.run(
        [sys.executable, "-m", "atocore_identity"],
        env=clean_env(_ATOCORE_IDENTITY_COMPLETE="bash_source"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    committed = (COMPLETIONS / "atocore-identity.bash").read_text("utf-8")
    body = "\n".join(line for line in committed.splitlines() if not line.startswith("# "))
    assert body.strip() == proc.stdout.strip()


# -- dynamic completions -----------------------------------------------------------


@pytest.fixture(scope="module")
def runbook(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo database after inspect, plan, resolve and apply: every report kind."""
    root = tmp_path_factory.mktemp("completion")
    assert run_cli("demo", root / "demo").code == 0
    db, reg, rep = root / "demo" / "atocore.db", root / "demo" / "registry.json", root / "reports"
    common = ["--db", db, "--registry", reg, "--report-dir", rep]
    pre = root / "pre"  # a copy of the demo before apply, for collision completion
    assert run_cli("demo", pre).code == 0
    assert run_cli("inspect", *common).code == 0
    assert run_cli("plan", *common).code == 0
    resolved = run_cli("resolve", *common, "--keep", "canonical")
    assert resolved.code == 0, resolved.stderr
    (res,) = rep.glob("resolve-*.json")
    applied = run_cli("apply", *common, "--resolutions", res, "--yes")
    assert applied.code == 0, applied.stderr
    return {"db": db, "registry": reg, "reports": rep, "pre": pre, "root": root}


def pre_args(env: dict[str, Path]) -> list[str]:
    pre = env["pre"]
    return ["--db", str(pre / "atocore.db"), "--registry", str(pre / "registry.json")]


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


@pytest.mark.parametrize(
    ("command", "option", "pattern"),
    [
        ("apply", "--plan", "plan-*.json"),
        ("plan", "--resolutions", "resolve-*.json"),
        ("apply", "--resolutions", "resolve-*.json"),
        ("verify", "--report", "apply-*.json"),
        ("verify", "--backup", "backup-*.db"),
    ],
)
def test_report_options_complete_report_files_of_their_kind(
    runbook: dict[str, Path], command: str, option: str, pattern: str
) -> None:
    reports = runbook["reports"]
    expected = sorted((str(p) for p in reports.glob(pattern)), reverse=True)
    assert expected, f"the runbook wrote no {pattern}"
    got = plain(complete([command, "--report-dir", str(reports), option, ""]))
    assert got == expected  # newest first, nothing of another kind
    assert not any("inspect-" in g or g.endswith(".gz") for g in got)


def test_report_completion_falls_back_to_files_without_a_report_dir(tmp_path: Path) -> None:
    got = complete(["apply", "--report-dir", str(tmp_path / "nowhere"), "--plan", ""])
    assert got == ["file,"]


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


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_bash_script_completes_in_a_real_bash(runbook: dict[str, Path]) -> None:
    """Source the committed script in bash and call its completion function."""
    pre = runbook["pre"]
    words = [
        PROG,
        "resolve",
        "--db",
        str(pre / "atocore.db"),
        "--registry",
        str(pre / "registry.json"),
        "--pick",
        "",
    ]
    script = "\n".join(
        [
            f"source {shlex.quote(str(COMPLETIONS / 'atocore-identity.bash'))}",
            "complete -p atocore-identity",
            "COMP_WORDS=(" + " ".join(shlex.quote(w) for w in words) + ")",
            f"COMP_CWORD={len(words) - 1}",
            "_atocore_identity_completion atocore-identity",
            'printf "reply:%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    # The script runs `atocore-identity` from PATH, as an installed tool would.
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / PROG).exists(), "the console script is not installed next to python"
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("complete -o nosort -F _atocore_identity_completion")
    assert [ln for ln in lines if ln.startswith("reply:")] == [
        "reply:decision/mirror-coating=st-02",
        "reply:decision/mirror-coating=st-03",
    ]
