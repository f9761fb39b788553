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


def worst_connection(by_service: dict[str, str]) -> tuple[str, str]:
    """(state, which service) for the header: the worst state, and the service in it when
    the services disagree ("" when they agree or there is only one)."""
    state = combined_connection(list(by_service.values()))
    if len(set(by_service.values())) <= 1:
        return state, ""
    return state, next(name for name, s in by_service.items() if s == state)


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
        self.service = ""
        self._shown: Text | None = None

    def on_mount(self) -> None:
        self.show_connection("connecting")

    def show_connections(self, by_service: dict[str, str]) -> None:
        """Each service's connection state: the header shows the worst, naming its service
        when the other one is better off."""
        self.show_connection(*worst_connection(by_service))

    def show_connection(self, connection: str, service: str = "") -> None:
        """Redraw with a new connection state (no-op when nothing changed)."""
        self.connection, self.service = connection, service
        text = self._line()
        if text != self._shown:
            self._shown = text
            self.update(text)

    def on_resize(self) -> None:
        self.show_connection(self.connection, self.service)

    def _line(self) -> Text:
        """Who and where, then the connection badge, which always shows in full: when the
        line is too long (a long topic at 80 columns) the names are cut, not the badge."""
        which = f"{self.service} " if self.service else ""
        badge = Text(f" {CONNECTION_MARKS.get(self.connection, '?')} {which}{self.connection} ",
                     style=CONNECTION_BADGES.get(self.connection, CONNECTION_BADGES["unknown"]))
        names = Text.assemble(("msi-tui", "bold"), "  ", (self.cluster, "bold"), f"  {self.bootstrap}  topic ",
                              (self.topic, "bold"))
        room = self.content_size.width - badge.cell_len - 2
        if self.content_size.width and names.cell_len > room:
            names.truncate(max(1, room), overflow="ellipsis")
        return Text.assemble(names, "  ", badge)
