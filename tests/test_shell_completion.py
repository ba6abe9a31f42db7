"""Completion in real interactive shells, as a new user meets it.

For bash (with bash-completion loaded, and without it), zsh (compinit) and
fish: a fresh temporary HOME, the install lines of README.md's "Shell
completion" section executed literally, the runbook (`make demo`'s steps) run
with the real ``atocore-identity`` in a work dir, then an interactive shell
under tmux, keys typed with ``send-keys`` and the screen read with
``capture-pane``. Every wait polls the screen until the expected text appears
or a deadline passes; the deadline is a guard against a hung shell, never the
oracle. A shell, tmux or bash-completion that is not installed skips its
tests with the reason.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from atocore_identity.cli import cli
from atocore_identity.completion import first_sentence

ROOT = Path(__file__).resolve().parent.parent
PROG = "atocore-identity"
BIN = Path(sys.executable).parent  # the venv running the tests: its atocore-identity
DEADLINE = 15.0  # seconds for one expected screen; a guard, not a timing assertion
PROMPT = "READY> "
PICK = "decision/mirror-coating=st-0"  # the demo's one collision: st-02 and st-03
# After a Tab that inserted a common prefix, bash (readline) and zsh complete
# once more, inserting nothing, before a Tab lists the candidates; fish lists
# at the first Tab.
LIST = ("Tab", "Tab")

# Where bash-completion's loader lives (Debian/Ubuntu, older distros, Homebrew).
BASH_COMPLETION = [
    Path("/usr/share/bash-completion/bash_completion"),
    Path("/etc/bash_completion"),
    Path("/opt/homebrew/etc/profile.d/bash_completion.sh"),
    Path("/usr/local/etc/profile.d/bash_completion.sh"),
]

# -- the README's install lines ---------------------------------------------------


def readme_blocks() -> list[tuple[str, str]]:
    """(language, text) of each fenced block of README's "Shell completion" section."""
    text = (ROOT / "README.md").read_text("utf-8")
    section = text.split("\n## Shell completion\n", 1)[1].split("\n## ", 1)[0]
    fence = re.compile(r"^( *)```(\w+)\n(.*?)^\1```", re.M | re.S)
    return [(m[2], textwrap.dedent(m[3])) for m in fence.finditer(section)]


def install_steps(variant: str) -> tuple[str, list[str], str]:
    """(shell that runs them, the lines to run, the lines for the rc file) of a variant."""
    blocks = readme_blocks()
    lang = {"bash": "bash", "bash-source": "bash", "zsh": "zsh", "fish": "fish"}[variant]
    mine = [body for tag, body in blocks if tag == lang]
    if variant == "bash":
        mine = mine[:1]  # with bash-completion
    elif variant == "bash-source":
        mine = mine[1:2]  # "Without bash-completion"
    run, rc = [], ""
    for body in mine:
        if body.startswith("# in ~/."):  # lines that go into the shell's rc file
            rc += body
        else:
            run.append(body)
    return lang, run, rc


def test_readme_has_the_install_lines_the_shell_tests_run() -> None:
    for variant in ("bash", "bash-source", "zsh", "fish"):
        _, run, _ = install_steps(variant)
        assert run, f"README's Shell completion section has no {variant} lines"
        first = run[0].lstrip().splitlines()[0]
        # a fresh HOME has none of these directories (the bash line appends to ~/.bashrc)
        assert first.startswith("mkdir -p ") or variant == "bash-source", first
    assert install_steps("zsh")[2], "README says nothing to put in ~/.zshrc"
    readme = (ROOT / "README.md").read_text("utf-8")
    assert "apt-get install bash-completion" in readme
    assert "brew install" in readme


# -- the runbook's files -------------------------------------------------------------


@dataclass(frozen=True)
class Runbook:
    work: Path  # the shell's cwd; the demo in demo/, its reports in demo/reports
    applied: str  # demo/reports/apply-<time>.json
    refused: str  # demo/reports/refused-apply-<time>.json


def tool(*args: str | Path, cwd: Path, ok: tuple[int, ...] = (0,)) -> None:
    proc = subprocess.run(
        [str(BIN / PROG), *map(str, args)],
        cwd=cwd,
        env=base_env(cwd),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode in ok, (args, proc.returncode, proc.stderr)


@pytest.fixture(scope="module")
def runbook(tmp_path_factory: pytest.TempPathFactory) -> Runbook:
    """`make demo`'s steps, plus a refused apply and a second demo (pre/) whose
    collision is still open for --pick."""
    work = tmp_path_factory.mktemp("runbook")
    rep = "demo/reports"
    args = [
        "--db",
        "demo/atocore.db",
        "--registry",
        "demo/registry.json",
        "--report-dir",
        rep,
        "--column",
        "conflicts.project",
    ]
    tool("demo", "demo", cwd=work)
    tool("demo", "pre", cwd=work)
    tool("inspect", *args, cwd=work)
    tool("plan", *args, "--out", f"{rep}/plan-before-resolve.json", cwd=work)
    tool("resolve", *args, "--keep", "canonical", "--out", f"{rep}/resolutions.json", cwd=work)
    tool(
        "plan",
        *args,
        *("--resolutions", f"{rep}/resolutions.json", "--out", f"{rep}/plan.json"),
        cwd=work,
    )
    # the plan made before resolve has an open collision: apply refuses (exit 3)
    tool("apply", *args, "--plan", f"{rep}/plan-before-resolve.json", "--yes", cwd=work, ok=(3,))
    tool(
        "apply",
        *args,
        *("--plan", f"{rep}/plan.json", "--resolutions", f"{rep}/resolutions.json", "--yes"),
        cwd=work,
    )
    (applied,) = (work / rep).glob("apply-*.json")
    (refused,) = (work / rep).glob("refused-apply-*.json")
    return Runbook(work, f"{rep}/{applied.name}", f"{rep}/{refused.name}")


# -- shells under tmux -------------------------------------------------------------------


def base_env(home: Path) -> dict[str, str]:
    """A new user's environment: nothing of ours but PATH to the venv's tool."""
    env = {
        "HOME": str(home),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "TERM": "screen",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    return env


_counter = itertools.count()


class Pane:
    """One interactive shell in its own tmux server."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.socket = f"atocore-test-{os.getpid()}-{next(_counter)}"
        self.env = env
        self.tmux(
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "220",
            "-y",
            "50",
            "-c",
            str(cwd),
            # env -i: the shell gets only the new user's environment, not tmux's
            "env",
            "-i",
            *(f"{k}={v}" for k, v in env.items()),
            *argv,
        )
        self.wait(lambda screen: PROMPT.rstrip() in screen, "the prompt")

    def tmux(self, *args: str) -> str:
        proc = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            env={**os.environ, **{k: self.env[k] for k in ("TERM", "LANG")}},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, (args, proc.stderr)
        return proc.stdout

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-l", text)

    def key(self, *names: str) -> None:
        self.tmux("send-keys", *names)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J")

    def wait(self, ready: Callable[[str], bool], what: str) -> str:
        """The screen, once ``ready(screen)``; fails at the deadline showing it."""
        end = time.monotonic() + DEADLINE
        while True:
            screen = self.screen()
            if ready(screen):
                return screen
            if time.monotonic() > end:
                pytest.fail(f"no {what} within {DEADLINE:g}s; the screen:\n{screen}")
            time.sleep(0.05)

    def line(self) -> str:
        """The last line that has the prompt: the command line being typed."""
        mark = PROMPT.rstrip()  # capture-pane drops trailing spaces
        lines = [ln for ln in self.screen().splitlines() if mark in ln]
        return lines[-1].split(mark, 1)[1].removeprefix(" ").rstrip() if lines else ""

    def wait_line(self, ready: Callable[[str], bool], what: str) -> str:
        self.wait(lambda _: ready(self.line()), what)
        return self.line()

    def close(self) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30, check=False
        )


def shell_available(variant: str) -> str | None:
    """Why ``variant`` cannot run here, or None."""
    lang = {"bash": "bash", "bash-source": "bash", "zsh": "zsh", "fish": "fish"}[variant]
    if shutil.which("tmux") is None:
        return "tmux is not installed"
    if shutil.which(lang) is None:
        return f"{lang} is not installed"
    if variant == "bash" and not any(p.exists() for p in BASH_COMPLETION):
        return "the bash-completion package is not installed"
    if not (BIN / PROG).exists():
        return f"{PROG} is not installed next to {sys.executable}"
    return None


def start_shell(variant: str, home: Path, work: Path) -> Pane:
    """A fresh HOME set up as a new user's, the README's lines run in it, and an
    interactive shell in ``work``."""
    lang, run, rc = install_steps(variant)
    env = base_env(home)
    home.mkdir(parents=True, exist_ok=True)
    # What is there before the README: the distribution's default rc file
    # (Debian's ~/.bashrc loads bash-completion) and a prompt to wait for.
    if lang == "bash":
        loader = next((p for p in BASH_COMPLETION if p.exists()), None)
        lines = [f"PS1='{PROMPT}'"]
        if variant == "bash" and loader is not None:
            lines.insert(0, f". {loader}")
        (home / ".bashrc").write_text("\n".join(lines) + "\n", "utf-8")
        argv = ["bash", "-i"]
    elif lang == "zsh":
        (home / ".zshrc").write_text(f"PROMPT='{PROMPT}'\n", "utf-8")
        argv = ["zsh", "-i"]
    else:
        config = home / ".config" / "fish"
        config.mkdir(parents=True)
        (config / "config.fish").write_text(
            f"set -g fish_greeting\nfunction fish_prompt; echo -n '{PROMPT}'; end\n", "utf-8"
        )
        argv = ["fish", "-i"]
    for body in run:  # the README's lines, from the repository's root, in that shell
        proc = subprocess.run(
            [lang, "-c", body],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert proc.returncode == 0, (body, proc.stderr)
    if rc:
        with (home / f".{lang}rc").open("a", encoding="utf-8") as handle:
            handle.write(rc)
    return Pane(argv, env, work)


VARIANTS = ["bash", "bash-source", "zsh", "fish"]


@pytest.fixture(params=VARIANTS)
def shell(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Pane, Runbook]]:
    variant: str = request.param
    reason = shell_available(variant)
    if reason is not None:
        pytest.skip(reason)  # before the runbook runs
    runbook: Runbook = request.getfixturevalue("runbook")
    pane = start_shell(variant, tmp_path / "home", runbook.work)
    try:
        yield variant, pane, runbook
    finally:
        pane.close()


# -- what each shell offers ------------------------------------------------------------


def below(screen: str, typed: str) -> str:
    """The screen below the line where ``typed`` was first typed: listings, pagers."""
    return screen.split(typed, 1)[1].split("\n", 1)[-1] if typed in screen else ""


def test_report_options_offer_what_the_runbook_wrote(shell: tuple[str, Pane, Runbook]) -> None:
    variant, pane, _ = shell
    base = f"{PROG} apply --db demo/atocore.db --registry demo/registry.json"
    base += " --report-dir demo/reports"

    # --plan: both plan reports, plan.json (the newest) first, and nothing else
    pane.type(f"{base} --plan ")
    pane.key("Tab")
    pane.wait_line(lambda ln: ln.endswith("--plan demo/reports/plan"), "the common prefix")
    if variant != "fish":
        pane.key(*LIST)
    screen = pane.wait(
        lambda s: "plan.json" in below(s, base) and "plan-before-resolve.json" in below(s, base),
        "the plan reports",
    )
    listing = below(screen, base)
    assert "inspect-" not in listing and "apply-" not in listing
    if variant != "fish":  # fish sorts its pager itself
        assert listing.index("plan.json") < listing.index("plan-before-resolve.json")
    if variant != "bash" and variant != "bash-source":  # bash shows no descriptions
        assert "applicable plan made with resolutions.json" in listing
    if variant == "fish":
        pane.key("Escape")

    # --resolutions: the one resolution file, completed whole
    pane.key("C-u")
    pane.wait_line(lambda ln: ln == "", "an empty line")
    pane.type(f"{base} --resolutions ")
    pane.key("Tab")
    pane.type("#")  # typed after the completion: a space before it means it was unique
    pane.wait_line(
        lambda ln: ln.endswith("--resolutions demo/reports/resolutions.json #"),
        "resolutions.json completed",
    )


def test_verify_report_offers_the_applied_apply_report_not_the_refused_one(
    shell: tuple[str, Pane, Runbook],
) -> None:
    _, pane, runbook = shell
    assert (runbook.work / runbook.refused).exists()
    pane.type(f"{PROG} verify --report-dir demo/reports --report ")
    pane.key("Tab")
    pane.type("#")
    # completed whole (then a space): it was the only candidate, the refused attempt was not one
    pane.wait_line(lambda ln: ln.endswith(f"--report {runbook.applied} #"), "the apply report")
    assert "refused" not in pane.screen()


def test_pick_completes_a_whole_value_and_again(shell: tuple[str, Pane, Runbook]) -> None:
    """bash splits words at `=`: the value must still complete whole, and a
    second Tab cycle from right after the `=` must still offer the candidates."""
    variant, pane, _ = shell
    typed = f"{PROG} resolve --db pre/atocore.db --registry pre/registry.json --pick "
    pane.type(typed)
    pane.key("Tab")
    pane.wait_line(lambda ln: ln.endswith(f"--pick {PICK}"), "the common prefix")
    if variant != "fish":
        pane.key(*LIST)
    if variant.startswith("bash"):  # the list shows what replaces the text after `=`
        pane.wait(lambda s: re.search(r"^st-02 +st-03 *$", s, re.M) is not None, "the list")
    else:  # zsh and fish show each candidate's help
        screen = pane.wait(lambda s: "p05: enhanced aluminium" in below(s, typed), "the list")
        assert "p05-interferometer: protected silver" in below(screen, typed)
        if variant == "fish":
            pane.key("Escape")

    # a second cycle, from right after the `=`
    pane.key(*["BSpace"] * len("st-0"))
    pane.wait_line(lambda ln: ln.endswith("--pick decision/mirror-coating="), "st-0 erased")
    pane.key("Tab")
    pane.wait_line(lambda ln: ln.endswith(f"--pick {PICK}"), "the common prefix again")
    if variant == "fish":
        pane.key("Escape")
    pane.type("3")
    pane.key("Tab")
    pane.type("#")
    pane.wait_line(lambda ln: ln.endswith(f"--pick {PICK}3 #"), "the whole value")


def test_fish_describes_commands_and_options_with_a_whole_first_sentence(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    reason = shell_available("fish")
    if reason is not None:
        pytest.skip(reason)
    runbook: Runbook = request.getfixturevalue("runbook")
    pane = start_shell("fish", tmp_path / "home", runbook.work)
    try:
        pane.type(f"{PROG} ")
        pane.key("Tab")
        ctx = click.Context(cli, info_name=PROG)
        assert isinstance(cli, click.Group)
        wanted = [
            f"({cmd.get_short_help_str(1000)})"
            for name in cli.list_commands(ctx)
            if (cmd := cli.get_command(ctx, name)) is not None and not cmd.hidden
        ]
        pane.wait(lambda s: all(w in s for w in wanted), "every command's short help")
        pane.key("Escape", "C-u")
        pane.wait_line(lambda ln: ln == "", "an empty line")
        pane.type(f"{PROG} plan --")
        pane.key("Tab")
        plan = cli.get_command(ctx, "plan")
        assert plan is not None
        helps = [
            f"({first_sentence(p.help)})"
            for p in plan.params
            if isinstance(p, click.Option) and p.help and not p.hidden
        ]
        pane.wait(lambda s: all(h in s for h in helps), "every option's first sentence")
    finally:
        pane.close()
