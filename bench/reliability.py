#!/usr/bin/env python3
"""Reliability run: a folder transfer under repeated SIGKILLs and a broker outage.

While files keep appearing in a watched folder, the reconstructor is SIGKILLed and
restarted `--reconstructor-kills` times and the uploader `--uploader-kills` times, at
random moments; once, the broker is stopped for `--outage-seconds` and started again
(the uploader and reconstructor keep running through it). At the end every file must be
in the output folder byte for byte, exactly once. A second phase sends `--cluster-files`
files through a three-broker cluster (replication 3, min.insync.replicas 2, acks=all) and
SIGKILLs the broker leading most partitions mid-transfer. Prints the tally of each phase.

    python bench/reliability.py                      # 200 files, 20 + 10 kills, 30 s outage
    python bench/reliability.py --files 50 --reconstructor-kills 5 --uploader-kills 3 --outage-seconds 10

Runs its own LocalBroker on free ports in a temporary home (the outage needs control of
the broker) and keeps every process's state in a temporary MSI_TUI_STATE_DIR shared across
restarts, as on a real machine. Exit code 0 only when nothing is lost or duplicated.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from confluent_kafka.admin import AdminClient

from msi_tui.broker.cluster import LocalCluster
from msi_tui.broker.local import LocalBroker, free_port


def digest_tree(root: Path, skip_hidden: bool = True) -> dict[str, str]:
    found = {}
    for dirpath, dirs, files in os.walk(root):
        if skip_hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = Path(dirpath) / name
            try:
                found[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
            except FileNotFoundError:
                continue
    return found


class Child:
    """One msi-tui process we can kill and start again; its output goes to a log."""

    def __init__(self, name: str, args: list[str], logs: Path, env: dict[str, str]) -> None:
        self.name, self.args, self.logs, self.env = name, args, logs, env
        self.starts = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.starts += 1
        with open(self.logs / f"{self.name}-{self.starts}.log", "w") as log:  # (the child keeps its own copy)
            self.proc = subprocess.Popen([sys.executable, "-m", "msi_tui", *self.args], stdin=subprocess.PIPE,
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env, text=True)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def quit(self, timeout: float = 120) -> int:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        return self.proc.wait(timeout)


def write_files(src: Path, count: int, seconds: float, rng: random.Random, done: threading.Event) -> None:
    """Drop `count` files over `seconds`, like an instrument saving traces."""
    for i in range(count):
        size = rng.choice([0, 1, 16384, 16385, rng.randint(1000, 3_000_000)])
        folder = src / f"run{i % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".writing-{i}"
        tmp.write_bytes(os.urandom(size))
        tmp.rename(folder / f"trace_{i:04}.trc")
        time.sleep(seconds / count)
    done.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--reconstructor-kills", type=int, default=20)
    parser.add_argument("--uploader-kills", type=int, default=10)
    parser.add_argument("--outage-seconds", type=float, default=30.0)
    parser.add_argument("--write-seconds", type=float, default=90.0, help="how long files keep appearing")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0, help="for everything to arrive after the last kill")
    parser.add_argument("--cluster-files", type=int, default=30, help="files for the 3-broker phase (0 skips it)")
    args = parser.parse_args(argv)
    ok = kills_phase(args)
    if args.cluster_files:
        ok = cluster_phase(args) and ok
    return 0 if ok else 1


def clean_up(children: list[Child], broker: LocalBroker | LocalCluster, work: Path | None) -> None:
    """Kill what still runs, stop the broker, and remove the work folder unless kept for logs."""
    for child in children:
        if child.proc and child.proc.poll() is None:
            child.proc.kill()
    broker.stop()
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)


def wait_for_tree(out: Path, expected: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while digest_tree(out) != expected and time.monotonic() < deadline:
        time.sleep(1.0)


def tally(expected: dict[str, str], out: Path) -> tuple[bool, list[str]]:
    """(nothing lost or duplicated, report lines)."""
    got = digest_tree(out)
    lost = sorted(p for p, d in expected.items() if got.get(p) != d)
    extra = sorted(p for p in got if p not in expected)
    leftovers = sorted(p for p in digest_tree(out, skip_hidden=False) if p.startswith("."))
    return not lost and not extra, [
        f"arrived intact   {len(expected) - len(lost)} of {len(expected)}",
        f"losses           {len(lost)} {lost[:5]}",
        f"duplicates       {len(extra)} {extra[:5]}",
        f"leftovers        {len(leftovers)} hidden files in the output {leftovers[:3]}",
    ]


def cluster_phase(args: argparse.Namespace) -> bool:
    """Three brokers, one SIGKILLed mid-transfer."""
    work = Path(tempfile.mkdtemp(prefix="msi-reliability-cluster-"))
    src, out, logs = work / "src", work / "out", work / "logs"
    logs.mkdir()
    rng = random.Random(args.seed)

    def write(indices: range) -> None:
        for i in indices:
            (src / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
            (src / f"d{i % 3}" / f"f{i:03}.bin").write_bytes(os.urandom(rng.randint(500_000, 4_000_000)))

    # A third of the files from the start, the rest once the broker is dead: however fast the
    # first ones go, the others go through the leader elections.
    first = args.cluster_files // 3
    write(range(first))
    ports: set[int] = set()
    while len(ports) < 4:
        ports.add(free_port())
    *broker_ports, controller_port = sorted(ports)
    cluster = LocalCluster(work / "cluster", brokers=3, broker_ports=broker_ports, controller_port=controller_port,
                           heap_mb=256)
    bootstrap = cluster.start()
    env = dict(os.environ, MSI_TUI_STATE_DIR=str(work / "state"))
    topic = f"reliability-cluster-{uuid.uuid4().hex[:8]}"
    common = ["--headless", "--bootstrap", bootstrap, "--topic", topic, "--partitions", "6", "--update-seconds", "-1"]
    reconstructor = Child("reconstruct", ["reconstruct", str(out), *common, "--n-threads", "3"], logs, env)
    uploader = Child("upload", ["upload", str(src), *common, "--n-threads", "3"], logs, env)
    ok = False
    try:
        reconstructor.start()
        uploader.start()
        while len(digest_tree(out) if out.is_dir() else {}) < 2:
            time.sleep(0.2)
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
        leaders = Counter(p.leader for p in metadata.topics[topic].partitions.values() if p.leader >= 0)
        victim = leaders.most_common(1)[0][0]
        cluster.kill_broker(victim - 1)  # node ids of brokers start at 1
        print(f"SIGKILL broker {victim} of 3 after {len(digest_tree(out))} of the first {first} files", flush=True)
        write(range(first, args.cluster_files))
        expected = digest_tree(src)
        wait_for_tree(out, expected, args.timeout)
        uploader.quit()
        reconstructor.quit()
        ok, lines = tally(expected, out)
        print()
        print("phase 2: three brokers, one killed mid-transfer")
        print("\n".join(lines))
        print(f"RESULT           {'PASS' if ok else 'FAIL (logs in ' + str(logs) + ')'}")
        return ok
    finally:
        clean_up([uploader, reconstructor], cluster, work if ok else None)


def kills_phase(args: argparse.Namespace) -> bool:
    """Repeated SIGKILLs of both sides and one broker outage."""
    rng = random.Random(args.seed)
    ok = False
    work = Path(tempfile.mkdtemp(prefix="msi-reliability-"))
    src, out, logs, state = work / "src", work / "out", work / "logs", work / "state"
    for d in (src, out, logs, state):
        d.mkdir()
    env = dict(os.environ, MSI_TUI_STATE_DIR=str(state))
    broker = LocalBroker(work / "broker", port=free_port(), controller_port=free_port())
    bootstrap = broker.start()
    topic = f"reliability-{uuid.uuid4().hex[:8]}"
    common = ["--bootstrap", bootstrap, "--topic", topic, "--partitions", "4", "--update-seconds", "-1"]
    uploader = Child("upload", ["upload", str(src), "--headless", *common], logs, env)
    reconstructor = Child("reconstruct", ["reconstruct", str(out), "--headless", "--n-threads", "3", *common], logs,
                          env)
    started = time.monotonic()
    try:
        uploader.start()
        reconstructor.start()
        writing_done = threading.Event()
        threading.Thread(target=write_files, args=(src, args.files, args.write_seconds, rng, writing_done),
                         daemon=True).start()
        kills = ["reconstructor"] * args.reconstructor_kills + ["uploader"] * args.uploader_kills + ["outage"]
        rng.shuffle(kills)
        pause = args.write_seconds / (len(kills) + 1)
        for what in kills:
            time.sleep(rng.uniform(0.3, 2 * pause))  # random moments across the transfer
            if what == "outage":
                print(f"[{time.monotonic() - started:6.1f} s] broker stopped for {args.outage_seconds:.0f} s",
                      flush=True)
                broker.stop()
                time.sleep(args.outage_seconds)
                broker.start()
                print(f"[{time.monotonic() - started:6.1f} s] broker back", flush=True)
                continue
            child = reconstructor if what == "reconstructor" else uploader
            child.kill()
            child.start()
            print(f"[{time.monotonic() - started:6.1f} s] SIGKILL {child.name} (start #{child.starts})", flush=True)
        writing_done.wait()
        expected = digest_tree(src)
        wait_for_tree(out, expected, args.timeout)
        uploader.quit()
        reconstructor.quit()
        ok, lines = tally(expected, out)
        print()
        print("phase 1: kills and an outage")
        print(f"files            {len(expected)}")
        print(f"reconstructor    {args.reconstructor_kills} SIGKILLs ({reconstructor.starts} starts)")
        print(f"uploader         {args.uploader_kills} SIGKILLs ({uploader.starts} starts)")
        print(f"broker outage    1 x {args.outage_seconds:.0f} s")
        print("\n".join(lines))
        print(f"elapsed          {time.monotonic() - started:.0f} s")
        print(f"RESULT           {'PASS' if ok else 'FAIL (logs in ' + str(logs) + ')'}")
        return ok
    finally:
        clean_up([uploader, reconstructor], broker, work if ok else None)


if __name__ == "__main__":
    sys.exit(main())
