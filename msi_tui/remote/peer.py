"""One client attached to a service: its socket, the lines waiting for it, and the writer
thread that sends them (see msi_tui.remote.server)."""

from __future__ import annotations

import logging
import socket
import threading
from collections import deque
from typing import Any

from msi_tui.remote.protocol import MAX_LINE, Dropped, ProtocolError, Refused, decode, encode

LOG = logging.getLogger("msi_tui.remote")
PEER_QUEUE = 10_000  # lines waiting for one client before its events are dropped


class Peer:
    """One attached client: its socket, the lines waiting for it, and its writer thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.who = "a client"
        self.events = True
        self.snapshot_every = 0.0
        self.next_snapshot = 0.0
        self.finishing = False
        self._rfile = sock.makefile("rb")
        self._out: deque[bytes] = deque()
        self._snapshot: bytes | None = None
        self._dropped = 0
        self._cond = threading.Condition()
        self._closed = False
        self._writer: threading.Thread | None = None

    def read(self) -> Any:
        """The next message, or None at the end of the connection."""
        line = self._rfile.readline(MAX_LINE)
        if not line:
            return None
        if not line.endswith(b"\n"):
            raise ProtocolError("line too long" if len(line) >= MAX_LINE else "connection ended mid-line")
        return decode(line)

    def start(self, first: list[bytes]) -> None:
        self._out.extend(first)
        self._writer = threading.Thread(target=self._write_loop, name="msi-remote-writer", daemon=True)
        self._writer.start()

    def send(self, line: bytes) -> None:
        """A line that must arrive (a reply)."""
        with self._cond:
            if not self._closed:
                self._out.append(line)
                self._cond.notify()

    def send_event(self, line: bytes) -> None:
        """An event: dropped (and counted) when the client is too far behind."""
        if not self.events:
            return
        with self._cond:
            if self._closed or self.finishing:
                return
            if len(self._out) >= PEER_QUEUE:
                self._dropped += 1
                return
            self._out.append(line)
            self._cond.notify()

    def set_snapshot(self, line: bytes) -> None:
        """The newest snapshot replaces one not yet sent: snapshots never pile up."""
        with self._cond:
            self._snapshot = line
            self._cond.notify()

    def finish(self, last: list[bytes]) -> None:
        """Send what waits, then `last`, then close."""
        with self._cond:
            self.finishing = True
            self._snapshot = None
            self._out.extend(last)
            self._cond.notify()
        if self._writer is None:
            self.close()

    def join(self, timeout: float) -> None:
        if self._writer is not None:
            self._writer.join(timeout)
        self.close()

    def refuse(self, reason: str) -> None:
        LOG.warning("client refused: %s", reason)
        try:
            self.sock.sendall(encode(Refused(reason)))
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _write_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (self._out or self._snapshot or self._closed or self.finishing):
                        self._cond.wait()
                    if self._closed:
                        return
                    batch = list(self._out)
                    self._out.clear()
                    if self._dropped and len(batch) < PEER_QUEUE:
                        batch.append(encode(Dropped(self._dropped)))
                        self._dropped = 0
                    if self._snapshot is not None:
                        batch.append(self._snapshot)
                        self._snapshot = None
                    last = self.finishing
                if batch:
                    self.sock.sendall(b"".join(batch))
                if last:
                    with self._cond:
                        if not self._out:
                            break
        except OSError:
            pass  # the client went away: its reader sees the end too
        finally:
            if self.finishing:
                self.close()
