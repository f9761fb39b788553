"""A local multi-broker Kafka cluster: one dedicated KRaft controller plus N brokers.

Why a dedicated controller: with combined broker + controller nodes, losing 2 of 3 nodes also
loses the controller quorum, so a broker-failure test would test the quorum instead. Here any
broker can die and the controller still elects new partition leaders.

Every node is a `LocalBroker` with its own home under the cluster's home::

    <home>/cluster.id     the shared KRaft cluster id (all nodes are formatted with it)
    <home>/controller/    node 0, roles=controller, listens on controller_port only
    <home>/broker-1/ ...  nodes 1..N, roles=broker, PLAINTEXT on port, port+1, ...

Replication suits failure tests: `default.replication.factor` = min(3, N) and
`min.insync.replicas` = that minus one (3 brokers: 3 and 2), also for the internal topics.
With producer `acks=all`, one broker can die without losing an acknowledged record.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from msi_tui import paths
from msi_tui.broker.local import HOST, BrokerStatus, LocalBroker, new_cluster_id, port_in_use
from msi_tui.errors import OperatorError

CONTROLLER_NODE_ID = 0


def default_cluster_home() -> Path:
    """The home of the operator's local cluster: `<state dir>/cluster`."""
    return paths.state_dir() / "cluster"


@dataclass(frozen=True)
class NodeStatus:
    """One node of `LocalCluster.status()`."""

    name: str  # "controller", "broker-1", ...
    status: BrokerStatus


class LocalCluster:
    """One KRaft controller and `brokers` brokers on 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        home: Path | None = None,
        brokers: int = 3,
        port: int = 9092,
        controller_port: int | None = None,
        heap_mb: int = 256,
        broker_ports: list[int] | None = None,
    ) -> None:
        """Brokers listen on `broker_ports`, by default `port`, `port+1`, ...; the controller
        on `controller_port`, by default the port after the last broker's."""
        if brokers < 1:
            raise OperatorError(f"a cluster needs at least one broker (got {brokers})")
        self.home = (Path(home) if home is not None else default_cluster_home()).expanduser().resolve()
        ports = list(broker_ports) if broker_ports is not None else [port + i for i in range(brokers)]
        if len(ports) != brokers:
            raise OperatorError(f"{brokers} brokers need {brokers} ports (got {len(ports)})")
        self.controller_port = controller_port if controller_port is not None else max(ports) + 1
        if len({*ports, self.controller_port}) != brokers + 1:
            raise OperatorError(f"the cluster's ports must all differ ({ports} and {self.controller_port})")
        voters = f"{CONTROLLER_NODE_ID}@{HOST}:{self.controller_port}"
        cluster_id = self._cluster_id()
        replication = min(3, brokers)
        min_isr = max(1, replication - 1)
        replication_props = {
            "default.replication.factor": str(replication),
            "min.insync.replicas": str(min_isr),
            "offsets.topic.replication.factor": str(replication),
            "transaction.state.log.replication.factor": str(replication),
            "transaction.state.log.min.isr": str(min_isr),
            "share.coordinator.state.topic.replication.factor": str(replication),
            "share.coordinator.state.topic.min.isr": str(min_isr),
        }
        self.controller = LocalBroker(
            self.home / "controller", port=None, controller_port=self.controller_port,
            heap_mb=heap_mb, node_id=CONTROLLER_NODE_ID, roles="controller",
            quorum_voters=voters, cluster_id=cluster_id,
            # In KRaft the controller resolves a new topic's replication factor: it needs them too.
            extra_properties=replication_props,
        )
        self.brokers = [
            LocalBroker(
                self.home / f"broker-{i + 1}", port=broker_port, controller_port=self.controller_port,
                heap_mb=heap_mb, node_id=i + 1, roles="broker", quorum_voters=voters,
                cluster_id=cluster_id, extra_properties=replication_props,
            )
            for i, broker_port in enumerate(ports)
        ]

    @property
    def bootstrap(self) -> str:
        """Every broker, comma-separated: the `bootstrap.servers` value for clients."""
        return ",".join(broker.bootstrap for broker in self.brokers)

    @property
    def nodes(self) -> list[LocalBroker]:
        """The controller first, then the brokers."""
        return [self.controller, *self.brokers]

    def start(self, timeout: float = 180) -> str:
        """Start every node that is not running (all at once), wait until each answers, and
        return the bootstrap servers. Idempotent: also restarts a broker killed earlier.

        On any failure every node started here is stopped again, and `OperatorError` raised.
        """
        # All ports first: never leave a controller running because broker 3's port is taken.
        for node in self.nodes:
            if node.status().running:
                continue
            for name, port in node.bound_ports():
                if port_in_use(port):
                    raise OperatorError(
                        f"port {port} on {HOST} ({name}, {node.home.name}) is already in use by "
                        "another program: stop it or choose other ports"
                    )
        self.home.mkdir(parents=True, exist_ok=True)
        started: list[LocalBroker] = []
        try:
            for node in self.nodes:  # launch all, then wait: the JVMs boot side by side
                if not node.status().running:
                    node.start(wait=False)
                    started.append(node)
            for node in self.nodes:
                node.wait_ready(timeout)
        except BaseException:
            self._stop_all(started)
            raise
        return self.bootstrap

    def stop(self, timeout: float = 30) -> bool:
        """Stop the brokers (in parallel), then the controller. False when none was running."""
        running = [node for node in self.nodes if node.status().running]
        self._stop_all(self.nodes, timeout)
        return bool(running)

    def kill_broker(self, index: int) -> bool:
        """SIGKILL broker `index` (0-based; node id index+1), as in a crash."""
        return self.brokers[index].kill()

    def status(self) -> list[NodeStatus]:
        """Every node's status, the controller first."""
        return [NodeStatus(node.home.name, node.status()) for node in self.nodes]

    def _stop_all(self, nodes: list[LocalBroker], timeout: float = 30) -> None:
        # Brokers first: a broker's controlled shutdown asks the controller for leave.
        brokers = [node for node in nodes if node.has_broker]
        threads = [threading.Thread(target=node.stop, args=(timeout,)) for node in brokers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.controller in nodes:
            self.controller.stop(timeout)

    def _cluster_id(self) -> str:
        """The id in `<home>/cluster.id`, made on first use (nodes format with it once)."""
        path = self.home / "cluster.id"
        try:
            cid = path.read_text(encoding="ascii").strip()
            if cid:
                return cid
        except OSError:
            pass
        cid = new_cluster_id()
        self.home.mkdir(parents=True, exist_ok=True)
        path.write_text(cid + "\n", encoding="ascii")
        return cid
