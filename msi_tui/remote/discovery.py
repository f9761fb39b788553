"""Which services run, and connections to them by name: what `attach` and `status` start from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from msi_tui.engine.events import Sink
from msi_tui.errors import OperatorError
from msi_tui.remote.client import ServiceConnection
from msi_tui.remote.names import listed_sockets, resolve, services_dir


def open_for_attach(names: list[str], sink: Sink) -> list[ServiceConnection]:
    """Connections to the services named (names or socket paths), or to every running one;
    at most one upload and one reconstruct service (the app has one pane of each)."""
    if names:
        connections = []
        try:
            for name in names:
                connections.append(ServiceConnection.open(resolve(name), sink=sink, client="msi-tui attach"))
        except OperatorError:
            for connection in connections:
                connection.close()
            raise
    else:
        connections = [c for c, _ in running(lambda path: ServiceConnection.open(path, sink=sink,
                                                                                   client="msi-tui attach"))]
        if not connections:
            raise OperatorError(f"no service is running (none in {services_dir()}): start one with "
                                "`msi-tui upload DIR --service --background` (docs/services.md)")
    by_kind: dict[str, list[str]] = {}
    for connection in connections:
        by_kind.setdefault(connection.info.kind, []).append(connection.info.name)
    crowded = {kind: found for kind, found in by_kind.items() if len(found) > 1}
    if crowded:
        for connection in connections:
            connection.close()
        kind, found = next(iter(crowded.items()))
        raise OperatorError(f"several {kind} services: {', '.join(found)}; the app shows one upload and one "
                            f"reconstruct service: name them, e.g. `msi-tui attach {found[0]}`")
    return connections


def running(opener: Callable[[Path], ServiceConnection]) -> list[tuple[ServiceConnection, Path]]:
    """Every service that answers, with its socket; sockets of killed services are skipped."""
    found = []
    for path in listed_sockets():
        try:
            found.append((opener(path), path))
        except OperatorError:
            continue  # left by a killed service (replaced when it starts again), or not ours
    return found
