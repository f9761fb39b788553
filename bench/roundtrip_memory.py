#!/usr/bin/env python3
"""Round-trip benchmark: one large file through Kafka, with the peak memory of each side.

Writes a random file, sends it with `msi-tui upload-file`, then rebuilds it with
`msi-tui reconstruct --headless`, both run as subprocesses (`python -m msi_tui`). While each
child runs, its /proc/<pid>/status is sampled every 0.2 s (VmHWM, the kernel's high-water
mark of resident memory, and VmRSS); the child is reaped with wait4(), whose ru_maxrss is the
exact peak and is shown as a check. At the end it prints a table: throughput of both sides,
their peak RSS against the 300 MB target, and whether the SHA-256 of the output matches.

    python bench/roundtrip_memory.py --size-gib 2
    python bench/roundtrip_memory.py --size-gib 0.25 --bootstrap 127.0.0.1:9092

Without --bootstrap a LocalBroker (512 MB heap) is started on free ports in a temporary
home and removed at the end. Every run uses its own topic and consumer group, and the
children get a temporary MSI_TUI_STATE_DIR. MB here is 10^6 bytes, GiB is 2^30 bytes.

Exit code: 0 when the digests match and both peaks are within the target, 1 otherwise
(digest mismatch, RSS over target, a child failing or timing out).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Self

if TYPE_CHECKING:
    from msi_tui.broker.local import LocalBroker

MIB = 1 << 20
GIB = 1 << 30
MB = 1_000_000
TARGET_MB = 300
SAMPLE_S = 0.2


# --- the source file ---------------------------------------------------------------------


def write_random_file(path: Path, size: int) -> str:
    """Write `size` pseudo-random bytes quickly and return their SHA-256.

    One 1 MiB block from os.urandom, XORed for block i with SHA-256(i) repeated over the
    block: no two blocks (nor two chunks) are equal, yet generation costs ~4 ms per MiB.
    """
    base = int.from_bytes(os.urandom(MIB), "little")
    digest = hashlib.sha256()
    blocks, rest = divmod(size, MIB)
    with open(path, "wb") as f:
        for i in range(blocks + (1 if rest else 0)):
            key = hashlib.sha256(i.to_bytes(8, "little")).digest()
            block = (base ^ int.from_bytes(key * (MIB // len(key)), "little")).to_bytes(MIB, "little")
            if i == blocks:
                block = block[:rest]
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    buf = bytearray(4 * MIB)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


# --- watching a child ----------------------------------------------------------------------


def read_status_kb(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of a live process in kB; empty for a zombie or a vanished process."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, rest = line.split(":", 1)
                    values[key] = int(rest.split()[0])
    except (OSError, ValueError):
        pass
    return values


class MemSampler(threading.Thread):
    """Polls one pid's VmHWM/VmRSS until stopped; keeps the last VmHWM and the max VmRSS."""

    def __init__(self, pid: int, interval: float = SAMPLE_S) -> None:
        super().__init__(name=f"mem-{pid}", daemon=True)
        self.pid = pid
        self.interval = interval
        self.hwm_kb = 0  # last VmHWM read before the process exited
        self.rss_max_kb = 0
        self.samples: list[tuple[float, int]] = []  # (monotonic time, VmRSS kB)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            values = read_status_kb(self.pid)
            if values:
                self.hwm_kb = max(self.hwm_kb, values.get("VmHWM", 0))
                rss = values.get("VmRSS", 0)
                self.rss_max_kb = max(self.rss_max_kb, rss)
                self.samples.append((time.monotonic(), rss))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def timeline_mb(self, points: int = 10) -> list[float]:
        """Max VmRSS in each tenth of the sampled run time, in MB (shows growth)."""
        if not self.samples:
            return []
        t0, t1 = self.samples[0][0], self.samples[-1][0]
        span = max(t1 - t0, 1e-9)
        buckets = [0] * points
        for t, kb in self.samples:
            i = min(points - 1, int((t - t0) / span * points))
            buckets[i] = max(buckets[i], kb)
        # A bucket with no sample (very short runs) repeats the one before it.
        for i in range(1, points):
            buckets[i] = buckets[i] or buckets[i - 1]
        return [kb * 1024 / MB for kb in buckets]


@dataclass
class Child:
    """One msi-tui subprocess with its output, memory sampler and resource usage."""

    name: str
    proc: subprocess.Popen
    started: float
    sampler: MemSampler
    lines: list[tuple[float, str]] = field(default_factory=list)
    ended: float | None = None
    rusage: resource.struct_rusage | None = None  # from wait4
    _readers: list[threading.Thread] = field(default_factory=list)

    @classmethod
    def spawn(cls, name: str, cmd: list[str], env: dict[str, str], stdin: int) -> Self:
        proc = subprocess.Popen(
            cmd, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1,
        )
        sampler = MemSampler(proc.pid)
        sampler.start()
        child = cls(name, proc, time.monotonic(), sampler)
        for stream, tag in ((proc.stdout, ""), (proc.stderr, "stderr: ")):
            reader = threading.Thread(target=child._pump, args=(stream, tag), daemon=True)
            reader.start()
            child._readers.append(reader)
        return child

    def _pump(self, stream: IO[str], tag: str) -> None:
        for raw in stream:
            line = tag + raw.rstrip("\n")
            now = time.monotonic()
            self.lines.append((now, line))
            print(f"  [{self.name} +{now - self.started:.1f}s] {line}", flush=True)

    def alive(self) -> bool:
        """True while the child runs; a child that exited is reaped (with its rusage)."""
        if self.proc.returncode is not None:
            return False
        pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.ended = time.monotonic()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.rusage = rusage
        self.sampler.stop()
        for reader in self._readers:
            reader.join(5)
        return False

    def wait(self, timeout: float) -> bool:
        """Wait for the exit up to `timeout` s; False if it still runs."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def kill(self) -> None:
        """Our own child only, by pid: SIGTERM, then SIGKILL."""
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)
        if not self.wait(15):
            self.proc.kill()
            self.wait(10)

    @property
    def seconds(self) -> float:
        return (self.ended if self.ended is not None else time.monotonic()) - self.started

    @property
    def peak_mb(self) -> float:
        """The peak resident size: VmHWM, or more if a sample or ru_maxrss saw more."""
        kb = max(self.sampler.hwm_kb, self.sampler.rss_max_kb, self.maxrss_kb)
        return kb * 1024 / MB

    @property
    def maxrss_kb(self) -> int:
        return self.rusage.ru_maxrss if self.rusage is not None else 0

    @property
    def cpu_seconds(self) -> float | None:
        if self.rusage is None:
            return None
        return self.rusage.ru_utime + self.rusage.ru_stime


# --- the run -----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--size-gib", type=float, default=2.0, help="file size in GiB (default: %(default)g)")
    p.add_argument("--chunk-size", type=int, default=16384, help="chunk size in bytes (default: %(default)s)")
    p.add_argument("--bootstrap", default=None,
                   help="an existing broker; without it a LocalBroker is started and removed afterwards")
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the files go (default: a temp dir); what the run creates there is deleted")
    p.add_argument("--timeout", type=float, default=1200.0,
                   help="seconds allowed to each of the upload and the reconstruction (default: %(default)g)")
    args = p.parse_args(argv)
    if args.size_gib <= 0:
        p.error("--size-gib must be positive")
    if args.chunk_size < 1 or args.chunk_size & (args.chunk_size - 1):
        p.error("--chunk-size must be a power of two")
    return args


def start_local_broker(home: Path) -> tuple[LocalBroker, str]:
    from msi_tui.broker.local import LocalBroker, free_port

    port = free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    broker = LocalBroker(home, port=port, controller_port=controller_port, heap_mb=512)
    return broker, broker.start()


def mbps(size: int, seconds: float | None) -> str:
    return f"{size / MB / seconds:8.1f}" if seconds else f"{'-':>8}"


def fmt_opt(value: float | None, spec: str, width: int) -> str:
    return format(value, spec) if value is not None else "-".rjust(width)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = int(args.size_gib * GIB)
    own_workdir = args.workdir is None
    if own_workdir:
        run_dir = Path(tempfile.mkdtemp(prefix="msi-bench-"))
    else:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix="msi-bench-", dir=args.workdir))
    run_id = uuid.uuid4().hex[:12]
    topic = f"bench-roundtrip-{run_id}"
    group = f"bench-roundtrip-{run_id}"
    state = run_dir / "state"
    out_dir = run_dir / "out"
    src = run_dir / f"roundtrip-{run_id}.bin"
    state.mkdir()
    env = {**os.environ, "MSI_TUI_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1"}
    env.pop("CI", None)

    broker = None
    children: list[Child] = []
    failures: list[str] = []
    upload: Child | None = None
    reconstruct: Child | None = None
    broker_sampler: MemSampler | None = None
    src_sha = out_sha = None
    upload_in_process_s: float | None = None
    quit_seconds: float | None = None
    try:
        print(f"roundtrip_memory: {size / GIB:g} GiB ({size / MB:.1f} MB), chunk {args.chunk_size} B, "
              f"topic {topic}, workdir {run_dir}", flush=True)
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            t = time.monotonic()
            broker, bootstrap = start_local_broker(run_dir / "broker")
            pid = broker._live_pid()  # informative only: the broker's memory is not judged
            if pid is not None:
                broker_sampler = MemSampler(pid, interval=1.0)
                broker_sampler.start()
            print(f"local broker at {bootstrap} started in {time.monotonic() - t:.1f} s", flush=True)

        t = time.monotonic()
        src_sha = write_random_file(src, size)
        print(f"wrote {src.name} in {time.monotonic() - t:.1f} s", flush=True)

        # 1. upload-file: exits 0 once every chunk is acknowledged.
        py = [sys.executable, "-m", "msi_tui"]
        upload = Child.spawn("upload", [*py, "upload-file", str(src), "--bootstrap", bootstrap, "--topic", topic,
                                        "--chunk-size", str(args.chunk_size)], env, subprocess.DEVNULL)
        children.append(upload)
        if not upload.wait(args.timeout):
            failures.append(f"upload did not finish within {args.timeout:g} s")
            upload.kill()
        elif upload.proc.returncode != 0:
            failures.append(f"upload exited with code {upload.proc.returncode}")
        for _, line in upload.lines:
            if line.startswith("sent ") and " delivered in " in line:
                try:
                    upload_in_process_s = float(line.rsplit(" delivered in ", 1)[1].split()[0])
                except ValueError:
                    pass

        # 2. reconstruct: runs until told to quit; the file appears only once verified.
        if not failures:
            reconstruct = Child.spawn("reconstruct", [*py, "reconstruct", str(out_dir), "--headless",
                                                      "--bootstrap", bootstrap, "--topic", topic,
                                                      "--group-id", group, "--update-seconds", "-1"],
                                      env, subprocess.PIPE)
            children.append(reconstruct)
            target = out_dir / src.name
            deadline = time.monotonic() + args.timeout
            arrived: float | None = None
            while arrived is None:
                try:
                    if target.stat().st_size == size:
                        arrived = time.monotonic()
                        break
                except FileNotFoundError:
                    pass
                if not reconstruct.alive():
                    failures.append(f"reconstruct exited early with code {reconstruct.proc.returncode}")
                    break
                if time.monotonic() >= deadline:
                    failures.append(f"{target.name} did not arrive within {args.timeout:g} s")
                    break
                time.sleep(0.2)
            reconstruct_s = (arrived - reconstruct.started) if arrived is not None else None
            if arrived is not None:
                t = time.monotonic()
                out_sha = sha256_of(target)
                print(f"hashed the output in {time.monotonic() - t:.1f} s", flush=True)
            if reconstruct.alive():
                t = time.monotonic()
                stdin = reconstruct.proc.stdin
                assert stdin is not None  # (spawned with a pipe)
                try:
                    stdin.write("quit\n")
                    stdin.flush()
                except (BrokenPipeError, OSError):
                    pass
                if reconstruct.wait(60):
                    quit_seconds = time.monotonic() - t
                else:
                    failures.append("reconstruct did not stop within 60 s of quit")
                    reconstruct.kill()
            if reconstruct.proc.returncode not in (0, None) and not any("exited early" in f for f in failures):
                failures.append(f"reconstruct exited with code {reconstruct.proc.returncode}")
        else:
            reconstruct_s = None

        # --- the figures -----------------------------------------------------------------
        match = out_sha is not None and src_sha == out_sha
        print()
        print(f"size            {size / GIB:g} GiB = {size / MB:.1f} MB ({size} bytes)")
        print(f"chunk size      {args.chunk_size} B ({-(-size // args.chunk_size)} chunks)")
        print(f"{'process':<12} {'seconds':>8} {'MB/s':>8} {'peak RSS MB':>12} {'max VmRSS MB':>13} "
              f"{'ru_maxrss MB':>13} {'CPU s':>7} {'exit':>5}  {'target ' + str(TARGET_MB) + ' MB'}")
        verdicts = []
        for child, seconds in ((upload, upload.seconds), (reconstruct, reconstruct_s)):
            if child is None:
                continue
            ok = child.peak_mb <= TARGET_MB
            verdicts.append(ok)
            print(f"{child.name:<12} {fmt_opt(seconds, '8.1f', 8)} {mbps(size, seconds)} "
                  f"{child.sampler.hwm_kb * 1024 / MB:12.1f} {child.sampler.rss_max_kb * 1024 / MB:13.1f} "
                  f"{child.maxrss_kb * 1024 / MB:13.1f} {fmt_opt(child.cpu_seconds, '7.1f', 7)} "
                  f"{child.proc.returncode!s:>5}  {'PASS' if ok else 'FAIL'}")
        if upload_in_process_s is not None:
            print(f"upload          {upload_in_process_s:.1f} s from first chunk to last ack "
                  f"({size / MB / upload_in_process_s:.1f} MB/s), as reported by msi-tui")
        if reconstruct_s is not None:
            print(f"reconstruct     seconds = process start until {src.name} was there at full size")
        if quit_seconds is not None:
            print(f"reconstruct     stopped {quit_seconds:.1f} s after 'quit'")
        for child in (upload, reconstruct):
            if child is not None and child.sampler.samples:
                line = " ".join(f"{mb:.0f}" for mb in child.sampler.timeline_mb())
                print(f"RSS timeline    {child.name}: {line} MB (max per tenth of its run)")
        if broker_sampler is not None:
            broker_sampler.stop()
            print(f"broker (info)   local Kafka JVM peak RSS {broker_sampler.hwm_kb * 1024 / MB:.1f} MB")
        print(f"SHA-256 source  {src_sha}")
        print(f"SHA-256 output  {out_sha or '-'}")
        print(f"digests match   {'yes' if match else 'NO'}")
        for failure in failures:
            print(f"problem         {failure}")
        passed = match and not failures and len(verdicts) == 2 and all(verdicts)
        print(f"RESULT          {'PASS' if passed else 'FAIL'} (digest {'ok' if match else 'MISMATCH'}, "
              f"peak RSS {'within' if verdicts and all(verdicts) and len(verdicts) == 2 else 'NOT within'} "
              f"{TARGET_MB} MB per process)")
        return 0 if passed else 1
    finally:
        for child in children:
            child.kill()
        if broker_sampler is not None:
            broker_sampler.stop()
        if broker is not None:
            broker.stop()
        shutil.rmtree(run_dir, ignore_errors=True)  # the temp workdir itself, or our dir inside --workdir


if __name__ == "__main__":
    sys.exit(main())
