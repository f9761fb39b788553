"""The wire format between a service and the clients attached to it: versioned JSON lines.

Every line is one JSON object, one plain dataclass: `{"v": 1, "type": "<class name>",
<its fields>...}`. The classes are the engine's own events (msi_tui.engine.events) and
snapshots (msi_tui.engine.stats, with their nested FileProgress rows), and the few
messages of this module: `ClientHello`, `ServiceInfo`, `Command`, `Reply`, `Dropped`,
`Stopped`, `Refused`. A field that is itself a dataclass is an object with its own "type";
tuples travel as arrays.

Compatibility: `v` changes only when a message changes incompatibly. Within one `v`, a
reader ignores fields it does not know and takes the default of fields that are missing,
so a field added with a default needs no new version. A line of another `v`, or of a
class the reader does not know, is refused (`ProtocolError`).

The conversation (docs/services.md): the client sends `ClientHello`; the service answers
`ServiceInfo`, then a snapshot, then recent events (the backlog), then the stream of events
and a snapshot every `snapshot_every` seconds. The client may send `Command`s at any time;
each gets a `Reply` with its id. When the service stops it sends a last snapshot and
`Stopped`, and closes the socket.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from msi_tui.engine import events as engine_events
from msi_tui.engine import stats as engine_stats

PROTOCOL_VERSION = 1
MAX_LINE = 16 * 1024 * 1024  # a snapshot of hundreds of files is ~100 KB; anything near this is garbage


class ProtocolError(ValueError):
    """A line that is not a message of this protocol version."""


# --- the messages of this layer ----------------------------------------------------------


@dataclass(frozen=True)
class ClientHello:
    """The client's first line: what it wants to receive."""

    protocol: int = PROTOCOL_VERSION
    events: bool = True
    """Stream events (the recent backlog first)."""
    snapshot_every: float = 0.2
    """Push a snapshot this often, in seconds; 0: only the first one and those asked for."""
    client: str = ""
    """Who is attaching, for the service's own output (e.g. `attach pid 4242`)."""


@dataclass(frozen=True)
class ServiceInfo:
    """The service's first line: what it is."""

    name: str
    kind: str  # "upload" or "reconstruct"
    pid: int
    started_at: float
    cluster_name: str
    bootstrap: str
    topic: str
    folder: str
    """The watched folder (upload) or the output folder (reconstruct), absolute."""
    group_id: str = ""
    version: str = ""
    """The msi-tui version the service runs."""
    protocol: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class Command:
    """What a client asks of the service: the service protocol's methods, by name."""

    id: int
    name: str  # one of COMMANDS
    path: str = ""  # enqueue_file's file, absolute


COMMANDS = ("pause", "resume", "request_stop", "force_stop", "enqueue_file", "snapshot")


@dataclass(frozen=True)
class Reply:
    """The answer to `Command` `id`: done, or `error` (one line for the operator)."""

    id: int
    error: str = ""


@dataclass(frozen=True)
class Dropped:
    """`count` events were not sent to this client: it read too slowly (counts stay exact)."""

    count: int


@dataclass(frozen=True)
class Stopped:
    """The service stopped (a last snapshot came just before); `died` says why when a thread
    of its own ended unexpectedly."""

    died: str = ""


@dataclass(frozen=True)
class Refused:
    """The service will not talk to this client (another user, another protocol version)."""

    reason: str


# --- the codec -----------------------------------------------------------------------------


def _dataclasses_of(module: Any) -> dict[str, type]:
    return {name: obj for name, obj in vars(module).items()
            if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__}


TYPES: dict[str, type] = {
    **_dataclasses_of(engine_events),
    **_dataclasses_of(engine_stats),
    **{cls.__name__: cls for cls in (ClientHello, ServiceInfo, Command, Reply, Dropped, Stopped, Refused)},
}
"""Every class a line may carry, by name: new engine events travel without a change here."""


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def to_plain(value: Any) -> Any:
    """A dataclass (and what it holds) as JSON-ready values: objects carry their "type"."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        plain = {"type": type(value).__name__}
        for name in _field_names(type(value)):
            plain[name] = to_plain(getattr(value, name))
        return plain
    if isinstance(value, (tuple, list)):
        return [to_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def from_plain(value: Any) -> Any:
    """The inverse of `to_plain`: objects with a known "type" become that dataclass (unknown
    fields ignored, missing ones defaulted), arrays become tuples."""
    if isinstance(value, dict):
        if "type" not in value:
            return {key: from_plain(item) for key, item in value.items()}
        cls = TYPES.get(value["type"])
        if cls is None:
            raise ProtocolError(f"unknown message type {value['type']!r}")
        kwargs = {name: from_plain(value[name]) for name in _field_names(cls) if name in value}
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ProtocolError(f"{value['type']}: {exc}") from None
    if isinstance(value, list):
        return tuple(from_plain(item) for item in value)
    return value


def encode(message: Any) -> bytes:
    """One message as one line (ASCII JSON: names that are not UTF-8 keep their escapes)."""
    plain = to_plain(message)
    plain["v"] = PROTOCOL_VERSION
    return json.dumps(plain, separators=(",", ":")).encode("ascii") + b"\n"


def decode(line: bytes) -> Any:
    """One line back into its message; ProtocolError for anything else."""
    try:
        plain = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"not a JSON line: {exc}") from None
    if not isinstance(plain, dict) or "type" not in plain:
        raise ProtocolError("not a message (no type)")
    version = plain.pop("v", None)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {version!r}, this msi-tui speaks {PROTOCOL_VERSION}")
    return from_plain(plain)
