"""Cluster configs: lookup order, environment variables, OpenMSIStream files."""

from __future__ import annotations

from pathlib import Path

import pytest

from msi_tui.engine.config import ClusterConfig, load_config
from msi_tui.engine.kafka_clients import consumer_settings, producer_settings
from msi_tui.errors import OperatorError

OPENMSISTREAM_STYLE = """
[broker]
bootstrap.servers = $MSI_TEST_SERVERS
sasl.mechanism = PLAIN
security.protocol = SASL_SSL
sasl.username = ${MSI_TEST_USER}
sasl.password = ${MSI_TEST_PASSWORD}

[producer]
batch.size = 200000
linger.ms = 100
key.serializer = StringSerializer
value.serializer = DataFileChunkSerializer

[consumer]
group.id = create_new
auto.offset.reset = earliest
enable.auto.commit = False
key.deserializer = StringDeserializer
value.deserializer = DataFileChunkDeserializer
"""


def test_builtin_tutorial_cluster_points_at_the_local_broker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MSI_TUI_CONFIG_DIR", str(tmp_path))
    config = load_config()
    assert config.bootstrap == "127.0.0.1:9092"
    assert "built-in" in config.source


def test_config_dir_wins_over_builtin_and_bootstrap_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "tutorial_cluster.config").write_text("[broker]\nbootstrap.servers = 10.0.0.1:9092\n")
    monkeypatch.setenv("MSI_TUI_CONFIG_DIR", str(tmp_path))
    assert load_config("tutorial_cluster").bootstrap == "10.0.0.1:9092"
    assert load_config("tutorial_cluster", bootstrap="127.0.0.1:1").bootstrap == "127.0.0.1:1"


def test_openmsistream_config_works_unchanged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "prod.config"
    path.write_text(OPENMSISTREAM_STYLE)
    monkeypatch.setenv("MSI_TEST_SERVERS", "broker.example:9093")
    monkeypatch.setenv("MSI_TEST_USER", "alice")
    monkeypatch.setenv("MSI_TEST_PASSWORD", "s3cret")
    config = load_config(str(path))
    assert config.bootstrap == "broker.example:9093"
    assert config.broker["sasl.password"] == "s3cret"
    producer = producer_settings(config, 16384, 3000)
    assert producer["linger.ms"] == "100" and "key.serializer" not in producer
    consumer = consumer_settings(config, "my-group")
    assert consumer["group.id"] == "my-group" and consumer["enable.auto.commit"] == "false"
    assert "value.deserializer" not in consumer


def test_unset_variable_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "c.config"
    path.write_text("[broker]\nbootstrap.servers = $NOT_SET_ANYWHERE_42\n")
    monkeypatch.delenv("NOT_SET_ANYWHERE_42", raising=False)
    with pytest.raises(OperatorError, match=r"\$NOT_SET_ANYWHERE_42 is not set"):
        load_config(str(path))


def test_unknown_section_and_missing_file_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "bad.config"
    bad.write_text("[brokr]\nbootstrap.servers = x\n")
    with pytest.raises(OperatorError, match=r"unknown section \[brokr\]"):
        load_config(str(bad))
    with pytest.raises(OperatorError, match="not found"):
        load_config(str(tmp_path / "missing" / "x.config"))


def test_a_config_cannot_turn_off_what_keeps_an_upload_in_order() -> None:
    config = ClusterConfig("c", "c", {"bootstrap.servers": "b:9092"},
                           producer={"enable.idempotence": "false", "acks": "1", "linger.ms": "5"})
    producer = producer_settings(config, 16384, 3000)
    in_order = (producer["enable.idempotence"], producer["acks"], producer["enable.gapless.guarantee"])
    assert in_order == (True, "all", True)
    assert producer["linger.ms"] == "5"  # the rest is the operator's to tune
