#!/usr/bin/env python3
"""Profile msi-tui's upload and reconstruct paths with py-spy (pip install py-spy).

Starts a LocalBroker (or uses --bootstrap), sends one file with `upload-file` and rebuilds it
with `reconstruct --headless`, each under `py-spy record --format raw` (non-idle samples
only), then prints, per path, the functions with the most samples: "self" (the leaf of
the stack) and "incl" (anywhere on the stack, msi_tui frames only).

    python bench/profile_paths.py --size-mib 256 --chunk-size 16384
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from roundtrip_memory import MIB, write_random_file  # noqa: E402


def summarize(raw: Path, top: int) -> str:
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_c[_short(frames[-1])] += n
        for fr in set(frames):
            if "msi_tui" in fr:
                incl[_short(fr)] += n
    out = [f"  {total} samples (non-idle, all threads)", "  self:"]
    out += [f"    {c / total:6.1%}  {name}" for name, c in self_c.most_common(top)]
    out.append("  inclusive (msi_tui frames):")
    out += [f"    {c / total:6.1%}  {name}" for name, c in incl.most_common(top)]
    return "\n".join(out)


def _short(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:line)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    parts = Path(path).parts
    short = "/".join(parts[parts.index("msi_tui"):]) if "msi_tui" in parts else Path(path).name
    return f"{name} ({short})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--chunk-size", type=int, default=16384)
    p.add_argument("--bootstrap")
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    args = p.parse_args()
    if not shutil.which("py-spy"):
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    run = Path(tempfile.mkdtemp(prefix="msi-profile-"))
    broker = None
    try:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            from msi_tui.broker.local import LocalBroker, free_port

            port, cport = free_port(), free_port()
            broker = LocalBroker(run / "broker", port=port, controller_port=cport, heap_mb=1024)
            bootstrap = broker.start()
        src = run / "profile.bin"
        write_random_file(src, args.size_mib * MIB)
        topic = f"profile-{uuid.uuid4().hex[:8]}"
        env = {**os.environ, "MSI_TUI_STATE_DIR": str(run / "state")}
        py = [sys.executable, "-m", "msi_tui"]
        spy = ["py-spy", "record", "--format", "raw", "--rate", str(args.rate), "--threads", "--nonblocking"]
        t = time.monotonic()
        subprocess.run([*spy, "-o", str(run / "upload.txt"), "--", *py, "upload-file", str(src), "--bootstrap",
                        bootstrap, "--topic", topic, "--chunk-size", str(args.chunk_size)],
                       env=env, check=True, capture_output=True)
        print(f"upload-file {args.size_mib} MiB at {args.chunk_size} B chunks: {time.monotonic() - t:.1f} s "
              "under py-spy")
        print(summarize(run / "upload.txt", args.top))
        out = run / "out"
        rc = subprocess.Popen([*spy, "-o", str(run / "reconstruct.txt"), "--", *py, "reconstruct", str(out),
                               "--headless", "--bootstrap", bootstrap, "--topic", topic, "--group-id", topic,
                               "--update-seconds", "-1"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
        assert rc.stdout is not None and rc.stdin is not None  # (pipes, as asked)
        t = time.monotonic()
        for line in rc.stdout:
            if line.startswith("reconstructed "):
                break
        print(f"reconstruct: {time.monotonic() - t:.1f} s under py-spy")
        rc.stdin.write("quit\n")
        rc.stdin.flush()
        rc.wait(120)
        print(summarize(run / "reconstruct.txt", args.top))
        return 0
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
