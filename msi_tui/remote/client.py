"""The client side of a service's socket: connect, say hello, then read in a thread.

`ServiceConnection.open(path)` connects and reads the service's `ServiceInfo`; every
failure is an `OperatorError` saying what to do (no such service, another user's socket,
a service that was killed). `start()` then reads the rest in a thread: the newest snapshot
is kept for `snapshot()`, events go to the sink given, replies wake the command waiting
for them, and the end of the connection (the service stopped, or vanished) sets `ended`.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from msi_tui.engine.events import Event, Notice, Sink, discard
from msi_tui.engine.stats import ReconstructSnapshot, UploadSnapshot
from msi_tui.errors import OperatorError
from msi_tui.remote.protocol import (
    MAX_LINE,
    ClientHello,
    Command,
    Dropped,
    ProtocolError,
    Refused,
    Reply,
    ServiceInfo,
    Stopped,
    decode,
    encode,
)

LOG = logging.getLogger("msi_tui.remote")
CONNECT_TIMEOUT_S = 10.0


def connect(path: Path, timeout: float = CONNECT_TIMEOUT_S) -> socket.socket:
    """A connected socket, or an OperatorError that says why not and what to do."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(os.fspath(path))
    except FileNotFoundError:
        sock.close()
        raise OperatorError(f"no service listens at {path}: `msi-tui status` lists the running ones") from None
    except PermissionError:
        sock.close()
        owner = _owner(path)
        raise OperatorError(f"cannot open {path}: permission denied. A service's socket is private to the user "
                            f"that runs it{f' ({owner})' if owner else ''}: attach as that user") from None
    except ConnectionRefusedError:
        sock.close()
        raise OperatorError(f"the service at {path} is not running (it was killed; its socket is left over): "
                            "start it again") from None
    except OSError as exc:
        sock.close()
        raise OperatorError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    return sock


def _owner(path: Path) -> str:
    try:
        uid = path.stat().st_uid
    except OSError:
        try:
            uid = path.parent.stat().st_uid
        except OSError:
            return ""
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name}"
    except (ImportError, KeyError):
        return f"uid {uid}"


class ServiceConnection:
    """One client connection to one service."""

    def __init__(self, sock: socket.socket, path: Path, info: ServiceInfo, rfile: Any, sink: Sink) -> None:
        self.sock = sock
        self.path = path
        self.info = info
        self.sink = sink
        self._rfile = rfile
        self._send_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._replies: dict[int, threading.Event] = {}
        self._errors: dict[int, str] = {}
        self._snapshot: UploadSnapshot | ReconstructSnapshot | None = None
        self._snapshot_at = 0.0
        self.first_snapshot = threading.Event()
        self.ended = threading.Event()
        """The connection is over: the service stopped, vanished, or we closed it."""
        self.stopped_by_service = False
        """The service said it stopped (rather than the connection breaking)."""
        self.died = ""
        self.end_reason = ""
        self.detached = False
        self.dropped = 0
        self._reading = False

    @classmethod
    def open(cls, path: Path, sink: Sink = discard, events: bool = True, snapshot_every: float = 0.2,
             timeout: float = CONNECT_TIMEOUT_S, client: str = "msi-tui") -> ServiceConnection:
        sock = connect(path, timeout)
        rfile = sock.makefile("rb")
        try:
            try:
                sock.sendall(encode(ClientHello(events=events, snapshot_every=snapshot_every,
                                                client=f"{client} pid {os.getpid()}")))
            except BrokenPipeError:
                pass  # a service that refuses says why before it closes: read that
            first = _read(rfile)
        except (OSError, ProtocolError) as exc:
            sock.close()
            raise OperatorError(f"the service at {path} did not answer as an msi-tui service: {exc}") from None
        if isinstance(first, Refused):
            sock.close()
            raise OperatorError(f"the service at {path} refused this client: {first.reason}")
        if not isinstance(first, ServiceInfo):
            sock.close()
            raise OperatorError(f"the service at {path} did not answer as an msi-tui service "
                                f"({'it closed the connection' if first is None else type(first).__name__})")
        sock.settimeout(None)
        return cls(sock, path, first, rfile, sink)

    # --- reading ----------------------------------------------------------------------------

    def start(self) -> None:
        self._reading = True
        threading.Thread(target=self._read_loop, name=f"msi-attach-{self.info.name}", daemon=True).start()

    def read_until_snapshot(self, timeout: float) -> UploadSnapshot | ReconstructSnapshot | None:
        """Without a thread (`status`): read up to the first snapshot."""
        self.sock.settimeout(timeout)
        try:
            while self._snapshot is None:
                message = _read(self._rfile)
                if message is None:
                    break
                self._handle(message)
        except (OSError, ProtocolError):
            pass
        return self._snapshot

    def _read_loop(self) -> None:
        reason = "the connection to the service was lost"
        try:
            while True:
                message = _read(self._rfile)
                if message is None:
                    break
                self._handle(message)
        except ProtocolError as exc:
            reason = f"the service sent what this client cannot read ({exc})"
            LOG.warning("%s: %s", self.path, reason)
        except OSError as exc:
            reason = f"the connection to the service was lost ({exc.strerror or exc})"
        finally:
            self._end(reason)

    def _handle(self, message: Any) -> None:
        if isinstance(message, (UploadSnapshot, ReconstructSnapshot)):
            self._snapshot = message
            self._snapshot_at = time.monotonic()
            self.first_snapshot.set()
        elif isinstance(message, Event):
            self.sink(message)
        elif isinstance(message, Reply):
            waiting = self._replies.pop(message.id, None)
            if waiting is not None:
                self._errors[message.id] = message.error
                waiting.set()
            elif message.error:  # nobody waits: the operator still hears of it
                self.sink(Notice(level="error", message=f"{self.info.name}: {message.error}", at=time.time()))
        elif isinstance(message, Dropped):
            self.dropped += message.count
            self.sink(Notice(level="warning", at=time.time(), message=(
                f"{message.count:,} events of {self.info.name} not shown (this client fell behind); "
                "counts stay exact")))
        elif isinstance(message, Stopped):
            self.stopped_by_service = True
            self.died = message.died

    def _end(self, reason: str) -> None:
        if self.ended.is_set():
            return
        if self.stopped_by_service:
            reason = f"the service stopped: {self.died}" if self.died else "the service stopped"
        elif self.detached:
            reason = "detached"
        self.end_reason = reason
        self.ended.set()
        for waiting in list(self._replies.values()):
            waiting.set()
        try:
            self.sock.close()
        except OSError:
            pass

    # --- what the proxies use --------------------------------------------------------------

    @property
    def snapshot(self) -> UploadSnapshot | ReconstructSnapshot | None:
        return self._snapshot

    def command(self, name: str, path: str = "", wait: float = 0.0) -> str | None:
        """Send a command. With `wait`, its error ("" when done) once the reply came, or None
        when it did not come in time (a later error still reaches the sink). Raises
        OperatorError when the service is no longer there."""
        if self.ended.is_set():
            raise OperatorError(f"{self.info.name}: {self.end_reason}")
        command_id = next(self._ids)
        waiting = threading.Event() if wait > 0 else None
        if waiting is not None:
            self._replies[command_id] = waiting
        try:
            with self._send_lock:
                self.sock.sendall(encode(Command(id=command_id, name=name, path=path)))
        except OSError as exc:
            self._replies.pop(command_id, None)
            raise OperatorError(f"{self.info.name}: cannot reach the service ({exc.strerror or exc})") from None
        if waiting is None:
            return None
        if not waiting.wait(wait):
            self._replies.pop(command_id, None)
            return None
        if command_id not in self._errors:
            raise OperatorError(f"{self.info.name}: {self.end_reason or 'no answer'}")
        return self._errors.pop(command_id)

    def close(self) -> None:
        """Detach: the service goes on."""
        self.detached = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if not self._reading or not self.ended.wait(2.0):
            self._end("detached")


def _read(rfile: Any) -> Any:
    line = rfile.readline(MAX_LINE)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise ProtocolError("line too long" if len(line) >= MAX_LINE else "connection ended mid-line")
    return decode(line)
