"""librdkafka client settings, the reachability check and topic creation.

Our defaults come first, then the config file's sections, so an operator's file always wins.
librdkafka's own log lines go to the `msi_tui.kafka` logger (a file), never to the terminal,
where its reconnect chatter would bury what matters.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient, NewTopic

from msi_tui.engine.config import ClusterConfig
from msi_tui.engine.events import Notice
from msi_tui.errors import OperatorError

# librdkafka settings: str, int, bool values, and the callbacks and logger the client is given.
Settings = dict[str, Any]

STATS_INTERVAL_MS = 500  # how soon a service sees the brokers back after an outage

KAFKA_LOG = logging.getLogger("msi_tui.kafka")
KAFKA_LOG.addHandler(logging.NullHandler())  # never the terminal; the CLI adds a log file
CONNECT_TIMEOUT_S = 10.0  # the acceptance bound for "unreachable broker" is 15 s
# librdkafka drops its bootstrap connection once metadata names the brokers, then waits
# half of this back-off (default 100 ms) before connecting to the broker named, on every
# client's start: a lower one makes start-up checks and a consumer's first record come
# sooner. The back-off still doubles on each failed attempt up to reconnect.backoff.max.ms
# (10 s) during an outage.
_QUICK_FIRST_CONNECT = {"reconnect.backoff.ms": 10}


# Room a record needs besides its chunk: key, headers (a path may take 4 KiB) and framing.
RECORD_ALLOWANCE = 65536
LIBRDKAFKA_MAX_MESSAGE_BYTES = 1_000_000_000  # the ceiling librdkafka puts on message.max.bytes


_EXACTLY_IN_ORDER = {
    "acks": "all",
    "enable.idempotence": True,  # retries never duplicate or reorder within a partition
    # A record that fails takes every later record of the producer down with it: an
    # acknowledged record then vouches for all earlier ones of its partition (the uploader
    # relies on this to ask for one delivery report per 16 chunks, and the record format
    # on an upload's first chunk arriving before its others).
    "enable.gapless.guarantee": True,
}


def producer_settings(config: ClusterConfig, chunk_size: int, queue_max_size: int) -> Settings:
    """Producer settings tuned for large binary chunks, safe against loss and reordering."""
    settings: Settings = {
        **_QUICK_FIRST_CONNECT,
        "client.id": "msi-tui-upload",
        # Never give up on a chunk while the broker is away: an outage only delays files.
        "message.timeout.ms": 0,
        "linger.ms": 10,
        "batch.size": 1_000_000,  # fits a default broker's 1 MiB message.max.bytes
        "compression.type": "none",  # instrument data rarely compresses; CPU is better spent sending
        # The seed's internal queue: chunks enqueued but not yet delivered. Also cap the bytes,
        # so large chunks cannot make memory balloon.
        "queue.buffering.max.messages": queue_max_size,
        "queue.buffering.max.kbytes": 65536,
        "logger": KAFKA_LOG,
    }
    if chunk_size + RECORD_ALLOWANCE > 1_000_000:
        settings["message.max.bytes"] = chunk_size + RECORD_ALLOWANCE
        settings["batch.size"] = chunk_size + RECORD_ALLOWANCE
    settings.update(config.broker)
    settings.update(config.producer)
    settings.update(_EXACTLY_IN_ORDER)  # what the format relies on is not the config's to change
    return settings


def chunk_size_limit(config: ClusterConfig) -> tuple[int, str]:
    """The largest chunk one record of our producer can carry with its headers, and which
    setting decides it. msi-tui raises message.max.bytes to fit the chunk unless the cluster
    config sets it; a record larger than the queue's queue.buffering.max.kbytes would wait for
    room forever. (The broker's own message.max.bytes is only known once connected.)"""
    settings = producer_settings(config, LIBRDKAFKA_MAX_MESSAGE_BYTES - RECORD_ALLOWANCE, 1)
    limits = []
    for key, unit in (("message.max.bytes", 1), ("queue.buffering.max.kbytes", 1024)):
        try:
            size = int(settings[key]) * unit
        except (TypeError, ValueError):
            continue  # not a number: librdkafka refuses the config itself, with its own message
        limits.append((size - RECORD_ALLOWANCE, f"{key} {settings[key]}" + (f" = {size} bytes" if unit > 1 else "")))
    return min(limits, default=(LIBRDKAFKA_MAX_MESSAGE_BYTES - RECORD_ALLOWANCE, "librdkafka's limit"))


def consumer_settings(config: ClusterConfig, group_id: str) -> Settings:
    """Consumer settings for at-least-once: offsets are stored by us, only past safe data."""
    settings: Settings = {
        **_QUICK_FIRST_CONNECT,
        "client.id": "msi-tui-reconstruct",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": True,  # commits what we stored, every few seconds and on close
        "enable.auto.offset.store": False,
        # Prefetch bounds: memory stays flat even with 512 KiB chunks, and librdkafka still
        # returns a larger record on its own.
        "fetch.max.bytes": 16_777_216,
        "max.partition.fetch.bytes": 4_194_304,
        "queued.max.messages.kbytes": 16384,
        # librdkafka waits 1 s after the prefetch queue fills: with large records that
        # capped reconstruction far below the disk's pace (bench/roundtrip_memory.py shows it).
        "fetch.queue.backoff.ms": 10,
        # A member joining must not take unfinished files away from the others: only the
        # partitions that move are revoked, so their staged files are not rebuilt.
        "partition.assignment.strategy": "cooperative-sticky",
        # A crashed reconstructor's partitions wait this long before moving to a live
        # member (and its restart waits for its own ghost): 10 s instead of 45 s.
        "session.timeout.ms": 10000,
        # Members learn of a rebalance at their next heartbeat (librdkafka's default is 3 s):
        # a reconstructor joining a running group starts reading sooner.
        "heartbeat.interval.ms": 500,
        "logger": KAFKA_LOG,
    }
    settings.update(config.broker)
    settings.update({k: v for k, v in config.consumer.items() if k != "group.id"})
    configured_group = config.consumer.get("group.id", "")
    # OpenMSIStream's "create_new" asks for a random group per run; we keep ours stable.
    settings["group.id"] = group_id or (configured_group if configured_group != "create_new" else "")
    return settings


def take_records(consumer: Consumer, batch: int, wait: float) -> list[Message]:
    """Up to `batch` records that are here now, else the next one within `wait` seconds.
    (consume(batch, wait) waits out `wait` for a batch it cannot fill: the end of a
    transfer, a small file, each held up to `wait`.)"""
    return consumer.consume(batch, 0) or consumer.consume(1, wait)


def admin_settings(config: ClusterConfig) -> Settings:
    return {**_QUICK_FIRST_CONNECT, **config.broker, "logger": KAFKA_LOG}


def describe_kafka_error(exc: BaseException) -> str:
    """One line for the operator from a KafkaException or KafkaError."""
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else exc
    if isinstance(err, KafkaError):
        return err.str()
    return str(exc)


_AUTH_CODES = (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)


def _client_error_detail(err: KafkaError) -> str:
    """librdkafka's text without the "sasl_ssl://host:port/bootstrap: " and "(after ...)" noise."""
    text = err.str()
    text = re.sub(r"^\S+://\S+?/(?:bootstrap|\d+): ", "", text)
    return re.sub(r" \(after \d+ms in state \w+\)$", "", text).strip()


class _ClientErrors:
    """error_cb of the probe: keeps the last credentials/TLS error and the last other one.

    librdkafka reports a rejected login or TLS handshake only here; `list_topics()` itself
    just fails with "Broker transport failure" until it times out.
    """

    def __init__(self) -> None:
        self.denied: KafkaError | None = None
        self.other: KafkaError | None = None

    def __call__(self, err: KafkaError) -> None:
        if err.code() in _AUTH_CODES or err.code() == KafkaError._SSL:
            self.denied = err
        elif err.code() != KafkaError._ALL_BROKERS_DOWN:
            self.other = err


def _refused(config: ClusterConfig, err: KafkaError) -> OperatorError:
    """The one-line message for credentials or a TLS handshake the broker refused."""
    detail = _client_error_detail(err)
    where = f"Kafka at {config.bootstrap}"
    if err.code() == KafkaError._SSL:
        return OperatorError(
            f"TLS connection to {where} failed: {detail} (check ssl.ca.location and "
            f"security.protocol in {config.source})"
        )
    user = config.broker.get("sasl.username")
    mechanism = config.broker.get("sasl.mechanism") or config.broker.get("sasl.mechanisms") or "SASL"
    who = f" as user {user!r}" if user else ""
    return OperatorError(
        f"authentication failed at Kafka {config.bootstrap}{who} ({mechanism}): {detail} "
        f"(check sasl.username, sasl.password and sasl.mechanism in {config.source})"
    )


def check_reachable(config: ClusterConfig, timeout: float = CONNECT_TIMEOUT_S) -> AdminClient:
    """Return an admin client once a broker answers; OperatorError if none does in time.

    Wrong credentials and failed TLS handshakes end the wait at once with a message saying so.
    """
    errors = _ClientErrors()
    settings = admin_settings(config)
    settings["error_cb"] = errors
    try:
        admin = AdminClient(settings)
    except KafkaException as exc:  # e.g. an unreadable ssl.ca.location
        detail = describe_kafka_error(exc).removeprefix("Failed to create admin client: ")
        raise OperatorError(f"the Kafka client settings in {config.source} were rejected: {detail}") from None
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            # Short attempts: the error callback is served between them.
            metadata = admin.list_topics(timeout=max(0.5, min(1.0, deadline - time.monotonic())))
            if metadata.brokers:
                return admin
        except KafkaException as exc:
            last = describe_kafka_error(exc)
            if isinstance(exc.args[0], KafkaError) and exc.args[0].code() in _AUTH_CODES:
                raise _refused(config, exc.args[0]) from None
        admin.poll(0)
        if errors.denied is not None:
            raise _refused(config, errors.denied)
        if errors.other is not None:
            last = _client_error_detail(errors.other)
    raise OperatorError(
        f"cannot reach Kafka at {config.bootstrap} within {timeout:.0f} s ({last}); "
        "is the broker running? (`msi-tui broker start` runs the local one)"
    )


# A data topic's records carry the broker's append time: the reconstructor judges abandoned
# uploads by record time, which a producer's clock (or a hostile record) must not decide.
DATA_TOPIC_CONFIG = {"message.timestamp.type": "LogAppendTime"}


def ensure_topic(admin: AdminClient, topic: str, partitions: int, timeout: float = 15.0,
                 config: dict[str, str] | None = None) -> int:
    """Create `topic` when missing (with `config`, by default DATA_TOPIC_CONFIG); return its
    partition count."""
    existing = admin.list_topics(topic=topic, timeout=timeout).topics.get(topic)
    if existing is not None and existing.error is None:
        return existing_partitions(admin, topic, len(existing.partitions), timeout)
    new = NewTopic(topic, num_partitions=partitions, config=DATA_TOPIC_CONFIG if config is None else config)
    future = admin.create_topics([new], request_timeout=timeout)[topic]
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        code = exc.args[0].code() if isinstance(exc.args[0], KafkaError) else None
        if code == KafkaError.TOPIC_ALREADY_EXISTS:
            return existing_partitions(admin, topic, 0, timeout)
        if code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
            raise OperatorError(
                f"topic {topic!r} does not exist and these credentials may not create it; "
                "ask the cluster's administrator to create it"
            ) from None
        raise OperatorError(f"cannot create topic {topic!r}: {describe_kafka_error(exc)}") from None
    return partitions


def existing_partitions(admin: AdminClient, topic: str, seen: int, timeout: float) -> int:
    """The partition count of a topic that exists. Just after its creation (here or by
    another client), metadata may list it with no partition yet: asked again until some show."""
    deadline = time.monotonic() + timeout
    while seen == 0:
        if time.monotonic() > deadline:
            raise OperatorError(f"topic {topic!r} shows no partition after {timeout:g} s; is the cluster healthy?")
        time.sleep(0.1)
        found = admin.list_topics(topic=topic, timeout=timeout).topics.get(topic)
        seen = len(found.partitions) if found is not None and found.error is None else 0
    return seen


class MetadataSource(Protocol):
    """A client that can be asked for cluster metadata (a Producer, for ConnectionWatch.probe)."""

    def list_topics(self, *, timeout: float) -> object: ...


class HasConnection(Protocol):
    """A service's stats, as far as ConnectionWatch keeps them."""

    connection: str  # connecting, connected, unreachable


class ConnectionWatch:
    """One service's connection state, from its client: `error_cb` tells when the brokers are
    out of reach (said once); their return is said once too, within about a second, seen in
    the consumer's statistics (`statistics.interval.ms`) or, for a producer (whose length
    would count the statistics events), by asking for metadata (`probe`). `stats` is the
    service's stats, with `connection`."""

    def __init__(self, stats: HasConnection, sink: Callable[[Notice], None], meanwhile: str) -> None:
        self.stats = stats
        self.sink = sink
        self.meanwhile = meanwhile  # what happens while out of reach, for the operator
        self._probed = 0.0

    def client_settings(self, statistics: bool) -> dict[str, object]:
        conf: dict[str, object] = {"error_cb": self.on_error}
        if statistics:
            conf.update({"stats_cb": self.on_stats, "statistics.interval.ms": STATS_INTERVAL_MS})
        return conf

    @property
    def unreachable(self) -> bool:
        return self.stats.connection == "unreachable"

    def on_error(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE):
            if not self.unreachable:
                self.stats.connection = "unreachable"
                self.sink(Notice(level="warning", message=f"Kafka unreachable, {self.meanwhile}: {err.str()}",
                                 at=time.time()))
        elif err.fatal():
            self.sink(Notice(level="error", message=f"Kafka client failed: {err.str()}", at=time.time()))
        else:
            self.sink(Notice(level="warning", message=f"Kafka: {err.str()}", at=time.time()))

    def on_stats(self, raw: str) -> None:
        if not self.unreachable:
            return  # (parsed only during an outage)
        try:
            brokers = json.loads(raw).get("brokers", {}).values()
        except (ValueError, AttributeError):
            return
        if any(b.get("nodeid", -1) >= 0 and b.get("state") == "UP" for b in brokers):
            self.reachable()

    def probe(self, client: MetadataSource) -> None:
        """During an outage, at most once a STATS_INTERVAL_MS: ask for metadata, which
        succeeds once a broker answers."""
        now = time.monotonic()
        if not self.unreachable or now - self._probed < STATS_INTERVAL_MS / 1000:
            return
        self._probed = now
        try:
            client.list_topics(timeout=0.5)
        except KafkaException:
            return
        self.reachable()

    def reachable(self) -> None:
        if self.unreachable:
            self.stats.connection = "connected"
            self.sink(Notice(level="info", message="Kafka is reachable again", at=time.time()))
