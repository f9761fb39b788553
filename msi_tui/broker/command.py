"""`msi-tui broker start|stop|status`: the local broker (or cluster) from the command line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from msi_tui.broker.cluster import LocalCluster, default_cluster_home
from msi_tui.broker.local import LocalBroker
from msi_tui.errors import OperatorError

ACTIONS = ("start", "stop", "status")


def run_broker_command(
    action: str,
    port: int,
    home: Path | None = None,
    out: Callable[[str], object] = print,
    nodes: int | None = None,
    cluster_home: Path | None = None,
) -> int:
    """Run one broker action, print a line per node with `out`, and return the exit code.

    `nodes` 1 is the single-node broker (in `home`), more is a `LocalCluster` of that many
    brokers plus a controller (in `cluster_home`; brokers on `port`, `port+1`, ..., the
    controller on the next port). `start` without `nodes` starts one node; `stop` and
    `status` without it act on whichever of the two is running.

    Exit codes: 0 success (for `status`: running and answering); 1 `status` found the broker
    not running or not answering; `OperatorError.exit_code` (2) when the action failed, e.g.
    Java missing or the port taken.
    """
    try:
        if action not in ACTIONS:
            out(f"error: unknown broker action {action!r}: use one of {', '.join(ACTIONS)}")
            return OperatorError.exit_code
        if nodes is not None and nodes < 1:
            raise OperatorError(f"--nodes must be at least 1 (got {nodes})")
        single = LocalBroker(home, port=port)
        if nodes is not None and nodes > 1:
            return _cluster_action(action, LocalCluster(cluster_home, brokers=nodes, port=port), out)
        if nodes is None and action != "start":
            cluster = _existing_cluster(cluster_home, port)
            if cluster is not None and action == "stop":
                code = _single_action(action, single, out) if single.status().running else 0
                return max(code, _cluster_action(action, cluster, out))
            if cluster is not None and not single.status().running:
                return _cluster_action(action, cluster, out)
        return _single_action(action, single, out)
    except OperatorError as exc:
        out(f"error: {exc}")
        return exc.exit_code


def _single_action(action: str, broker: LocalBroker, out: Callable[[str], object]) -> int:
    if action == "start":
        bootstrap = broker.start()
        pid = broker.status().pid
        java = f", {broker.java.label}" if broker.java is not None else ""
        out(f"Kafka broker running at {bootstrap} (pid {pid}{java}), data in {broker.data_dir}")
        return 0
    if action == "stop":
        out("Kafka broker stopped" if broker.stop() else "Kafka broker not running")
        return 0
    st = broker.status()
    if not st.running:
        out(f"Kafka broker not running (home {st.home})")
        return 1
    if not st.answering:
        out(
            f"Kafka broker process {st.pid} is running but not answering at "
            f"{st.bootstrap} (starting up? logs in {broker.logs_dir})"
        )
        return 1
    out(f"Kafka broker running at {st.bootstrap} (pid {st.pid}), data in {broker.data_dir}")
    return 0


def _cluster_action(action: str, cluster: LocalCluster, out: Callable[[str], object]) -> int:
    if action == "start":
        bootstrap = cluster.start()
        java = next((f" on {node.java.label}" for node in cluster.nodes if node.java), "")
        out(f"Kafka cluster of {len(cluster.brokers)} brokers running{java}: --bootstrap {bootstrap}")
        _print_nodes(cluster, out)
        return 0
    if action == "stop":
        out("Kafka cluster stopped" if cluster.stop() else "Kafka cluster not running")
        return 0
    nodes = cluster.status()
    if not any(node.status.running for node in nodes):
        out(f"Kafka cluster not running (home {cluster.home})")
        return 1
    healthy = all(node.status.running and node.status.answering for node in nodes)
    out(f"Kafka cluster {'running' if healthy else 'degraded'}: --bootstrap {cluster.bootstrap}")
    _print_nodes(cluster, out)
    return 0 if healthy else 1


def _print_nodes(cluster: LocalCluster, out: Callable[[str], object]) -> None:
    for node in cluster.status():
        st = node.status
        state = "not running" if not st.running else ("answering" if st.answering else "not answering")
        pid = f" pid {st.pid}" if st.pid else ""
        out(f"  {node.name:<11} {st.bootstrap:<16} {state}{pid}")


def _existing_cluster(cluster_home: Path | None, port: int) -> LocalCluster | None:
    """The cluster formatted in `cluster_home` (default home), sized and placed as it was."""
    home = (cluster_home or default_cluster_home()).expanduser()
    broker_homes = sorted(home.glob("broker-*"), key=lambda p: p.name)
    if not broker_homes:
        return None
    ports: list[int] = []
    for broker_home in broker_homes:
        configured = LocalBroker(broker_home, port=port).configured_port()
        if configured is None:
            return None
        ports.append(configured)
    controller_port = _controller_port(home / "controller" / "server.properties")
    return LocalCluster(home, brokers=len(ports), broker_ports=ports, controller_port=controller_port)


def _controller_port(properties: Path) -> int | None:
    try:
        text = properties.read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("controller.quorum.voters="):
            try:
                return int(line.rsplit(":", 1)[1])
            except ValueError:
                return None
    return None
