"""A service's connection state follows its client: an outage is said once, and the return of
a broker (seen in the client's statistics) is said once and shown within a statistics interval."""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import KafkaError

from msi_tui.engine.events import Notice
from msi_tui.engine.kafka_clients import STATS_INTERVAL_MS, ConnectionWatch
from msi_tui.engine.stats import ReconstructStats, UploadStats
from tests.helpers import Recorder


def statistics(*states: str) -> str:
    brokers = {f"b{i}": {"nodeid": i + 1, "state": s} for i, s in enumerate(states)}
    brokers["bootstrap"] = {"nodeid": -1, "state": "UP"}  # a bootstrap entry says nothing of the cluster
    return json.dumps({"brokers": brokers})


def test_an_outage_is_told_once_and_its_end_is_seen_in_the_statistics() -> None:
    stats, sink = ReconstructStats(threads=1), Recorder()
    stats.connection = "connected"
    watch = ConnectionWatch(stats, sink, "reconstruction waits")
    assert watch.client_settings(statistics=True)["statistics.interval.ms"] == STATS_INTERVAL_MS <= 2000
    for _ in range(3):
        watch.on_error(KafkaError(KafkaError._TRANSPORT, "Connection refused"))
        watch.on_stats(statistics("DOWN", "CONNECT"))
    assert stats.connection == "unreachable"
    watch.on_stats("not json")
    watch.on_stats(statistics("DOWN", "UP"))
    assert stats.connection == "connected"
    watch.on_stats(statistics("UP", "UP"))
    said = [n.message for n in sink.of(Notice)]
    assert said == ["Kafka unreachable, reconstruction waits: Connection refused", "Kafka is reachable again"]


class Answers:
    """A client whose metadata requests fail until `up`."""

    def __init__(self) -> None:
        self.up, self.asked = False, 0

    def list_topics(self, timeout: float) -> object:
        from confluent_kafka import KafkaException
        self.asked += 1
        if not self.up:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "down"))
        return object()


def test_a_producer_probes_for_the_brokers_only_during_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    stats, sink, client = UploadStats(), Recorder(), Answers()
    stats.connection = "connected"
    watch = ConnectionWatch(stats, sink, "chunks wait and are retried")
    assert "statistics.interval.ms" not in watch.client_settings(statistics=False)  # (it would count in len())
    watch.probe(client)
    assert client.asked == 0
    watch.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "all down"))
    clock = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    watch.probe(client)
    watch.probe(client)  # (within the interval: not asked again)
    assert (client.asked, stats.connection) == (1, "unreachable")
    client.up, clock[0] = True, 101.5
    watch.probe(client)
    assert (client.asked, stats.connection) == (2, "connected")
    assert [n.message for n in sink.of(Notice)][-1] == "Kafka is reachable again"
