"""What the app's parts (actions, quitting, the palette) may use of the app: a Protocol, so
they depend on this small surface and never import the app back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from msi_tui.formatting import LogLevel
from msi_tui.tui.context import AppContext, PaneName
from msi_tui.tui.slots import ServiceSlot

if TYPE_CHECKING:
    from textual.screen import Screen


class AppHost(Protocol):
    """The app as its parts see it (MsiTuiApp implements it)."""

    context: AppContext
    slots: dict[PaneName, ServiceSlot]
    main_screen: Screen[Any]
    front_pane: PaneName

    @property
    def screen(self) -> Screen[Any]: ...
    @property
    def is_headless(self) -> bool: ...

    def emit(self, level: LogLevel, message: str) -> None:
        """Write one line to the log panel and the log file."""
    def refresh_view(self) -> None:
        """Redraw every pane from fresh snapshots now."""
    def run_command(self, line: str) -> None:
        """Run one typed command line."""
    def prefill_command(self, text: str) -> None:
        """Put text in the command bar and focus it."""
    def exit_with(self, code: int) -> None:
        """Exit the app with `code`."""
    def key_help(self) -> list[tuple[str, str]]:
        """(keys, what they do) for the help screen."""
    def bell(self) -> None: ...
    def push_screen(self, screen: Any) -> Any: ...
    def install_screen(self, screen: Any, name: str) -> Any: ...
    def is_screen_installed(self, screen: Any) -> bool: ...
    def run_worker(self, work: Any, *args: Any, **kwargs: Any) -> Any: ...
    def call_from_thread(self, callback: Any, *args: Any, **kwargs: Any) -> Any: ...
