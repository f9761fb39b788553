"""Files go through a real Kafka broker and come out byte for byte (headless programs)."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from msi_tui.engine.wire import chunk_count
from tests.helpers import Background, cli, make_sample_tree, staged_parts, tree, wait_until, write_random

pytestmark = pytest.mark.kafka


def upload_args(bootstrap: str, topic: str, folder: Path, *extra: str) -> list[str]:
    return ["upload", str(folder), "--headless", "--bootstrap", bootstrap, "--topic", topic,
            "--partitions", "4", "--update-seconds", "-1", *extra]


def reconstruct_args(bootstrap: str, topic: str, out: Path, *extra: str) -> list[str]:
    return ["reconstruct", str(out), "--headless", "--bootstrap", bootstrap, "--topic", topic,
            "--partitions", "4", "--update-seconds", "-1", "--group-id", f"g-{topic}", *extra]


def upload_everything(bootstrap: str, topic: str, src: Path, files: int, log: Path) -> None:
    """Run the folder uploader until `check` reports every file done, then quit it."""
    with Background(*upload_args(bootstrap, topic, src), log=log) as up:
        def all_sent() -> bool:
            up.type("check")
            return f"done {files}" in up.output()
        wait_until(all_sent, "all files uploaded", every=0.5)
        assert up.quit() == 0


def test_folder_tree_round_trips_byte_for_byte(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    make_sample_tree(src)
    expected = tree(src)
    assert len(expected) >= 50
    reconstructor = Background(*reconstruct_args(kafka_bootstrap, topic, out, "--n-threads", "5"),
                               log=tmp_path / "r.log")
    with reconstructor as rec, Background(*upload_args(kafka_bootstrap, topic, src), log=tmp_path / "u.log") as up:
        wait_until(lambda: out.is_dir() and tree(out) == expected, "every file rebuilt in OUT", timeout=300, every=1)
        up.type("check")
        wait_until(lambda: f"done {len(expected)}" in up.output(), "check to report every file done")
        rec.type("c")
        wait_until(lambda: f"files completed {len(expected)}" in rec.output(), "check to report every file completed")
        records = sum(chunk_count(p.stat().st_size, 16384) + 1 for p in src.rglob("*") if p.is_file())
        found = re.search(r"messages read (\d+)", rec.output())
        assert found is not None, rec.output()
        read = int(found.group(1))
        assert read >= records
        assert up.quit() == 0
        assert rec.quit() == 0
    assert tree(out) == expected  # nothing else in OUT: no staging or quarantine leftovers
    assert "Traceback" not in up.output() + rec.output()
    partitions = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(topic).topics[topic].partitions
    assert len(partitions) >= 4


def test_every_digest_arrives_through_the_cli(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    """XXH3-128 (the default) and --digest sha256 uploads on one topic."""
    src, out = tmp_path / "src", tmp_path / "out"
    for name, extra in (("xxh.bin", []), ("sha.bin", ["--digest", "sha256"])):
        write_random(src / name, 300_000 + 17, seed=len(name))
        sent = cli("upload-file", str(src / name), "--bootstrap", kafka_bootstrap, "--topic", topic,
                   "--partitions", "4", *extra)
        assert sent.returncode == 0, sent.stdout + sent.stderr
    with Background(*reconstruct_args(kafka_bootstrap, topic, out), log=tmp_path / "r.log") as rec:
        wait_until(lambda: out.is_dir() and tree(out, hidden=False) == tree(src), "both files rebuilt")
        assert rec.quit() == 0
    assert "quarantined" not in rec.output() and "Traceback" not in rec.output()


def test_two_reconstructors_share_the_work_exactly_once(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    src, out_a, out_b = tmp_path / "src", tmp_path / "a", tmp_path / "b"
    for i in range(40):
        write_random(src / f"d{i % 4}" / f"file_{i}.bin", 20_000 + 4099 * i, seed=i)
    expected = tree(src)
    group = f"g-{topic}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    rec = lambda out, name: Background(*reconstruct_args(kafka_bootstrap, topic, out, "--n-threads", "2"),
                                       log=tmp_path / name)
    with rec(out_a, "a.log") as a, rec(out_b, "b.log") as b:
        def group_stable() -> bool:
            try:
                desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
            except KafkaException:
                return False  # the coordinator is still loading or moving: ask again
            assigned = sum(len(m.assignment.topic_partitions) for m in desc.members)
            # One group member per reconstructor process, whatever its thread count.
            return len(desc.members) == 2 and assigned == 4 and str(desc.state).endswith("STABLE")
        wait_until(group_stable, "both reconstructors to join the group with every partition assigned")
        with Background(*upload_args(kafka_bootstrap, topic, src), log=tmp_path / "u.log") as up:
            def merged() -> dict[str, str]:
                return {**tree(out_a), **tree(out_b)}
            wait_until(lambda: merged() == expected, "every file in one of the two folders", timeout=180, every=1)
            assert up.quit() == 0
        assert a.quit() == 0 and b.quit() == 0
    in_a, in_b = tree(out_a), tree(out_b)
    assert not set(in_a) & set(in_b), "a file arrived in both folders"
    assert {**in_a, **in_b} == expected
    assert in_a and in_b, "one reconstructor got no work: the group did not share it"


def test_slowly_written_file_arrives_once_and_complete(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    with Background(*reconstruct_args(kafka_bootstrap, topic, out), log=tmp_path / "r.log") as rec, \
         Background(*upload_args(kafka_bootstrap, topic, src), log=tmp_path / "u.log") as up:
        wait_until(lambda: "watching" in up.output(), "the uploader to watch")
        slow = src / "slow.trc"
        with open(slow, "wb") as f:
            for _ in range(20):  # 5 s of appends through one open handle, like an instrument
                f.write(os.urandom(10_000))
                f.flush()
                time.sleep(0.25)  # the pace of the simulated instrument, not a wait for a result
        expected = tree(src)
        wait_until(lambda: out.is_dir() and tree(out) == expected, "the slow file rebuilt")
        assert up.quit() == 0
        assert rec.quit() == 0
    assert up.output().count("uploaded slow.trc") == 1
    assert "changed while sending" not in up.output()
    assert rec.output().count("reconstructed slow.trc") == 1


def test_sigkilled_reconstructor_resumes_without_partial_files(kafka_bootstrap: str, topic: str,
                                                               tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    for i in range(12):
        write_random(src / f"f{i:02}.bin", 6_000_000 + i, seed=i)
    expected = tree(src)
    upload_everything(kafka_bootstrap, topic, src, len(expected), tmp_path / "u.log")

    def final_files_are_whole() -> dict[str, str]:
        final = tree(out, hidden=False)
        for name, digest_hex in final.items():
            assert digest_hex == expected[name], f"{name} under its final name is not the whole file"
        return final

    rec = Background(*reconstruct_args(kafka_bootstrap, topic, out, "--n-threads", "2"), log=tmp_path / "r1.log")
    wait_until(lambda: staged_parts(out),
               "reconstruction to be under way", every=0.02)
    os.kill(rec.proc.pid, signal.SIGKILL)
    rec.kill()
    assert len(final_files_are_whole()) < len(expected), "the kill came too late to prove anything"
    restarted = Background(*reconstruct_args(kafka_bootstrap, topic, out, "--n-threads", "2"), log=tmp_path / "r2.log")
    with restarted as rec2:
        wait_until(lambda: final_files_are_whole() == expected, "every file after the restart", every=0.5)
        assert rec2.quit() == 0
    assert tree(out) == expected


def test_sigkilled_uploader_withdraws_its_half_sent_file_on_restart(kafka_bootstrap: str, topic: str,
                                                                    tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write_random(src / "big.bin", 300_000_000, seed=7)
    expected = tree(src)
    with Background(*reconstruct_args(kafka_bootstrap, topic, out, "--n-threads", "2"), log=tmp_path / "r.log") as rec:
        up = Background(*upload_args(kafka_bootstrap, topic, src, "--n-threads", "1"), log=tmp_path / "u1.log")
        wait_until(lambda: staged_parts(out), "the file to be part-way", every=0.02)
        up.kill()
        assert "uploaded big.bin" not in up.output(), "the kill came too late to prove anything"
        with Background(*upload_args(kafka_bootstrap, topic, src), log=tmp_path / "u2.log") as up2:
            wait_until(lambda: tree(out) == expected, "the file after the uploader's restart", every=0.5)
            assert up2.quit() == 0
        # The half-sent upload was withdrawn: nothing stays staged, nothing holds offsets back.
        wait_until(lambda: not staged_parts(out), "the staged half upload to be dropped")
        assert rec.quit() == 0
    assert tree(out) == expected


def test_partition_moving_to_another_process_mid_file_loses_nothing(kafka_bootstrap: str, topic: str,
                                                                    tmp_path: Path) -> None:
    src, out_a, out_b = tmp_path / "src", tmp_path / "a", tmp_path / "b"
    write_random(src / "big.bin", 200_000_000, seed=11)
    for i in range(6):
        write_random(src / f"small_{i}.bin", 100_000 + i, seed=20 + i)
    expected = tree(src)
    upload_everything(kafka_bootstrap, topic, src, len(expected), tmp_path / "u.log")
    rec = lambda out, name: Background(*reconstruct_args(kafka_bootstrap, topic, out, "--n-threads", "1"),
                                       log=tmp_path / name)
    with rec(out_a, "a.log") as a:
        wait_until(lambda: staged_parts(out_a), "A to be part-way through", every=0.02)
        a.type("pause")  # hold A mid-file, so the hand-over surely happens mid-file
        wait_until(lambda: "paused" in a.output(), "A to pause")
        with rec(out_b, "b.log") as b:
            wait_until(lambda: "reconstructing" in b.output(), "B to start")
            assert a.quit() == 0  # A leaves mid-file: its partitions move to B
            assert not (out_a / "big.bin").exists() or tree(out_a).get("big.bin") == expected["big.bin"]
            wait_until(lambda: {**tree(out_a, hidden=False), **tree(out_b, hidden=False)} == expected,
                       "every file across the two folders", every=0.5)
            assert b.quit() == 0
    in_a, in_b = tree(out_a), tree(out_b)
    assert not set(in_a) & set(in_b), "a file arrived in both folders"
    assert {**in_a, **in_b} == expected
    assert "big.bin" in in_b, "the file in flight did not move to B"
