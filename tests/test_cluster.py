"""Three brokers (replication 3, min.insync.replicas 2, acks=all): one SIGKILLed mid-transfer.

The cluster is `LocalCluster`: a dedicated KRaft controller plus three brokers, so the
killed broker never takes the controller quorum with it. Every file must still arrive
byte-identical, exactly once.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from msi_tui.broker.cluster import LocalCluster
from msi_tui.broker.local import free_port
from tests.helpers import Background, tree, wait_until, write_random

pytestmark = pytest.mark.kafka

FILES = 30


def _free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return sorted(ports)


def _busiest_broker(bootstrap: str, topic: str) -> int:
    """Node id of the broker leading most of the topic's partitions."""
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    leaders = Counter(p.leader for p in metadata.topics[topic].partitions.values() if p.leader >= 0)
    return leaders.most_common(1)[0][0]


def _write_files(src: Path, indices: range) -> None:
    for i in indices:
        write_random(src / f"run_{i % 3}" / f"trace_{i:02}.bin", 2_000_000 + 97_001 * i, seed=1000 + i)


def test_broker_killed_mid_transfer_loses_and_duplicates_nothing(tmp_path: Path, topic: str) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    # A third of the files is there from the start, the rest is dropped in once the broker is
    # dead: on a quiet machine the whole first part can arrive before the kill lands, while
    # the rest then certainly goes through leader elections and retries.
    first = FILES // 3
    _write_files(src, range(first))

    *broker_ports, controller_port = _free_ports(4)
    cluster = LocalCluster(tmp_path / "cluster", brokers=3, broker_ports=broker_ports,
                           controller_port=controller_port, heap_mb=256)
    bootstrap = cluster.start()
    try:
        common = ["--headless", "--bootstrap", bootstrap, "--topic", topic, "--partitions", "6",
                  "--update-seconds", "-1"]
        with Background("reconstruct", str(out), *common, "--n-threads", "3", "--group-id", f"g-{topic}",
                        log=tmp_path / "r.log") as rec, \
             Background("upload", str(src), *common, "--n-threads", "3", log=tmp_path / "u.log") as up:
            # Mid-transfer: some files rebuilt, the others still on their way or not yet dropped in.
            wait_until(lambda: out.is_dir() and len(tree(out, hidden=False)) >= 2, "the first files rebuilt",
                       timeout=60, every=0.2)
            victim = _busiest_broker(bootstrap, topic)
            arrived_before_kill = len(tree(out, hidden=False))
            assert cluster.kill_broker(victim - 1)
            print(f"SIGKILLed broker {victim} after {arrived_before_kill} of {FILES} files")
            _write_files(src, range(first, FILES))
            expected = tree(src)
            assert len(expected) == FILES

            wait_until(lambda: tree(out, hidden=False) == expected, "every file rebuilt after the kill",
                       timeout=150, every=1)
            up.type("check")
            wait_until(lambda: f"done {FILES}" in up.output(), "the uploader to report every file done", timeout=30)
            rec.type("check")
            wait_until(lambda: f"files completed {FILES}" in rec.output(), "the reconstructor's tally", timeout=30)
            assert up.quit() == 0
            assert rec.quit() == 0
        # Exactly once: nothing but the expected files (no "(1)" copies), no staging leftovers.
        assert tree(out) == expected
        assert "Traceback" not in up.output() + rec.output()
        assert not cluster.brokers[victim - 1].status().running
    finally:
        cluster.stop()
        shutil.rmtree(tmp_path / "cluster", ignore_errors=True)
