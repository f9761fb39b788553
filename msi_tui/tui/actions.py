"""What the operator can do: one method per command, shared by keys, command bar and palette."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.widgets import Input, Tabs

from msi_tui.console import reconstruct_counts, upload_counts
from msi_tui.errors import OperatorError
from msi_tui.tui.command_bar import CommandBar
from msi_tui.tui.commands import PANES, CommandError, parse_command
from msi_tui.tui.files_table import FilesTable
from msi_tui.tui.help_screen import HelpScreen
from msi_tui.tui.log_panel import EventLog

if TYPE_CHECKING:
    from msi_tui.tui.app import MsiTuiApp

    _Base = MsiTuiApp
else:
    _Base = object


class ActionsMixin(_Base):
    """Actions of `MsiTuiApp` (split out to keep each module small)."""

    # --- the command bar -------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not isinstance(event.input, CommandBar):
            return
        line = event.value
        event.input.remember(line.strip())
        event.input.value = ""
        self.run_command(line)

    def run_command(self, line: str) -> None:
        """Run one typed command line (the command bar and the palette come here)."""
        try:
            command = parse_command(line)
        except CommandError as exc:
            self.emit("error", str(exc))
            self.bell()
            return
        if command is None:
            return
        argument = command.argument
        match command.name:
            case "check":
                self.action_check()
            case "pause":
                self.action_pause(argument)
            case "resume":
                self.action_resume(argument)
            case "upload":
                self.upload_file(argument)
            case "show":
                self.action_show_pane(argument)
            case "clear":
                self.action_clear_log()
            case "log":
                where = self.context.log_path
                self.emit("info", f"full log: {where}" if where else "no log file in this session")
            case "help":
                self.action_help()
            case "quit":
                self.action_quit()

    def prefill_command(self, text: str) -> None:
        """Put `text` in the command bar and focus it (the palette's `Upload a file…`)."""
        bar = self.main_screen.query_one(CommandBar)
        bar.value = text
        bar.cursor_position = len(text)
        bar.focus()

    # --- actions ---------------------------------------------------------------------

    def action_check(self) -> None:
        """Write the counts of every service to the log: the headless console's words (the
        seed's `check`, and receipts), so `check` reads the same wherever it is typed."""
        self.refresh_view()  # so the lines match what the panes show right now
        for slot in self.slots.values():
            if slot.status == "failed":
                self.emit("error", f"{slot.name}: not running: {slot.error}")
            elif slot.status == "absent":
                continue
            elif slot.name == "upload" and self.context.uploader is not None:
                up = self.context.uploader
                self.emit("info", f"upload ({up.snapshot().state}): {upload_counts(up)}")
            elif slot.name == "reconstruct" and self.context.reconstructor is not None:
                rec = self.context.reconstructor
                self.emit("info", f"reconstruct ({rec.snapshot().state}): {reconstruct_counts(rec)}")
        if not any(s.service for s in self.slots.values()):
            self.emit("warning", "check: no service in this session")
        dropped = self.context.events.dropped_total
        if dropped:
            self.emit("warning", f"check: {dropped:,} events were too many to show in the log")

    def _targets(self, pane: str, verb: str) -> list:
        chosen = [s for s in self.slots.values() if not pane or s.name == pane]
        running = [s for s in chosen if s.status == "running" and s.service is not None]
        if not running:
            what = pane or "service"
            self.emit("warning", f"{verb}: no {what} is running")
        return running

    def action_pause(self, pane: str = "") -> None:
        """Pause the uploader (stop sending new chunks) and/or the reconstructor."""
        for slot in self._targets(pane, "pause"):
            slot.service.pause()
            self.emit("info", f"paused {slot.name}")
        self.refresh_view()

    def action_resume(self, pane: str = "") -> None:
        """Resume after `pause`."""
        for slot in self._targets(pane, "resume"):
            slot.service.resume()
            self.emit("info", f"resumed {slot.name}")
        self.refresh_view()

    def upload_file(self, argument: str) -> None:
        """Send one file now through the running uploader (`upload PATH`)."""
        path = Path(argument).expanduser()
        path = path if path.is_absolute() else Path.cwd() / path
        slot = self.slots["upload"]
        if slot.status != "running" or self.context.uploader is None:
            self.emit("error", f"upload {path}: the uploader is not running")
        elif path.is_dir():
            self.emit("error", f"upload {path}: is a folder; upload sends one file")
        elif not path.is_file():
            self.emit("error", f"upload {path}: no such file")
        else:
            try:
                self.context.uploader.enqueue_file(path)
            except OperatorError as exc:
                self.emit("error", f"upload {path}: {exc}")
            else:
                self.emit("info", f"upload {path}: queued")
        self.refresh_view()

    def action_show_pane(self, pane: str) -> None:
        """Bring a pane to the front (tabs layout) and focus its table."""
        if pane not in PANES:
            return
        self.front_pane = pane  # type: ignore[assignment]
        self.main_screen.query_one(Tabs).active = pane  # the TabActivated handler swaps the classes
        self.main_screen.query_one(f"#{pane}-files", FilesTable).focus()

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        pane = event.tab.id or "upload"
        self.front_pane = pane  # type: ignore[assignment]
        main = self.main_screen.query_one("#main")
        for name in PANES:
            main.set_class(name == pane, f"-show-{name}")

    def action_switch_pane(self) -> None:
        """The other pane: brought to the front when one shows at a time, else focused."""
        self.action_show_pane("reconstruct" if self.front_pane == "upload" else "upload")

    def action_focus_panes(self) -> None:
        """Leave the command bar for the front pane, where the letter keys work."""
        self.main_screen.query_one(f"#{self.front_pane}-files", FilesTable).focus()

    def action_focus_command(self) -> None:
        self.main_screen.query_one(CommandBar).focus()

    def action_clear_log(self) -> None:
        self.main_screen.query_one(EventLog).clear()

    def action_help(self) -> None:
        """Show every command and key on a modal screen."""
        if isinstance(self.screen, HelpScreen):
            return
        if not self.is_screen_installed("help"):  # built once: its table is costly to lay out
            self.install_screen(HelpScreen(self.key_help()), name="help")
        self.push_screen("help")

    def key_help(self) -> list[tuple[str, str]]:
        """(keys, description) per binding id, e.g. ("F2 or c", "Check"), after any keymap."""
        grouped: dict[str, list[Binding]] = {}
        for bindings in self._bindings.key_to_bindings.values():
            for binding in bindings:
                if binding.id and not binding.system:
                    grouped.setdefault(binding.id, []).append(binding)
        rows = []
        for group in grouped.values():
            # key_display names only the footer's key (F2); help lists every key (F2 or c).
            keys = dict.fromkeys(
                self.get_key_display(replace(b, key_display=None)).replace("f", "F", 1)
                if b.key.startswith("f") and b.key[1:].isdigit()
                else self.get_key_display(replace(b, key_display=None))
                for b in group
            )
            rows.append((" or ".join(keys), group[0].description))
        rows.append((self.get_key_display(Binding(self.COMMAND_PALETTE_BINDING, "")), "Command palette"))
        return rows
