"""Receipts on the real broker: every ended upload has one, and a member that takes over a
partition skips what an earlier member ended, however many uploads that is."""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from msi_tui.engine import wire
from msi_tui.engine.kafka_records import produced
from msi_tui.engine.receipts import Receipt
from tests.helpers import Background, send_file, tree, wait_until

pytestmark = pytest.mark.kafka
FILES = 150  # more than the 120 ids the commit metadata could once carry


def reconstruct(bootstrap: str, topic: str, out: Path, log: Path) -> Background:
    return Background("reconstruct", str(out), "--headless", "--bootstrap", bootstrap, "--topic", topic,
                      "--update-seconds", "-1", "--group-id", f"g-{topic}", "--n-threads", "2", log=log)


def receipts(bootstrap: str, topic: str) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                         "auto.offset.reset": "earliest", "enable.partition.eof": True})
    consumer.subscribe([topic + ".receipts"])
    found, ended = [], False
    try:
        while not ended:
            msgs = consumer.consume(500, 10)
            assert msgs, "no receipts topic records within 10 s"
            for msg in msgs:
                if msg.error():
                    ended = True
                else:
                    assert dict(msg.headers() or []).get("msi.receipt") == b"1"
                    found.append(json.loads(msg.value() or b""))
    finally:
        consumer.close()
    return found


def test_a_member_that_takes_over_skips_what_the_killed_one_published(kafka_bootstrap: str, topic: str,
                                                                      tmp_path: Path) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    # An upload that never ends comes first: it pins the committed offset at its first
    # record, so everything after it is read again by the next owner.
    pin = uuid.uuid4().hex
    common = wire.file_headers(pin, "pinned.bin", 3 * 16384, 16384)
    producer.produce(topic, os.urandom(16384), pin, headers=produced(wire.chunk_headers(common, 0)))
    sent = {f"f{i:03}.bin": os.urandom(1000 + i) for i in range(FILES)}
    for name, data in sent.items():
        send_file(producer, topic, name, data)
    assert producer.flush(30) == 0
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    a = reconstruct(kafka_bootstrap, topic, out_a, tmp_path / "a.log")
    wait_until(lambda: len(tree(out_a, hidden=False)) == FILES, "the first member to publish every file")
    # Receipts are acknowledged within milliseconds of each file; a second is plenty.
    wait_until(lambda: sum(r["outcome"] == "published" for r in receipts(kafka_bootstrap, topic)) == FILES,
               "a receipt for every file")
    os.kill(a.proc.pid, signal.SIGKILL)
    a.kill()
    with reconstruct(kafka_bootstrap, topic, out_b, tmp_path / "b.log") as b:
        send_file(producer, topic, "sentinel.bin", b"after the hand-over")
        assert producer.flush(30) == 0
        wait_until(lambda: (out_b / "sentinel.bin").exists(), "the new member to read past the old records")
        assert sorted(tree(out_b, hidden=False)) == ["sentinel.bin"], "files published twice"
        assert b.quit() == 0
    published = [r for r in receipts(kafka_bootstrap, topic) if r["outcome"] == "published"]
    mine = {r["path"]: r for r in published}
    assert set(mine) == {*sent, "sentinel.bin"}
    assert mine["f000.bin"]["saved_as"] == "f000.bin" and mine["f000.bin"]["size"] == 1000
    assert mine["f000.bin"]["output"] == str(out_a.resolve()) or mine["f000.bin"]["output"] == str(out_a)
    assert mine["sentinel.bin"]["group"] == f"g-{topic}" and mine["sentinel.bin"]["host"]


def test_records_on_the_receipts_topic_that_are_not_receipts_are_ignored() -> None:
    good = Receipt(upload_id="a" * 32, group="g", outcome="published", path="f.bin")
    assert Receipt.decode(good.encode()) == good
    for hostile in [b"", b"not json", b"[1, 2]", b'"text"', b'{"upload_id": "x"}',
                    json.dumps({**json.loads(good.encode()), "outcome": "anything"}).encode(),
                    json.dumps({**json.loads(good.encode()), "group": 7}).encode(),
                    json.dumps({**json.loads(good.encode()), "extra": 1}).encode()]:
        assert Receipt.decode(hostile) is None, hostile
