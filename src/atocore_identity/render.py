"""Rendering: results as rich tables on a terminal, plain tables otherwise,
Markdown for tickets, JSON for machines.

Commands build a ``Doc`` (headings, paragraphs and tables); ``emit`` draws it
in the chosen format. Nothing here decides anything about the migration.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

# tabulate draws every plain and markdown result: imported here, so a broken
# install fails at start-up, before a command has changed anything
from tabulate import tabulate

if TYPE_CHECKING:  # rich loads when a terminal may draw it (terminal_console)
    from rich.console import Console

FORMATS = ("text", "json", "markdown")


@dataclass
class Block:
    kind: str  # "heading" | "text" | "table" | "ok" | "bad"
    text: str = ""
    headers: Sequence[str] = ()
    rows: Sequence[Sequence[Any]] = ()


@dataclass
class Doc:
    blocks: list[Block] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(Block("heading", text))

    def text(self, text: str) -> None:
        self.blocks.append(Block("text", text))

    def good(self, text: str) -> None:
        self.blocks.append(Block("ok", text))

    def bad(self, text: str) -> None:
        self.blocks.append(Block("bad", text))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.blocks.append(Block("table", headers=headers, rows=rows))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    # keep one row per line: control characters in names are shown escaped
    if any(ch in text for ch in "\n\r\t\x00"):
        text = text.encode("unicode_escape").decode("ascii")
    return text


def emit(doc: Doc, fmt: str, payload: dict[str, Any] | None, out: TextIO | None = None) -> None:
    """Write ``doc`` (or ``payload`` for json) to stdout in format ``fmt``."""
    stream = out or sys.stdout
    if fmt == "json":
        stream.write(json.dumps(payload or {}, indent=2, ensure_ascii=False, default=str) + "\n")
        return
    if fmt == "markdown":
        stream.write(to_markdown(doc))
        return
    console = terminal_console(stream)
    if console is not None:
        _to_rich(doc, console)
    else:
        stream.write(to_plain(doc))


def terminal_console(stream: TextIO | None) -> Console | None:
    """A rich console on ``stream`` if rich calls it a terminal, else None.
    rich is only imported when it might (a tty, or the variables rich reads
    to force the answer): 0.03 s of every command's start-up otherwise."""
    if stream is None:  # sys.stderr is None when the command runs with fd 2 closed
        return None
    forced = "TTY_COMPATIBLE" in os.environ or "FORCE_COLOR" in os.environ
    try:
        tty = stream.isatty()
    except (ValueError, AttributeError):  # closed, or not a file at all
        tty = False
    if not (tty or forced):
        return None
    from rich.console import Console

    console = Console(file=stream, highlight=False)
    return console if console.is_terminal else None


def to_plain(doc: Doc) -> str:
    parts: list[str] = []
    for b in doc.blocks:
        if b.kind == "heading":
            parts.append(f"\n== {b.text} ==")
        elif b.kind == "table":
            parts.append(
                tabulate(
                    [[_cell(c) for c in r] for r in b.rows],
                    headers=list(b.headers),
                    tablefmt="simple",
                    disable_numparse=True,
                )
            )
        elif b.kind == "ok":
            parts.append(f"[ok]   {b.text}")
        elif b.kind == "bad":
            parts.append(f"[FAIL] {b.text}")
        else:
            parts.append(b.text)
    return "\n".join(parts).lstrip("\n") + "\n"


def to_markdown(doc: Doc) -> str:
    parts: list[str] = []
    for b in doc.blocks:
        if b.kind == "heading":
            parts.append(f"\n### {b.text}\n")
        elif b.kind == "table":
            rows = [[_cell(c).replace("|", "\\|") for c in r] for r in b.rows]
            parts.append(
                tabulate(rows, headers=list(b.headers), tablefmt="github", disable_numparse=True)
                + "\n"
            )
        elif b.kind == "ok":
            parts.append(f"- [x] {b.text}")
        elif b.kind == "bad":
            parts.append(f"- [ ] **FAIL** {b.text}")
        else:
            parts.append(b.text + "\n")
    return "\n".join(parts).lstrip("\n") + "\n"


def _to_rich(doc: Doc, console: Console) -> None:
    from rich.table import Table

    for b in doc.blocks:
        if b.kind == "heading":
            console.rule(f"[bold]{_escape(b.text)}")
        elif b.kind == "table":
            table = Table(show_header=True, header_style="bold cyan")
            for h in b.headers:
                table.add_column(h)
            for r in b.rows:
                table.add_row(*(_escape(_cell(c)) for c in r))
            console.print(table)
        elif b.kind == "ok":
            console.print(f"[green]✔[/green] {_escape(b.text)}")
        elif b.kind == "bad":
            console.print(f"[bold red]✘ {_escape(b.text)}[/bold red]")
        else:
            console.print(_escape(b.text))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
