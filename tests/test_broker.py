"""The local broker layer: a real broker from the session fixture, and fast failure paths."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from msi_tui.broker import jars
from msi_tui.broker.command import run_broker_command
from msi_tui.broker.local import LocalBroker, free_port
from msi_tui.errors import OperatorError


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port held by a plain listening socket, i.e. by "another program"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.kafka
def test_fixture_broker_answers(kafka_bootstrap: str) -> None:
    topic = f"test-broker-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    futures[topic].result(timeout=30)

    reports: list[KafkaError | None] = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    producer.produce(
        topic,
        key=b"k1",
        value=b"\x00raw bytes\xff",
        headers=[("file", b"a.bin"), ("chunk", b"0")],
        on_delivery=lambda err, _msg: reports.append(err),
    )
    assert producer.flush(30) == 0
    assert reports == [None]

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    # assign() rather than subscribe(): no group rebalance to wait for.
    consumer.assign([TopicPartition(topic, 0, 0)])
    got: Message | None = None
    deadline = time.monotonic() + 30
    try:
        while got is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None:
                assert msg.error() is None, msg.error()
                got = msg
    finally:
        consumer.close()
    assert got is not None, "no record consumed within 30 s"
    assert got.key() == b"k1"
    assert got.value() == b"\x00raw bytes\xff"
    assert got.headers() == [("file", b"a.bin"), ("chunk", b"0")]


def test_status_on_empty_home_is_not_running(tmp_path: Path) -> None:
    port = free_port()
    status = LocalBroker(tmp_path / "broker", port=port).status()
    assert status.running is False
    assert status.pid is None
    assert status.answering is False
    assert status.bootstrap == f"127.0.0.1:{port}"
    assert status.home == (tmp_path / "broker").resolve()


def test_stop_when_not_running_returns_false(tmp_path: Path) -> None:
    assert LocalBroker(tmp_path, port=free_port()).stop() is False


def test_stale_pid_file_is_not_a_broker(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path, port=free_port())
    broker.pid_path.write_text(f"{os.getpid()}\n")  # alive, but pytest, not kafka.Kafka
    assert broker.status().running is False
    assert broker.stop() is False
    assert not broker.pid_path.exists()


@pytest.mark.parametrize("which", ["broker", "controller"])
def test_start_on_busy_port_refuses_fast(tmp_path: Path, busy_port: int, which: str) -> None:
    if which == "broker":
        broker = LocalBroker(tmp_path, port=busy_port, controller_port=free_port())
    else:
        broker = LocalBroker(tmp_path, port=free_port(), controller_port=busy_port)
    started = time.monotonic()
    with pytest.raises(OperatorError, match=rf"port {busy_port} .*already in use"):
        broker.start(timeout=20)
    assert time.monotonic() - started < 5
    assert not broker.pid_path.exists()  # java was never launched


def test_command_reports_busy_port(tmp_path: Path, busy_port: int) -> None:
    lines: list[str] = []
    code = run_broker_command("start", busy_port, home=tmp_path, out=lines.append)
    assert code == OperatorError.exit_code
    assert len(lines) == 1 and lines[0].startswith("error: port ")


def test_command_stop_and_status_when_not_running(tmp_path: Path) -> None:
    lines: list[str] = []
    assert run_broker_command("stop", free_port(), home=tmp_path, out=lines.append) == 0
    assert run_broker_command("status", free_port(), home=tmp_path, out=lines.append) == 1
    assert lines[0] == "Kafka broker not running"
    assert lines[1].startswith("Kafka broker not running")


def test_cached_jars_need_no_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    libs = jars.libs_dir(tmp_path)
    libs.mkdir(parents=True)
    (libs / jars._MARKER).write_text("done\n")
    monkeypatch.setenv("PATH", str(tmp_path))  # no java, no mvn
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert jars.ensure_jars(tmp_path) == libs


def test_missing_java_is_an_operator_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(OperatorError, match=r"Java 17\+ is needed.*openjdk-17"):
        jars.ensure_jars(tmp_path / "cache")
    assert not (tmp_path / "cache" / f"kafka-{jars.KAFKA_VERSION}" / "libs").exists()
