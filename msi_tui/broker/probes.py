"""What this machine says about a local broker: free and used ports, whether a broker
answers, its process group, and the lines of its logs worth showing an operator."""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
from pathlib import Path

from msi_tui.errors import OperatorError

HOST = "127.0.0.1"  # advertised listeners may not be 0.0.0.0; localhost may resolve to ::1

# librdkafka logs every refused connection while the broker boots: keep probes quiet.
_quiet = logging.getLogger("msi_tui.broker.probe")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when something listens on, or holds, `127.0.0.1:port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        if sock.connect_ex((HOST, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the JVM's server sockets, so a port in TIME_WAIT after a restart counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def meaningful(text: str, limit: int = 3) -> str:
    """The last few error lines of a Java log (no stack frames), joined on one line."""
    lines = [
        ln.strip()
        for ln in text.splitlines()
        if ln.strip() and not ln.lstrip().startswith(("at ", "... "))
    ]
    keys = ("ERROR", "FATAL", "Exception", "Error:", "already in use")
    picked = [ln for ln in lines if any(k in ln for k in keys)] or lines
    return " | ".join(ln[:300] for ln in picked[-limit:])


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0


def broker_answers(bootstrap: str, timeout: float) -> bool:
    """True if cluster metadata from `bootstrap` lists at least one broker."""
    # Imported here so that `msi-tui broker stop` does not pay for loading librdkafka.
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "socket.timeout.ms": 3000}, logger=_quiet)
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal a broker and its children: `pid` leads its own session, so it is the group id."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:
        raise OperatorError(f"not allowed to stop the Kafka broker (pid {pid})") from exc


def log_excerpt(logs_dir: Path) -> str:
    """The last meaningful lines of a broker's logs, and where they are."""
    texts = []
    for name in ("server.log", "console.log"):
        try:
            texts.append((logs_dir / name).read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
    excerpt = meaningful("\n".join(text[-64_000:] for text in texts)) or "no log output"
    return f"{excerpt} (logs in {logs_dir})"
