"""The typed commands: their names, aliases and help, parsing, and the palette provider.

The command bar, the key bindings and the command palette all end in the same app actions;
this module is the one list of what exists, so help, completion and the palette agree.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from msi_tui.tui.host import AppHost

PANES = ("upload", "reconstruct")
PREFIXES = (":", "/")  # vi's and chat programs' habits: accepted and ignored


@dataclass(frozen=True)
class CommandSpec:
    """One typed command."""

    name: str
    usage: str
    help: str
    aliases: tuple[str, ...] = ()
    takes_argument: bool = False


COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("check", "check", "counts, files in flight, pending deliveries, lag, connection", ("c",)),
    CommandSpec("pause", "pause [upload|reconstruct]", "pause sending / consuming", (), True),
    CommandSpec("resume", "resume [upload|reconstruct]", "resume after pause", (), True),
    CommandSpec("upload", "upload PATH", "send one file now", (), True),
    CommandSpec("show", "show upload|reconstruct|FILE", "bring a pane to the front, or show one file's details",
                ("pane",), True),
    CommandSpec("errors", "errors", "the log shows only warnings and errors, or everything again"),
    CommandSpec("clear", "clear", "clear the log panel and its warning and error counts"),
    CommandSpec("log", "log", "where the full log file is"),
    CommandSpec("help", "help", "commands and keys", ("h", "?")),
    CommandSpec("quit", "quit", "deliver what is in flight, then exit (asks first while a file is being sent); "
                "again to force", ("q", "exit")),
)

_BY_WORD: dict[str, CommandSpec] = {
    word: spec for spec in COMMANDS for word in (spec.name, *spec.aliases)
}


@dataclass(frozen=True)
class ParsedCommand:
    """A command line split into a known command and its (possibly empty) argument."""

    name: str
    argument: str


class CommandError(ValueError):
    """A command line that cannot run; the message is shown to the operator as is."""


def parse_command(line: str) -> ParsedCommand | None:
    """Parse a command line; None for a blank line, CommandError for anything unknown.

    The argument keeps its spaces (a file name may have them); quotes are honoured so
    `upload "a b.bin"` and `upload a b.bin` both name the file `a b.bin`. A leading `:` or
    `/` is ignored (`:show upload`).
    """
    line = line.strip()
    if line[:1] in PREFIXES:
        line = line[1:].lstrip()
    if not line:
        return None
    word, _, rest = line.partition(" ")
    spec = _BY_WORD.get(word.lower())
    if spec is None:
        raise CommandError(f"unknown command {word!r}: type 'help' for the list")
    argument = rest.strip()
    if argument and not spec.takes_argument:
        raise CommandError(f"'{spec.name}' takes no argument (usage: {spec.usage})")
    if argument[:1] in ("'", '"'):
        try:
            parts = shlex.split(argument)
        except ValueError as exc:
            raise CommandError(f"cannot read {argument!r}: {exc}") from None
        argument = " ".join(parts)
    if spec.name == "upload" and not argument:
        raise CommandError("usage: upload PATH (one file)")
    if spec.name == "show" and not argument:
        raise CommandError(f"usage: {spec.usage}")
    if spec.name in ("pause", "resume") and argument and argument.lower() not in PANES:
        raise CommandError(f"usage: {spec.usage}")
    if spec.name in ("pause", "resume") or (spec.name == "show" and argument.lower() in PANES):
        argument = argument.lower()  # a file name keeps its case
    return ParsedCommand(spec.name, argument)


class MsiCommandProvider(Provider):
    """The command palette's entries: the same actions as the keys and the command bar."""

    def _entries(self) -> list[tuple[str, str, str]]:
        # (title shown, help, command line it runs)
        return [
            ("Check", "show counts, pending deliveries, lag and connection", "check"),
            ("Pause", "pause sending and consuming", "pause"),
            ("Resume", "resume sending and consuming", "resume"),
            ("Show upload pane", "bring the Upload pane to the front", "show upload"),
            ("Show reconstruct pane", "bring the Reconstruct pane to the front", "show reconstruct"),
            ("Upload a file…", "type the path in the command bar", "upload "),
            ("File details…", "type the file's name in the command bar", "show "),
            ("Errors only", "the log shows only warnings and errors (again: everything)", "errors"),
            ("Clear log", "clear the log panel (the log file keeps everything)", "clear"),
            ("Help", "list commands and keys", "help"),
            ("Quit", "deliver what is in flight, then exit (again to force)", "quit"),
        ]

    def _run(self, line: str) -> None:
        app = cast("AppHost", self.app)
        if line.endswith(" "):
            app.prefill_command(line)
        else:
            app.run_command(line)

    async def discover(self) -> Hits:
        for title, help_text, line in self._entries():
            yield DiscoveryHit(title, partial(self._run, line), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, line in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, line), help=help_text)
