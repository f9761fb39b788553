"""`bench/app_overhead.py --attached`: the same two runs, against a service process.

  (a) service, nobody attached: `msi-tui upload DIR --service` in a process of its own; a
      control connection (no snapshots) sends the file (`enqueue_file`, as `upload PATH`
      does) and hears the service's FileUploaded event;
  (b) service with the app attached: the same, with `AttachedApp` over the service's socket
      (`app.run_test(headless=True)`), pressing F1 / escape every 0.5 s as the in-process run.

Each run starts a fresh service (fresh topic) and stops it after. The transfer's time is from
sending the command to the `at` of the FileUploaded event (the service's wall clock, on the
same machine): the end record's acknowledgement, as `idle()` polls it in-process, without
depending on how often snapshots come.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

POLL_S = 0.05


@contextmanager
def service_process(bootstrap: str, topic: str, args: argparse.Namespace) -> Iterator[str]:
    """A `msi-tui upload EMPTY_DIR --service` process; yields its name once it answers."""
    from msi_tui.errors import OperatorError
    from msi_tui.remote.client import ServiceConnection
    from msi_tui.remote.names import socket_path

    name = topic[-24:]
    folder = Path(tempfile.mkdtemp(prefix="msi-bench-outbox-"))
    log = open(folder.parent / f"{name}.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "msi_tui", "upload", str(folder), "--service", "--name", name,
                             "--bootstrap", bootstrap, "--topic", topic, "--n-threads", str(args.n_threads),
                             "--partitions", str(args.partitions), "--update-seconds", "-1"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"service {name} did not start: {(folder.parent / f'{name}.log').read_text()}")
            try:
                connection = ServiceConnection.open(socket_path(name), events=False, snapshot_every=0)
            except OperatorError:
                time.sleep(0.1)
                continue
            snap = connection.read_until_snapshot(2)
            connection.close()
            if snap is not None and snap.state != "starting":  # (it answers while it starts)
                break
            time.sleep(0.1)
        yield name
    finally:
        proc.terminate()  # SIGTERM: drains (nothing left) and exits
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def uploaded_at(path: Path) -> tuple[Callable[[Any], None], threading.Event, list[float]]:
    """A sink that notes when the service says `path` was uploaded."""
    from msi_tui.engine.events import FileUploaded

    done, at = threading.Event(), []

    def sink(event: Any) -> None:
        if isinstance(event, FileUploaded) and event.path == path.name and not done.is_set():
            at.append(event.at)
            done.set()

    return sink, done, at


def run_service_headless(bootstrap: str, path: Path, args: argparse.Namespace, new_topic, run_type):
    from msi_tui.remote.client import ServiceConnection
    from msi_tui.remote.names import socket_path

    with service_process(bootstrap, new_topic("service"), args) as name:
        sink, done, at = uploaded_at(path)
        connection = ServiceConnection.open(socket_path(name), sink=sink, events=True, snapshot_every=0)
        connection.start()
        t0 = time.time()
        error = connection.command("enqueue_file", str(path), wait=10)
        assert not error, error
        assert done.wait(600), "the service never said the file was uploaded"
        connection.close()
    return run_type(at[0] - t0, path.stat().st_size)


def run_service_attached(bootstrap: str, path: Path, args: argparse.Namespace, new_topic, run_type,
                         press_keys_until):
    """`press_keys_until`: app_overhead's, so both runs press keys and sample the loop alike."""
    with service_process(bootstrap, new_topic("attached"), args) as name:
        return asyncio.run(_attached(name, path, run_type, press_keys_until))


async def _attached(name: str, path: Path, run_type, press_keys_until):
    from msi_tui.launch import attached_context
    from msi_tui.remote.app import AttachedApp
    from msi_tui.tui.log_panel import EventLog

    context, services = attached_context([name], None)
    connection = services[0].connection
    note, done_event, at = uploaded_at(path)
    shown = connection.sink
    connection.sink = lambda event: (note(event), shown(event))  # the app's buffer gets every event still
    app = AttachedApp(context, services)
    latencies: list[float] = []
    loop_lag: list[float] = []
    async with app.run_test(size=(120, 40), headless=True) as pilot:
        while app.slots["upload"].status != "running":
            await asyncio.sleep(POLL_S)
        await pilot.pause()
        done = asyncio.Event()

        async def watch_transfer() -> None:
            while not done_event.is_set():
                await asyncio.sleep(POLL_S)
            done.set()

        t0 = time.time()
        services[0].enqueue_file(path)  # `upload PATH` over the socket
        await asyncio.gather(watch_transfer(), press_keys_until(app, done, latencies, loop_lag))
        elapsed = at[0] - t0
        log_lines = len(app.main_screen.query_one(EventLog).lines)
        app.detach()
    return run_type(elapsed, path.stat().st_size, latencies, log_lines, loop_lag)
