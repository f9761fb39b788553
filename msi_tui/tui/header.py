"""The one-line header: which cluster, where, which topic, and whether we reach it."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

# Worst first: the header shows the worst connection state among the running services.
CONNECTION_ORDER = ("unreachable", "not started", "connecting", "unknown", "connected")
CONNECTION_MARKS = {
    "connected": "●", "connecting": "◌", "unreachable": "✗", "not started": "✗", "unknown": "?",
}
# A badge with an explicit background so it reads on any theme and in 16 colours.
CONNECTION_BADGES = {
    "connected": "bold black on green",
    "connecting": "bold black on yellow",
    "unreachable": "bold white on red",
    "not started": "bold white on red",
    "unknown": "black on white",
}


def combined_connection(states: list[str]) -> str:
    """The state the header shows for several services: the worst one, `unknown` if none."""
    known = [s for s in states if s in CONNECTION_ORDER]
    if not known:
        return "unknown"
    return min(known, key=CONNECTION_ORDER.index)


class ClusterHeader(Static):
    """Cluster name, bootstrap servers, topic and connection state on one line."""

    DEFAULT_CSS = """
    ClusterHeader {
        dock: top;
        height: 1;
        background: $primary;
        color: $text;
        padding: 0 1;
    }
    """

    def __init__(self, cluster: str, bootstrap: str, topic: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.cluster = cluster
        self.bootstrap = bootstrap
        self.topic = topic
        self.connection = "unknown"
        self._shown: Text | None = None

    def on_mount(self) -> None:
        self.show_connection("connecting")

    def show_connection(self, connection: str) -> None:
        """Redraw with a new connection state (no-op when nothing changed)."""
        self.connection = connection
        text = Text.assemble(
            ("msi-tui", "bold"),
            "  ",
            (self.cluster, "bold"),
            f"  {self.bootstrap}  topic ",
            (self.topic, "bold"),
            "  ",
            (
                f" {CONNECTION_MARKS.get(connection, '?')} {connection} ",
                CONNECTION_BADGES.get(connection, CONNECTION_BADGES["unknown"]),
            ),
        )
        if text != self._shown:
            self._shown = text
            self.update(text)
