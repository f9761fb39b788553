#!/usr/bin/env python3
"""What the full-screen app costs the upload: throughput with and without it, key latency.

Two runs of the same transfer, one large file sent with `Uploader.enqueue_file` (no folder
watched), each to its own fresh topic:

  (a) headless: the Uploader alone, timed from `enqueue_file` to `idle()` (polled every 50 ms);
  (b) app: the same, with `MsiTuiApp` running over that Uploader (`app.run_test(headless=True)`,
      so no terminal is needed; the app starts the service itself, as in real use). While the
      file is on its way a key is pressed every 0.5 s, alternately F1 (opens the help screen)
      and escape (closes it), and the latency of each is the time from the press to the
      screen stack showing its effect (the help screen on top and mounted, or gone).

Keys are handed to the app's driver exactly as a terminal's would be (a `Key` event, what
`Pilot.press` sends), but without `Pilot.press`'s own waiting: it waits for the *process*
to go idle (`textual._wait.wait_for_idle`, up to 1 s, twice per key), which never happens
while upload threads are busy, so timing `pilot.press` would measure that wait, not the UI.
The event loop's own lag (how late a 10 ms sleep wakes up) is sampled alongside.

Prints a table: both throughputs, their ratio (target >= 90 %) and the key latency
p50/p95/max (target < 200 ms). Figures only, no exit status for a miss.

    python bench/app_overhead.py --size-mib 1024
    python bench/app_overhead.py --size-mib 256 --bootstrap 127.0.0.1:9092

Without --bootstrap a LocalBroker is started on free ports in a temporary home and removed
at the end. MB here is 10^6 bytes, MiB is 2^20 bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's msi_tui, always

MIB = 1 << 20
MB = 1_000_000
POLL_S = 0.05
KEY_EVERY_S = 0.5
RATIO_TARGET = 0.90
LATENCY_TARGET_MS = 200.0


def write_random_file(path: Path, size: int) -> None:
    """`size` bytes of random data (incompressible, no two chunks alike), 1 MiB at a time."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(MIB, left)
            f.write(os.urandom(n))
            left -= n


@dataclass
class Run:
    seconds: float
    size: int
    latencies_ms: list[float] = field(default_factory=list)
    log_lines: int = 0
    loop_lag_ms: list[float] = field(default_factory=list)

    @property
    def mb_s(self) -> float:
        return self.size / MB / self.seconds


def new_topic(kind: str) -> str:
    return f"bench_app_overhead_{kind}_{uuid.uuid4().hex[:10]}"


def make_uploader(bootstrap: str, topic: str, args: argparse.Namespace):
    from msi_tui.engine.config import load_config
    from msi_tui.engine.upload import Uploader
    from msi_tui.engine.upload_settings import UploadSettings
    from msi_tui.tui.event_buffer import EventBuffer

    config = load_config(bootstrap=bootstrap)
    events = EventBuffer()
    settings = UploadSettings(topic=topic, n_threads=args.n_threads, partitions=args.partitions)
    return config, events, Uploader(config, settings, events)


def run_headless(bootstrap: str, path: Path, args: argparse.Namespace) -> Run:
    _config, _events, uploader = make_uploader(bootstrap, new_topic("headless"), args)
    uploader.start()
    try:
        t0 = time.perf_counter()
        uploader.enqueue_file(path)
        while not uploader.idle():
            time.sleep(POLL_S)
        elapsed = time.perf_counter() - t0
        snap = uploader.snapshot()
        assert snap.files_done == 1, f"headless upload did not finish cleanly: {snap}"
    finally:
        uploader.request_stop()
        uploader.wait_stopped(timeout=30)
    return Run(elapsed, path.stat().st_size)


async def run_with_app(bootstrap: str, path: Path, args: argparse.Namespace) -> Run:
    from msi_tui.tui.app import MsiTuiApp
    from msi_tui.tui.context import AppContext
    from msi_tui.tui.log_panel import EventLog

    topic = new_topic("app")
    config, events, uploader = make_uploader(bootstrap, topic, args)
    context = AppContext(cluster_name=config.name, bootstrap=config.bootstrap, topic=topic,
                         uploader=uploader, reconstructor=None, events=events)
    app = MsiTuiApp(context)
    latencies: list[float] = []
    loop_lag: list[float] = []
    try:
        async with app.run_test(size=(120, 40), headless=True) as pilot:
            deadline = time.monotonic() + 120
            while app.slots["upload"].status != "running":
                if app.slots["upload"].status == "failed" or time.monotonic() > deadline:
                    raise RuntimeError(f"the app could not start the uploader: {app.slots['upload'].error}")
                await asyncio.sleep(POLL_S)
            await pilot.pause()

            done = asyncio.Event()
            finished_at: list[float] = []

            async def watch_transfer() -> None:
                while not uploader.idle():
                    await asyncio.sleep(POLL_S)
                finished_at.append(time.perf_counter())
                done.set()

            t0 = time.perf_counter()
            uploader.enqueue_file(path)
            await asyncio.gather(watch_transfer(), press_keys_until(app, done, latencies, loop_lag))
            elapsed = finished_at[0] - t0
            snap = uploader.snapshot()
            assert snap.files_done == 1, f"upload with the app did not finish cleanly: {snap}"
            log_lines = len(app.main_screen.query_one(EventLog).lines)
            app.action_quit()  # drains (nothing left) and exits with 0
            deadline = time.monotonic() + 60
            while app.return_code is None and time.monotonic() < deadline:
                await asyncio.sleep(POLL_S)
    finally:
        if not uploader.stopped:
            uploader.force_stop()
            uploader.wait_stopped(timeout=10)
    return Run(elapsed, path.stat().st_size, latencies, log_lines, loop_lag)


async def press_keys_until(app, done: asyncio.Event, latencies: list[float], loop_lag: list[float]) -> None:
    """Until `done` is set: F1 and escape alternately every KEY_EVERY_S, each press's latency
    (ms) appended to `latencies`, the event loop's lag (ms) sampled into `loop_lag`; then the
    help screen is closed if it is open. The in-process and the attached run both use this."""
    from msi_tui.tui.help_screen import HelpScreen

    async def press_keys() -> None:
        next_press = time.perf_counter() + KEY_EVERY_S
        while not done.is_set():
            try:
                await asyncio.wait_for(done.wait(), max(0.0, next_press - time.perf_counter()))
                break
            except TimeoutError:
                pass
            help_open = isinstance(app.screen, HelpScreen)
            t0 = time.perf_counter()
            send_key(app, "escape" if help_open else "f1")
            while not reflected(app, help_open):
                await asyncio.sleep(0.001)
            latencies.append((time.perf_counter() - t0) * 1000)
            next_press += KEY_EVERY_S

    async def sample_loop_lag() -> None:
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.010)
            loop_lag.append((time.perf_counter() - t - 0.010) * 1000)

    await asyncio.gather(press_keys(), sample_loop_lag())
    if isinstance(app.screen, HelpScreen):
        send_key(app, "escape")
        while not reflected(app, True):
            await asyncio.sleep(0.001)


def merge(runs: list[Run]) -> Run:
    """Several runs as one: total bytes over total time, every latency sample pooled."""
    return Run(sum(r.seconds for r in runs), sum(r.size for r in runs),
               [x for r in runs for x in r.latencies_ms], sum(r.log_lines for r in runs),
               [x for r in runs for x in r.loop_lag_ms])


def send_key(app, key: str) -> None:
    """Hand one key to the app the way its terminal driver does (and `Pilot.press` does)."""
    from textual import events

    event = events.Key(key, "\x1b" if key == "escape" else None)
    event.set_sender(app)
    app._driver.send_message(event)


def reflected(app, help_was_open: bool) -> bool:
    """The press shows: the help screen is on top and mounted, or it is gone."""
    from msi_tui.tui.help_screen import HelpScreen

    screen = app.screen
    if help_was_open:
        return not isinstance(screen, HelpScreen)
    return isinstance(screen, HelpScreen) and screen.is_mounted


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def report(headless_runs: list[Run], app_runs: list[Run], args: argparse.Namespace) -> None:
    headless, app = merge(headless_runs), merge(app_runs)
    each = lambda runs: ", ".join(f"{r.mb_s:.0f}" for r in runs)
    ratio = app.mb_s / headless.mb_s
    lat = app.latencies_ms
    p50, p95, worst = percentile(lat, 0.50), percentile(lat, 0.95), max(lat) if lat else float("nan")
    ok = lambda good: "ok" if good else "MISSED"
    print()
    if args.attached:
        print("attached: (a) is a service process nobody is attached to, (b) the same with the app attached "
              "over its socket")
    print(f"app overhead: one {args.size_mib:g} MiB file, chunk 16 KiB, n_threads {args.n_threads}, "
          f"partitions {args.partitions}, {args.rounds} run(s) of each, key every {KEY_EVERY_S} s (F1 / escape)")
    print(f"{'measure':<28}{'value':>14}  {'target':<12}{'':>6}")
    print("-" * 62)
    print(f"{'headless throughput':<28}{headless.mb_s:>10.1f} MB/s  {'':<12}  (runs: {each(headless_runs)})")
    print(f"{'app throughput':<28}{app.mb_s:>10.1f} MB/s  {'':<12}  (runs: {each(app_runs)})")
    print(f"{'ratio app / headless':<28}{ratio * 100:>12.1f} %  {'>= 90 %':<12}{ok(ratio >= RATIO_TARGET):>6}")
    print(f"{'key latency p50':<28}{p50:>12.1f} ms  {'< 200 ms':<12}{ok(p50 < LATENCY_TARGET_MS):>6}")
    print(f"{'key latency p95':<28}{p95:>12.1f} ms  {'< 200 ms':<12}{ok(p95 < LATENCY_TARGET_MS):>6}")
    print(f"{'key latency max':<28}{worst:>12.1f} ms  {'< 200 ms':<12}{ok(worst < LATENCY_TARGET_MS):>6}")
    print(f"{'key presses measured':<28}{len(lat):>14}")
    if lat:
        print(f"{'key latency mean':<28}{statistics.fmean(lat):>12.1f} ms")
    lag = app.loop_lag_ms
    if lag:
        print(f"{'event-loop lag p50/p95/max':<28}{percentile(lag, 0.5):>7.1f} / {percentile(lag, 0.95):.1f} / "
              f"{max(lag):.1f} ms")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=float, default=1024, help="size of the file sent (MiB)")
    parser.add_argument("--bootstrap", help="use this broker instead of starting a LocalBroker")
    parser.add_argument("--n-threads", type=int, default=5, help="upload threads (default 5)")
    parser.add_argument("--partitions", type=int, default=5, help="topic partitions (default 5)")
    parser.add_argument("--warmup-mib", type=float, default=512, help="untimed upload first (default 512 MiB)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="runs of each kind, in ABBA order (default 2: headless, app, app, headless)")
    parser.add_argument("--attached", action="store_true",
                        help="against a service process (`upload DIR --service`): nobody attached, then the "
                             "app attached over its socket (bench/attached_runs.py)")
    args = parser.parse_args(argv)
    if args.attached:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import attached_runs  # bench/attached_runs.py

    work = Path(tempfile.mkdtemp(prefix="msi-app-overhead-"))
    os.environ.setdefault("MSI_TUI_STATE_DIR", str(work / "state"))
    broker = None
    try:
        bootstrap = args.bootstrap
        if not bootstrap:
            from msi_tui.broker.local import LocalBroker, free_port

            port = free_port()
            controller_port = free_port()
            while controller_port == port:
                controller_port = free_port()
            broker = LocalBroker(work / "kafka", port=port, controller_port=controller_port)
            print(f"starting a LocalBroker in {work / 'kafka'} ...", flush=True)
            bootstrap = broker.start()
        size = int(args.size_mib * MIB)
        path = work / "payload.bin"
        print(f"writing {size / MIB:.0f} MiB of random data ...", flush=True)
        write_random_file(path, size)

        # The broker's first idempotent producer waits for its coordinator to load: pay that
        # (and the page cache for the file) before timing anything.
        # The broker's JIT warms up over the first few hundred MB too: without this the first
        # timed run is up to twice as slow as the later ones.
        warm = work / "warmup.bin"
        write_random_file(warm, int(args.warmup_mib * MIB))
        print(f"warm-up upload ({args.warmup_mib:g} MiB, not timed) ...", flush=True)
        run_headless(bootstrap, warm, args)
        with open(path, "rb") as f:  # into the page cache, for both runs alike
            while f.read(16 * MIB):
                pass

        # ABBA order (headless, app, app, headless, ...) so a drift over time (broker log
        # growth, page cache, CPU clocks) does not favour either side.
        headless_runs: list[Run] = []
        app_runs: list[Run] = []
        order = ["headless", "app", "app", "headless"] * (args.rounds // 2) + ["headless", "app"] * (args.rounds % 2)
        for kind in order:
            if kind == "headless":
                print("(a) headless upload ...", flush=True)
                run = (attached_runs.run_service_headless(bootstrap, path, args, new_topic, Run) if args.attached
                       else run_headless(bootstrap, path, args))
                headless_runs.append(run)
                print(f"    {run.mb_s:.1f} MB/s in {run.seconds:.1f} s", flush=True)
            else:
                print("(b) upload with the app open, pressing keys ...", flush=True)
                run = (attached_runs.run_service_attached(bootstrap, path, args, new_topic, Run, press_keys_until)
                       if args.attached
                       else asyncio.run(run_with_app(bootstrap, path, args)))
                app_runs.append(run)
                print(f"    {run.mb_s:.1f} MB/s in {run.seconds:.1f} s, {len(run.latencies_ms)} key presses",
                      flush=True)
        report(headless_runs, app_runs, args)
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
