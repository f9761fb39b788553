"""The service side: one engine service served on its Unix socket to any number of clients.

`ServiceHost` binds the socket before the engine starts (a second service of the same name
is refused at once), wraps the engine's sink so every event also goes to each client, and,
once the service runs, accepts clients. Per client, a reader thread takes its commands and
a writer thread sends its lines (msi_tui.remote.peer); the engine's threads only ever append a line to a bounded
queue (a client that reads too slowly loses events, told by a `Dropped` count, never slows
the transfer). One ticker thread takes the snapshots clients asked for, once per tick for
all of them.

Nothing here is imported by the engine, and nothing here imports Textual.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from msi_tui.engine.events import Event, Sink
from msi_tui.errors import OperatorError
from msi_tui.remote.names import check_name, lock_path, services_dir, socket_path
from msi_tui.remote.peer import Peer
from msi_tui.remote.protocol import (
    PROTOCOL_VERSION,
    ClientHello,
    Command,
    ProtocolError,
    Reply,
    ServiceInfo,
    Stopped,
    encode,
)

LOG = logging.getLogger("msi_tui.remote")
BACKLOG_EVENTS = 500  # recent events a newly attached client receives (its log is not empty)
HELLO_TIMEOUT_S = 10.0
CLOSE_FLUSH_S = 2.0  # how long the last lines may take to reach the clients at the end
MIN_SNAPSHOT_EVERY_S = 0.05


def _peer_uid(sock: socket.socket) -> tuple[int, int] | None:
    """(pid, uid) of the process at the other end, where the system tells (Linux)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    return pid, uid


def _take_lock(path: Path) -> int:
    import fcntl  # (here: services are POSIX-only, and the command line must import on Windows)

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    return fd


def _private_folder(folder: Path) -> None:
    """The services folder, created 0700; an existing one of ours is made 0700 again."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = folder.stat()
    if st.st_uid == os.geteuid() and st.st_mode & 0o077:
        folder.chmod(0o700)


class ServiceHost:
    """Serves one engine service (an Uploader or a Reconstructor) on its socket."""

    def __init__(self, name: str, kind: str, say: Callable[[str], None] | None = None,
                 backlog: int = BACKLOG_EVENTS) -> None:
        self.name = check_name(name)
        self.kind = kind
        self.path = socket_path(name)
        self.say = say or (lambda line: None)
        _private_folder(services_dir())
        try:
            self._lock_fd = _take_lock(lock_path(name))
        except BlockingIOError:
            raise OperatorError(f"a service named {name} is already running (socket {self.path}): "
                                f"`msi-tui attach {name}` opens it, --name NAME starts another") from None
        try:
            self._listener = self._bind()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._lock = threading.Lock()
        self._peers: set[Peer] = set()
        self._backlog: deque[Event] = deque(maxlen=backlog)
        self._service: Any = None
        self._info: ServiceInfo | None = None
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._snapshot_all = False
        self._started = threading.Event()
        self._threads: list[threading.Thread] = []

    def _bind(self) -> socket.socket:
        # The lock is ours, so a socket file left here is a killed service's: replace it.
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Made 0600 as it is created (no thread runs yet to be surprised by the umask), and
        # chmod-ed after in case the platform ignores the umask for sockets.
        old = os.umask(0o177)
        try:
            listener.bind(os.fspath(self.path))
        except OSError as exc:
            listener.close()
            raise OperatorError(f"cannot listen on {self.path}: {exc.strerror or exc}") from None
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        listener.listen(16)
        return listener

    # --- the engine's side ------------------------------------------------------------------

    def wrap(self, inner: Sink) -> Sink:
        """The sink to build the service with: `inner` (the console) and then every client."""

        def sink(event: Event) -> None:
            try:
                inner(event)
            finally:
                self.publish(event)

        return sink

    def publish(self, event: Event) -> None:
        """Send one event to every client (and keep it for those attaching later). Never
        raises; with nobody attached it costs an append."""
        with self._lock:
            self._backlog.append(event)
            peers = list(self._peers)
        if not peers:
            return
        line = _encoded(event)
        if line:
            for peer in peers:
                peer.send_event(line)

    def serve(self, service: Any, info: ServiceInfo) -> None:
        """Start answering clients on behalf of `service`, before its `start()` returns:
        `status` and `attach` see it starting; commands wait for `mark_started()`."""
        self._service, self._info = service, info
        for target, name in ((self._accept_loop, "msi-remote-accept"), (self._tick_loop, "msi-remote-snapshots")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def mark_started(self) -> None:
        """The service's start() returned: commands are taken from now on."""
        self._started.set()

    def close(self, died: str = "") -> None:
        """The service stopped (or never started, `died` says why): a last snapshot and
        `Stopped` to every client, then the socket goes."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        with self._lock:
            peers = list(self._peers)
            self._peers.clear()
        last: list[bytes] = []
        if self._service is not None:
            died = died or getattr(self._service, "died", None) or ""
            last = [encode(self._service.snapshot()), encode(Stopped(died=died))]
        for peer in peers:
            peer.finish(last)
        deadline = time.monotonic() + CLOSE_FLUSH_S
        for peer in peers:
            peer.join(max(0.0, deadline - time.monotonic()))
        os.close(self._lock_fd)

    def clients(self) -> int:
        with self._lock:
            return len(self._peers)

    # --- clients --------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                if self._closed.is_set():
                    return
                time.sleep(0.1)  # (out of descriptors, say): try again, never spin
                continue
            threading.Thread(target=self._serve_peer, args=(sock,), name="msi-remote-client", daemon=True).start()

    def _serve_peer(self, sock: socket.socket) -> None:
        peer = Peer(sock)
        try:
            credentials = _peer_uid(sock)
            if credentials is not None and credentials[1] not in (os.geteuid(), 0):  # (root may anyway)
                peer.refuse(f"this service runs as uid {os.geteuid()}, not {credentials[1]}")
                return
            sock.settimeout(HELLO_TIMEOUT_S)
            hello = peer.read()
            sock.settimeout(None)
            if not isinstance(hello, ClientHello):
                peer.refuse("the first line must be ClientHello")
                return
            if hello.protocol != PROTOCOL_VERSION:
                peer.refuse(f"this service speaks protocol {PROTOCOL_VERSION}, the client {hello.protocol}: "
                            "use the same msi-tui version on both sides")
                return
            pid = credentials[0] if credentials else 0
            peer.who = hello.client or f"pid {pid}"
            self._attach(peer, hello)
            if hello.events:  # (not `status` and `stop`: they come and go)
                self.say(f"client attached: {peer.who}")
            while True:
                message = peer.read()
                if message is None:
                    break
                if isinstance(message, Command):
                    self._run(peer, message)
        except (OSError, ProtocolError, ValueError) as exc:
            LOG.info("client %s: %s", peer.who, exc)
        finally:
            with self._lock:
                attached = peer in self._peers
                self._peers.discard(peer)
            if attached and peer.events and not self._closed.is_set():
                self.say(f"client detached: {peer.who}")
            if not peer.finishing:
                peer.close()

    def _attach(self, peer: Peer, hello: ClientHello) -> None:
        """ServiceInfo, a snapshot, the backlog, and from then on every event."""
        assert self._service is not None and self._info is not None
        peer.events = hello.events
        peer.snapshot_every = max(MIN_SNAPSHOT_EVERY_S, hello.snapshot_every) if hello.snapshot_every > 0 else 0.0
        first = [encode(self._info), encode(self._service.snapshot())]
        with self._lock:
            backlog = [line for line in map(_encoded, self._backlog) if line] if hello.events else []
            # Counted before its writer starts, so a client never sees itself attached before the
            # host does; events wait for the lock, so they follow `first`.
            self._peers.add(peer)
            peer.start(first + backlog)
        peer.next_snapshot = time.monotonic() + peer.snapshot_every
        self._wake.set()

    def _run(self, peer: Peer, command: Command) -> None:
        """One command, answered with a Reply; then fresh snapshots for everyone."""
        service, error = self._service, ""
        try:
            if not self._started.is_set() and command.name != "snapshot":
                raise OperatorError("the service is still starting (reaching the broker): try again in a moment")
            match command.name:
                case "pause" | "resume":
                    getattr(service, command.name)()
                    self.say(f"{command.name}d (by {peer.who})")
                case "request_stop":
                    self.say(f"quitting (asked by {peer.who}): "
                              + ("delivering every enqueued chunk first" if self.kind == "upload"
                                 else "committing and leaving the group"))
                    service.request_stop()
                case "force_stop":
                    self.say(f"quitting now, without waiting (asked by {peer.who})")
                    service.force_stop()
                case "enqueue_file" if self.kind == "upload":
                    service.enqueue_file(Path(command.path))
                case "snapshot":
                    pass  # the fresh snapshot below is the answer
                case _:
                    error = f"{self.kind} service: no command {command.name!r}"
        except OperatorError as exc:
            error = str(exc)
        except Exception as exc:  # a bug of ours: the client hears of it, the service goes on
            LOG.exception("command %r from %s", command, peer.who)
            error = f"{type(exc).__name__}: {exc}"
        if command.name == "snapshot":
            peer.set_snapshot(encode(service.snapshot()))
        peer.send(encode(Reply(id=command.id, error=error)))
        self._snapshot_all = True
        self._wake.set()

    def _tick_loop(self) -> None:
        """Snapshots for the clients that are due, one snapshot taken per tick for all."""
        while not self._closed.is_set():
            now = time.monotonic()
            with self._lock:
                peers = [p for p in self._peers if p.snapshot_every > 0]
            everyone, self._snapshot_all = self._snapshot_all, False
            due = [p for p in peers if everyone or now >= p.next_snapshot]
            if due:
                try:
                    line = encode(self._service.snapshot())
                except Exception:
                    LOG.exception("snapshot not sent")
                    line = b""
                for peer in due:
                    if line:
                        peer.set_snapshot(line)
                    peer.next_snapshot = now + peer.snapshot_every
            wait = min((p.next_snapshot for p in peers), default=now + 1.0) - time.monotonic()
            self._wake.wait(min(1.0, max(0.0, wait)))
            self._wake.clear()


def _encoded(event: Event) -> bytes:
    try:
        return encode(event)
    except Exception:  # an event that does not encode is a bug of ours: logged, not fatal
        LOG.exception("event not sent to clients: %r", event)
        return b""
