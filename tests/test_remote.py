"""Services the app attaches to, without a broker: the wire format, the socket (its mode,
another user, names), several clients, commands, the end of a service, and the attached
app's detach / quit service / service-gone, all over a real Unix socket served for a
scripted fake service (tests/fake_engine.py). test_remote_service.py does the same with
real service processes and the real broker."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from msi_tui.engine import events as engine_events
from msi_tui.engine.events import FileUploaded, FileUploadStarted, Notice
from msi_tui.errors import OperatorError
from msi_tui.remote import protocol
from msi_tui.remote.client import ServiceConnection
from msi_tui.remote.names import default_name, socket_path
from msi_tui.remote.protocol import ClientHello, ProtocolError, ServiceInfo, decode, encode
from msi_tui.remote.proxies import RemoteUploader, proxy_for
from msi_tui.remote.server import ServiceHost
from tests.fake_engine import FakeReconstructor, FakeUploader, mid_transfer_reconstruct, mid_transfer_upload, run_async
from tests.helpers import Recorder, wait_until

if TYPE_CHECKING:  # the app is imported where it is made (see attached_app)
    from textual.pilot import Pilot

    from msi_tui.remote.app import AttachedApp

WAIT_S = 10.0


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private, short state dir (a Unix socket's path has at most 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="msi-r-", dir="/tmp"))
    monkeypatch.setenv("MSI_TUI_STATE_DIR", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def info_for(name: str, kind: str = "upload") -> ServiceInfo:
    return ServiceInfo(name=name, kind=kind, pid=os.getpid(), started_at=time.time(), cluster_name="lab",
                       bootstrap="kafka-1.lab:9092", topic="instrument-files",
                       folder="/data/scope-7" if kind == "upload" else "/data/received",
                       group_id="" if kind == "upload" else "msi-lab", version="test")


@contextmanager
def served(service: FakeUploader | FakeReconstructor, name: str = "upload-scope-7",
           kind: str = "upload") -> Iterator[ServiceHost]:
    """The fake served as `msi-tui ... --service` serves the real one: the socket goes when
    the service stops (the console's loop ends, then the host closes)."""
    said: list[str] = []
    host = ServiceHost(name, kind, say=said.append)
    host.said = said  # type: ignore[attr-defined]
    host.serve(service, info_for(name, kind))  # (as the command line does: answering while it starts)
    service.start()
    host.mark_started()

    def close_when_stopped() -> None:
        service.wait_stopped(3600)
        host.close()

    threading.Thread(target=close_when_stopped, daemon=True).start()
    try:
        yield host
    finally:
        if not service.stopped:
            service.force_stop()
        host.close()


def calls(service: FakeUploader) -> list[str]:
    """What was asked of the service (less the wait of `served` for its end)."""
    return [c for c in service.calls if c != "wait_stopped"]


def has_counts(proxy: RemoteUploader, done: int) -> bool:
    return proxy.snapshot().files_done == done


def attach(name: str = "upload-scope-7", start: bool = True, **kwargs: object) -> tuple[RemoteUploader, Recorder]:
    recorder = Recorder()
    connection = ServiceConnection.open(socket_path(name), sink=recorder, **kwargs)  # type: ignore[arg-type]
    connection.start()
    proxy = proxy_for(connection)
    if start:  # (waits for the first snapshot, and for the service's start to end)
        proxy.start()
    return proxy, recorder  # type: ignore[return-value]


# --- the wire format ------------------------------------------------------------------------


def test_every_event_and_snapshot_crosses_the_wire_unchanged() -> None:
    up, rec = FakeUploader(), FakeReconstructor()
    mid_transfer_upload(up)
    mid_transfer_reconstruct(rec)
    odd = "scope/\udcff\udcfe name.trc"  # a name that was not UTF-8 on the instrument (surrogateescape)
    samples: list[object] = [up.snapshot(), rec.snapshot(), dataclasses.replace(up.snapshot().files[0], path=odd)]
    for cls in vars(engine_events).values():
        if isinstance(cls, type) and issubclass(cls, engine_events.Event) and cls is not engine_events.Event:
            values = {f.name: {"int": 7, "float": 1.5, "bool": True}.get(str(f.type), odd if f.name == "path" else "x")
                      for f in dataclasses.fields(cls) if f.name != "at"}
            if cls is Notice:
                values["level"] = "warning"
            samples.append(cls(**values, at=1_767_268_800.25))
    for message in samples:
        line = encode(message)
        assert line.endswith(b"\n") and b"\n" not in line[:-1]
        assert json.loads(line)["v"] == protocol.PROTOCOL_VERSION
        assert decode(line) == message, type(message).__name__


def test_a_reader_ignores_new_fields_defaults_missing_ones_and_refuses_other_versions() -> None:
    plain = json.loads(encode(FileUploadStarted(path="a", size=1, chunks=1, upload_id="u", at=2.0)))
    plain["added_later"] = [1, 2]
    assert decode(json.dumps(plain).encode()) == FileUploadStarted(path="a", size=1, chunks=1, upload_id="u", at=2.0)
    hello = decode(b'{"v":1,"type":"ClientHello"}\n')
    assert hello == ClientHello()
    with pytest.raises(ProtocolError, match="protocol version 2"):
        decode(b'{"v":2,"type":"ClientHello"}\n')
    with pytest.raises(ProtocolError, match="unknown message type 'Shell'"):
        decode(b'{"v":1,"type":"Shell","command":"rm -rf /"}\n')
    with pytest.raises(ProtocolError):
        decode(b"not json\n")


def test_default_names_come_from_the_kind_and_the_folder() -> None:
    assert default_name("upload", Path("/data/outbox/")) == "upload-outbox"
    assert default_name("reconstruct", Path("/data/in box ü")) == "reconstruct-in-box"
    assert default_name("upload", Path("/")) == "upload-root"
    with pytest.raises(OperatorError, match="service name"):
        socket_path("../etc")


# --- the socket ----------------------------------------------------------------------------


def test_the_socket_is_private_to_the_user_and_another_user_is_told_so(state: Path) -> None:
    with served(FakeUploader()) as host:
        mode = stat.S_IMODE(host.path.stat().st_mode)
        assert stat.S_ISSOCK(host.path.stat().st_mode) and mode == 0o600, oct(mode)
        assert stat.S_IMODE(host.path.parent.stat().st_mode) == 0o700
        if os.geteuid() == 0:  # as root, try it as another user for real
            assert "permission denied" in as_another_user(host.path)
            assert "private to the user" in as_another_user(host.path)
            # Even with the file's permissions opened, the service refuses another uid.
            os.chmod(state, 0o711)
            os.chmod(host.path.parent, 0o711)
            os.chmod(host.path, 0o666)
            assert "refused this client" in as_another_user(host.path)
            os.chmod(host.path, 0o600)
        # The owner without write permission on the socket cannot connect either.
        os.chmod(host.path, 0o000)
        try:
            if os.geteuid() != 0:  # (root ignores permissions)
                with pytest.raises(OperatorError, match="permission denied"):
                    ServiceConnection.open(host.path)
        finally:
            os.chmod(host.path, 0o600)


def as_another_user(path: Path, uid: int = 65534) -> str:
    """What ServiceConnection.open says in a child process that runs as `uid`."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery from here on
        try:
            os.close(read)
            os.setgid(uid)
            os.setuid(uid)
            try:
                ServiceConnection.open(path, timeout=5)
                message = "connected"
            except OperatorError as exc:
                message = str(exc)
            os.write(write, message.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        said = pipe.read()
    os.waitpid(pid, 0)
    return said


def test_a_second_service_of_the_same_name_is_refused_and_a_killed_ones_socket_replaced(state: Path) -> None:
    with served(FakeUploader()), pytest.raises(OperatorError, match="already running"):
        ServiceHost("upload-scope-7", "upload")
    # What a killed service leaves: a socket file nobody listens on.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(socket_path("upload-scope-7")))
    dead.close()
    with pytest.raises(OperatorError, match="not running"):
        ServiceConnection.open(socket_path("upload-scope-7"))
    with served(FakeUploader()):
        proxy, _ = attach()
        assert proxy.snapshot().state == "watching"
        proxy.detach()
    with pytest.raises(OperatorError, match="no service listens"):
        ServiceConnection.open(socket_path("upload-scope-7"))


# --- clients ---------------------------------------------------------------------------------


def test_two_clients_both_see_events_and_snapshots_and_a_newcomer_gets_the_present_at_once(state: Path) -> None:
    up = FakeUploader()
    with served(up) as host:
        first, first_events = attach()
        second, second_events = attach()
        host.publish(FileUploaded(path="scan-041.h5", size=5, chunks=1, upload_id="u41", seconds=0.1, at=1.0))
        mid_transfer_upload(up)
        for proxy, recorder in ((first, first_events), (second, second_events)):
            wait_until(partial(recorder.paths, FileUploaded), "the event at both", WAIT_S)
            assert recorder.paths(FileUploaded) == ["scan-041.h5"]
            wait_until(partial(has_counts, proxy, 41), "the new counts at both", WAIT_S)
            assert proxy.snapshot() == up.snapshot()
        # A client attaching now: the present in its first snapshot, the recent past as events.
        started = time.monotonic()
        third, third_events = attach()
        assert third.snapshot() == up.snapshot() and time.monotonic() - started < 1.0
        assert third_events.paths(FileUploaded) == ["scan-041.h5"]
        assert host.clients() == 3
        for proxy in (first, second, third):
            proxy.detach()
        wait_until(lambda: host.clients() == 0, "the clients to be gone", WAIT_S)
        assert not up.stopped and calls(up) == ["start"]  # detaching stops nothing


def test_commands_reach_the_service_and_its_refusals_come_back(state: Path) -> None:
    up = FakeUploader()
    with served(up):
        proxy, _ = attach()
        proxy.pause()
        wait_until(lambda: proxy.snapshot().state == "paused", "the paused state", WAIT_S)
        proxy.resume()
        wait_until(lambda: proxy.snapshot().state == "watching", "the watching state", WAIT_S)
        proxy.enqueue_file(Path("/data/scope-7/extra.bin"))
        assert up.enqueued == [Path("/data/scope-7/extra.bin")]
        up.enqueue_file = lambda path: (_ for _ in ()).throw(OperatorError(f"no such file: {path}"))  # type: ignore[method-assign]
        with pytest.raises(OperatorError, match="no such file: /nowhere"):
            proxy.enqueue_file(Path("/nowhere"))
        assert calls(up)[:3] == ["start", "pause", "resume"]
        proxy.detach()


def test_a_stopped_service_says_so_to_every_client_and_its_socket_goes(state: Path) -> None:
    up = FakeUploader()
    with served(up) as host:
        stopper, _ = attach()
        watcher, _ = attach()
        up.set(pending_deliveries=3)
        stopper.request_stop()  # as `quit service` and `msi-tui stop` do
        wait_until(lambda: watcher.snapshot().state == "draining", "draining seen by the other client", WAIT_S)
        assert not watcher.stopped
        up.deliver(3)
        assert watcher.wait_stopped(WAIT_S) and stopper.wait_stopped(WAIT_S)
        assert watcher.snapshot().state == "stopped"
        assert watcher.gone == "the service stopped" and watcher.died is None
        wait_until(lambda: not host.path.exists(), "the socket to go", WAIT_S)
        assert "quitting (asked by msi-tui pid" in " ".join(host.said)  # type: ignore[attr-defined]


def test_a_service_that_vanishes_is_told_apart_from_one_that_stopped(state: Path) -> None:
    up = FakeUploader()
    with served(up) as host:
        proxy, _ = attach()
        # As if the process were killed: the connection breaks, no `Stopped` comes.
        for peer in list(host._peers):
            peer.close()
        assert proxy.wait_stopped(WAIT_S)
        assert proxy.gone and "lost" in proxy.gone
        assert proxy.snapshot().state == "gone"


def test_a_starting_service_answers_but_takes_commands_only_once_started(state: Path) -> None:
    up = FakeUploader()
    host = ServiceHost("upload-scope-7", "upload")
    try:
        host.serve(up, info_for("upload-scope-7"))  # start() not returned yet
        proxy, _ = attach(start=False)
        assert proxy.connection.first_snapshot.wait(WAIT_S) and proxy.snapshot().state == "starting"
        starting = threading.Thread(target=proxy.start)  # as the app's start worker: waits
        starting.start()
        time.sleep(0.3)
        assert starting.is_alive()
        with pytest.raises(OperatorError, match="still starting"):
            proxy.enqueue_file(Path("/data/scope-7/a.bin"))
        up.start()
        host.mark_started()
        starting.join(WAIT_S)
        assert not starting.is_alive()
        proxy.pause()
        wait_until(lambda: proxy.snapshot().state == "paused", "the pause once started", WAIT_S)
        # A start that fails is the clients' last news.
        host.close(died="could not start: broker unreachable")
        assert proxy.wait_stopped(WAIT_S) and proxy.gone == "the service stopped: could not start: broker unreachable"
    finally:
        host.close()


def test_a_status_client_gets_the_snapshot_and_no_events(state: Path) -> None:
    up = FakeUploader()
    mid_transfer_upload(up)
    with served(up):
        from msi_tui.remote.control import running_services

        (row,) = running_services()
        assert row["name"] == "upload-scope-7" and row["kind"] == "upload" and row["state"] == "watching"
        assert row["counts"]["files_done"] == 41 and row["socket"].endswith("services/upload-scope-7.sock")
        assert "files enqueued 1, in progress 2, done 41" in row["text"]


# --- the attached app -------------------------------------------------------------------------


def attached_app(name: str = "upload-scope-7"):
    from msi_tui.launch import attached_context
    from msi_tui.remote.app import AttachedApp

    context, services = attached_context([name], None, cursor_blink=False)
    return AttachedApp(context, services), services


def log_text(app) -> str:
    from msi_tui.tui.log_panel import EventLog

    return "\n".join(line.message for line in app.main_screen.query_one(EventLog).kept)


async def until(pilot, condition, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; log:\n{log_text(pilot.app)}")
        await pilot.pause(0.05)


@asynccontextmanager
async def attached(name: str = "upload-scope-7") -> AsyncIterator[tuple[AttachedApp, Pilot[int], list[Any]]]:
    """The app attached to the served service `name` (at 100x30), once its upload slot runs;
    with its Pilot and the service proxies."""
    app, services = attached_app(name)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.slots["upload"].status == "running", "the upload slot to run")
        yield app, pilot, services


@run_async
async def test_f10_detaches_and_the_service_goes_on(state: Path) -> None:
    up = FakeUploader()
    with served(up) as host:
        async with attached() as (app, pilot, services):
            await until(pilot, lambda: "attached to service upload-scope-7" in log_text(app), "the attach line")
            proxy = app.context.uploader
            assert proxy is not None
            mid_transfer_upload(up)
            await until(pilot, lambda: proxy.snapshot().files_done == 41, "the new counts")
            app.run_command("check")  # the same words as in a session of its own, from the proxy
            assert "upload (watching): files enqueued 1, in progress 2, done 41" in log_text(app)
            app.run_command("pause")  # a command over the socket
            await until(pilot, lambda: proxy.snapshot().state == "paused", "paused")
            await pilot.press("f10")
            await until(pilot, lambda: app.return_code is not None, "the app to exit")
        assert app.return_code == 0 and app.detached
        assert calls(up) == ["start", "pause"] and not up.stopped
        wait_until(lambda: host.clients() == 0, "the client to be gone", WAIT_S)
        assert services[0].gone is None


@run_async
async def test_quit_service_asks_then_drains_and_stops_the_service(state: Path) -> None:
    from msi_tui.remote.app import Confirm
    from msi_tui.tui.pane import Line

    up = FakeUploader()
    with served(up):
        async with attached() as (app, pilot, _):
            app.run_command("quit service")
            await until(pilot, lambda: isinstance(app.screen, Confirm), "the question")
            await pilot.press("n")
            await pilot.pause()
            assert "request_stop" not in up.calls and app.return_code is None
            up.set(pending_deliveries=5)
            app.run_command("quit service")
            await until(pilot, lambda: isinstance(app.screen, Confirm), "the question again")
            await pilot.press("y")
            await until(pilot, lambda: "request_stop" in up.calls, "the stop to reach the service")
            await until(pilot, lambda: "`quit service` again to force" in str(
                app.main_screen.query_one("#status", Line)._last), "the draining line in this app's words")
            up.deliver(5)
            await until(pilot, lambda: app.return_code is not None, "the app to exit once it stopped")
        assert app.return_code == 0 and not app.detached and up.stopped


@run_async
async def test_a_service_that_stops_elsewhere_is_shown_and_the_app_offers_to_exit(state: Path) -> None:
    from msi_tui.remote.app import Confirm

    up = FakeUploader()
    with served(up):
        async with attached() as (app, pilot, _):
            up.request_stop()  # `msi-tui stop` from another terminal
            await until(pilot, lambda: isinstance(app.screen, Confirm), "the offer to exit")
            assert "service upload-scope-7: the service stopped" in log_text(app)
            await pilot.press("y")
            await until(pilot, lambda: app.return_code is not None, "the app to exit")
        assert app.return_code == 0


# --- layering ---------------------------------------------------------------------------------


def test_a_service_runs_without_textual_and_the_engine_knows_nothing_of_the_socket() -> None:
    """The service side and the attach machinery short of the app import no Textual; no
    engine module imports msi_tui.remote."""
    import pkgutil
    import subprocess
    import sys

    import msi_tui.engine

    code = (
        "import importlib, sys\n"
        "for name in ['msi_tui.cli', 'msi_tui.remote.server', 'msi_tui.remote.serve', 'msi_tui.remote.client',\n"
        "             'msi_tui.remote.proxies', 'msi_tui.remote.control', 'msi_tui.remote.discovery']:\n"
        "    importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "assert not leaked, leaked[:5]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    engine = ["msi_tui.engine", *(i.name for i in pkgutil.walk_packages(msi_tui.engine.__path__, "msi_tui.engine."))]
    code = (
        "import importlib, sys\n"
        f"for name in {engine!r}:\n"
        "    importlib.import_module(name)\n"
        "assert not [m for m in sys.modules if m.startswith('msi_tui.remote')]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
