"""The local broker's `server.properties` and the ids it is formatted with."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Protocol

from msi_tui.broker.probes import HOST
from msi_tui.broker.tls import TlsFiles

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
SCRAM_MECHANISM = "SCRAM-SHA-512"


class Node(Protocol):
    """What the properties are written from (a LocalBroker)."""

    roles: str
    node_id: int
    quorum_voters: str
    port: int | None
    scram_port: int | None
    tls_port: int | None
    controller_port: int
    extra_properties: dict[str, str]

    @property
    def has_broker(self) -> bool: ...

    @property
    def has_controller(self) -> bool: ...

    @property
    def data_dir(self) -> Path: ...


def new_cluster_id() -> str:
    """A KRaft cluster id: base64url of 16 random bytes, no padding, not starting with '-'."""
    while True:
        cid = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")
        if not cid.startswith("-"):  # would be parsed as an option by StorageTool
            return cid


def server_properties(node: Node, tls: TlsFiles | None = None) -> str:
    """The node's server.properties, written on every start."""
    # No trailing "# comments" on value lines: Java properties would keep them in the value.
    listeners: list[tuple[str, str, int]] = []  # (name, security protocol, port)
    if node.has_broker:
        assert node.port is not None
        listeners.append(("PLAINTEXT", "PLAINTEXT", node.port))
        if node.scram_port is not None:
            listeners.append(("SASL_PLAINTEXT", "SASL_PLAINTEXT", node.scram_port))
        if node.tls_port is not None:
            listeners.append(("SSL", "SSL", node.tls_port))
    advertised = ",".join(f"{name}://{HOST}:{port}" for name, _, port in listeners)
    if node.has_controller:
        listeners.append(("CONTROLLER", "PLAINTEXT", node.controller_port))
    protocol_map = {name: proto for name, proto, _ in listeners}
    protocol_map["CONTROLLER"] = "PLAINTEXT"  # brokers need it to reach the controller
    props = {
        "process.roles": node.roles,
        "node.id": str(node.node_id),
        "controller.quorum.voters": node.quorum_voters,
        "listeners": ",".join(f"{name}://{HOST}:{port}" for name, _, port in listeners),
        "listener.security.protocol.map": ",".join(f"{k}:{v}" for k, v in protocol_map.items()),
        "controller.listener.names": "CONTROLLER",
        "log.dirs": str(node.data_dir),
    }
    if node.has_broker:
        props.update({
            "advertised.listeners": advertised,
            "inter.broker.listener.name": "PLAINTEXT",
            "num.partitions": "4",
            "auto.create.topics.enable": "false",
            "log.retention.hours": "168",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.dedupe.buffer.size": str(MAX_MESSAGE_BYTES),
            "message.max.bytes": str(MAX_MESSAGE_BYTES),
            "replica.fetch.max.bytes": str(MAX_MESSAGE_BYTES),
        })
    if node.scram_port is not None:
        props.update({
            "sasl.enabled.mechanisms": SCRAM_MECHANISM,
            # Server side of SCRAM: credentials come from the cluster metadata (--add-scram).
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        })
    if tls is not None:
        props.update({
            "listener.name.ssl.ssl.keystore.type": "PEM",
            "listener.name.ssl.ssl.keystore.location": str(tls.keystore),
            "listener.name.ssl.ssl.client.auth": "none",
        })
    props.update(node.extra_properties)
    lines = ["# Written by msi-tui on every start of the local broker; edits are lost."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"
