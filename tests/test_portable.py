"""The portable uploader: what runs on Windows and macOS, run here on Linux.

`MSI_TUI_PORTABLE=1` turns off every Linux speed-up (msi_tui.engine.platform_caps): the
watcher polls with watchdog's PollingObserver and judges files by the quiet period, and
rebuilt files are written with plain buffered I/O. `test_the_upload_tests_pass_on_the_portable_path`
runs the upload acceptance tests in pytest sessions so started, in which every Python process
(the sessions and each `python -m msi_tui` they start) refuses to load a library through ctypes
(tests/portable_site/sitecustomize.py) and reports who asked.

The tests marked `portable_only` are those sessions' own: they check what only holds on the
portable path (no inotify descriptor, the quiet period deciding, plain file I/O) and stand in
for the upload tests left out because they test close events.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from watchdog.observers.polling import PollingObserver

from msi_tui.engine import disk_io, watch, wire
from msi_tui.engine.assembly import Assembly
from msi_tui.engine.events import Notice
from msi_tui.engine.platform_caps import PORTABLE_ENV, WITHOUT_ENV, Caps, caps
from tests.helpers import Recorder, digest_of, wait_until, write_random

ROOT = Path(__file__).resolve().parent.parent
portable_only = pytest.mark.skipif(not caps.portable, reason=f"run in the {PORTABLE_ENV}=1 sessions of "
                                   "test_the_upload_tests_pass_on_the_portable_path")

# The upload acceptance tests, in sessions run side by side (each waits on quiet periods far
# more than it computes): every test of these files, but those left out below.
SHARDS = [
    ["tests/test_upload_promises.py", "tests/test_tui_real_broker.py"],
    ["tests/test_upload_watch.py", "tests/test_upload_names.py", "tests/test_portable.py"],
    ["tests/test_end_to_end.py", "tests/test_upload_abort.py"],
]
LEFT_OUT = {
    # Close events: what they test does not exist without inotify (the portable_only tests
    # below say what holds instead).
    "tests/test_upload_watch.py::test_reading_the_watched_files_raises_no_events":
        "inotify's event filter (no open/close events asked for); polling has no such events",
    "tests/test_upload_promises.py::test_a_closed_file_is_due_when_its_settle_window_ends_not_at_a_tick":
        "the settle window after a close; see test_a_file_is_due_once_unchanged_for_the_quiet_period",
    "tests/test_upload_promises.py::test_a_file_written_in_passes_lands_whole_under_its_name_and_earlier_versions_are_kept":
        "passes 2 s apart are one version under the 3 s quiet period; see "
        "test_a_file_written_in_passes_lands_whole_when_polled",
    # The reconstructor's side (its portable writes are exercised by the round trip and the
    # uploader tests that rebuild what they send) and the producer's hold timer: nothing
    # platform-specific, and ~55 s together.
    "tests/test_end_to_end.py::test_two_reconstructors_share_the_work_exactly_once": "reconstructor side",
    "tests/test_end_to_end.py::test_sigkilled_reconstructor_resumes_without_partial_files": "reconstructor side",
    "tests/test_end_to_end.py::test_partition_moving_to_another_process_mid_file_loses_nothing": "reconstructor side",
    "tests/test_upload_abort.py::test_a_file_paused_mid_way_too_long_is_withdrawn_and_sent_again_whole_once_resumed":
        "the producer's hold timer, the same everywhere",
}
# Who may ask ctypes for a library in those sessions (asked, and refused).
REFUSED_AND_EXPECTED = {
    # watchdog probes for inotify when watchdog.observers is imported (as the polling
    # observer's package it must be); refused, it takes polling for its default instead.
    "watchdog.observers.inotify_c",
}


def inotify_descriptors() -> int:
    """inotify instances this process holds open (Linux: -1 where /proc says nothing)."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        return -1
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd) == "anon_inode:inotify"
        except OSError:
            continue  # (closed meanwhile)
    return count


# --- in every session ---------------------------------------------------------------------


def test_the_speed_ups_are_decided_in_one_place_and_the_environment_turns_them_off() -> None:
    linux = Caps(environ={}, platform="linux")
    assert linux.disk_threads and not linux.portable
    assert linux.direct_io == bool(getattr(os, "O_DIRECT", 0))
    for value in ("1", "true", "YES", " on "):
        forced = Caps(environ={PORTABLE_ENV: value}, platform="linux")
        assert forced.portable, value
        assert not (forced.inotify or forced.direct_io) and forced.disk_threads, value
        assert forced.describe() == f"portable path ({PORTABLE_ENV} set): no platform speed-ups"
    for value in ("", "0", "no"):
        assert not Caps(environ={PORTABLE_ENV: value}, platform="linux").portable, value
    for system in ("win32", "darwin", "freebsd14"):
        elsewhere = Caps(environ={}, platform=system)
        assert not elsewhere.inotify, system
    without = Caps(environ={WITHOUT_ENV: "direct_io, disk_threads"}, platform="linux")
    assert not (without.portable or without.direct_io or without.disk_threads)
    left = "speed-ups: inotify" if linux.inotify else "portable path: no platform speed-ups here"
    assert without.describe() == left


@pytest.mark.skipif(not caps.inotify, reason="inotify is not used here")
def test_inotify_refused_the_watcher_polls_instead_and_says_so(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-user inotify watch limit reached (a big tree, other programs watching):
    files still go, by the quiet period."""
    from watchdog.observers.inotify import InotifyObserver

    class Refused(InotifyObserver):
        def start(self) -> None:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(watch, "_inotify_observer", Refused)
    ready: list[str] = []
    sink = Recorder()
    watcher = watch.FolderWatcher(tmp_path, lambda _p, rel, _s, _m: ready.append(rel), sink, quiet_seconds=0.2)
    assert not watcher.use_polling
    watcher.start()
    try:
        write_random(tmp_path / "a.trc", 1000)
        wait_until(lambda: ready == ["a.trc"], "the file ready", timeout=30)
    finally:
        watcher.stop()
    assert watcher.use_polling and isinstance(watcher._observer, PollingObserver)
    [notice] = sink.of(Notice)
    assert notice.level == "warning" and "inotify watch limit reached" in notice.message, notice
    assert "a file goes once unchanged for 0.2 s" in notice.message


# Run where Windows' Python lacks what these name: the POSIX-only modules and os functions.
WITHOUT_POSIX = """
import os, sys, tempfile, time
from pathlib import Path
for name in ("fcntl", "resource", "termios"):
    sys.modules[name] = None  # (import fails)
for name in ("O_DIRECTORY", "O_NOFOLLOW", "O_DIRECT", "pread", "pwrite", "preadv", "pwritev"):
    if hasattr(os, name):
        delattr(os, name)
from msi_tui.engine import disk_io, watch
assert disk_io.O_DIRECT == 0 and disk_io.fcntl is None
import msi_tui.cli  # (the whole command line, the reconstructor's and the services' modules included)
ready = []
with tempfile.TemporaryDirectory() as folder:
    watcher = watch.FolderWatcher(Path(folder), lambda _p, rel, _s, _m: ready.append(rel), print, quiet_seconds=0.1)
    watcher.start()
    (Path(folder) / "a.trc").write_bytes(b"data")
    deadline = time.monotonic() + 30
    while not ready and time.monotonic() < deadline:
        time.sleep(0.05)
    watcher.stop()
print(ready)
"""


def test_the_watcher_and_the_shared_io_code_need_nothing_posix_only() -> None:
    """What the uploader's own modules need from the system, checked without what Windows
    lacks (crudely: the platform stays Linux, with those modules and functions taken away)."""
    result = subprocess.run([sys.executable, "-c", WITHOUT_POSIX], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={**os.environ, PORTABLE_ENV: "1"})
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "['a.trc']", result.stdout + result.stderr


@pytest.mark.kafka
@pytest.mark.timeout(400)
@pytest.mark.skipif(caps.portable, reason="runs the portable sessions (this is one)")
def test_the_upload_tests_pass_on_the_portable_path(kafka_bootstrap: str, tmp_path: Path) -> None:
    report = tmp_path / "ctypes.jsonl"
    env = {**os.environ, PORTABLE_ENV: "1", "MSI_TUI_TEST_BOOTSTRAP": kafka_bootstrap,
           "MSI_TUI_PORTABLE_GUARD": str(report),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests" / "portable_site"),
                                                       os.environ.get("PYTHONPATH")]))}
    deselect = [arg for nodeid in LEFT_OUT for arg in ("--deselect", nodeid)]
    sessions: list[tuple[Path, subprocess.Popen[bytes]]] = []
    deadline = time.monotonic() + 360
    failed = []
    try:
        for i, files in enumerate(SHARDS):
            log = tmp_path / f"session{i}.log"
            with open(log, "w") as out:  # (the child holds its own descriptor)
                sessions.append((log, subprocess.Popen(
                    [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider",
                     f"--basetemp={tmp_path / f'session{i}'}", *deselect, *files],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)))
        for log, session in sessions:
            try:
                code = session.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                code = None
            output = log.read_text(errors="replace")
            summary = output.strip().splitlines()[-1] if output.strip() else "(no output)"
            print(f"{PORTABLE_ENV}=1 session {log.stem}: {summary}")
            if code != 0 or " passed" not in summary:
                failed.append(f"--- {log.stem} ({'timed out' if code is None else f'exit {code}'}):\n{output[-6000:]}")
    finally:
        for _log, session in sessions:
            if session.poll() is None:  # (timed out, or this test interrupted): it and what it started
                os.killpg(session.pid, signal.SIGKILL)
                session.wait()
    entries = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    guarded = [e for e in entries if e["event"] == "guarded"]
    refused = {e["caller"] for e in entries if e["event"] == "refused"}
    if refused - REFUSED_AND_EXPECTED:
        failed.append(f"loaded a library through ctypes on the portable path: {refused - REFUSED_AND_EXPECTED}")
    if len(guarded) <= len(SHARDS) + 5:  # each session and each `python -m msi_tui` it ran
        failed.append(f"only {len(guarded)} processes guarded: {guarded}")
    assert not failed, "\n".join(failed)


# --- in the portable sessions only ----------------------------------------------------------


@portable_only
def test_the_watcher_polls_and_holds_no_inotify_descriptor(tmp_path: Path) -> None:
    ready: list[str] = []
    watcher = watch.FolderWatcher(tmp_path, lambda _p, rel, _s, _m: ready.append(rel), Recorder(), quiet_seconds=0.3)
    assert watcher.use_polling and isinstance(watcher._observer, PollingObserver)
    watcher.start()
    try:
        (tmp_path / "sub").mkdir()
        write_random(tmp_path / "sub" / "a.trc", 5000)
        wait_until(lambda: ready == ["sub/a.trc"], "the file ready", timeout=30)
        assert inotify_descriptors() <= 0
    finally:
        watcher.stop()


@portable_only
def test_a_file_is_due_once_unchanged_for_the_quiet_period_whatever_its_close(tmp_path: Path) -> None:
    """What stands in for the settle window: close events, where they come, change nothing."""
    ready: list[str] = []
    watcher = watch.FolderWatcher(tmp_path, lambda _p, rel, _s, _m: ready.append(rel), Recorder(),
                                  quiet_seconds=0.3, settle_seconds=0.01)
    path = tmp_path / "a.trc"
    path.write_bytes(b"x")
    for kind in ("created", "modified", "closed"):
        watcher._observe(path, kind)
    first = watcher._candidates["a.trc"].changed_at
    assert watcher._release_ready() == pytest.approx(first + 0.3)
    time.sleep(0.1)  # (so the next change is later than the first, on any clock)
    with open(path, "ab") as f:
        f.write(b"y")  # a change within the quiet period starts it over
    watcher._observe(path, "modified")
    due = watcher._release_ready()
    assert ready == [] and due == pytest.approx(watcher._candidates["a.trc"].changed_at + 0.3) and due > first + 0.3
    wait_until(lambda: time.monotonic() >= due, "the quiet period to end", every=0.01)
    assert watcher._release_ready() == float("inf") and ready == ["a.trc"]


@portable_only
@pytest.mark.kafka
def test_a_file_written_in_passes_lands_whole_when_polled(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    """test_upload_promises' passes, told apart by the quiet period: passes closer together
    go as one file, passes further apart than the polling interval and the quiet period as
    versions, the newest holding the name. Rebuilt here with plain file I/O."""
    from tests.test_upload_promises import passes_land_whole

    quiet = 0.5
    uploader = passes_land_whole(kafka_bootstrap, topic, tmp_path, quick_pause=0.1,
                                 slow_pause=watch.POLL_EVERY_S + quiet + 1.0, quiet_seconds=quiet)
    # (use_polling only ever turns on: polled after the run, polled throughout)
    assert uploader._watcher is not None and uploader._watcher.use_polling


@portable_only
def test_rebuilt_files_are_written_with_plain_file_io(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No O_DIRECT: an aligned run goes through the page cache like any other write."""
    def no_direct(*_: object) -> bool:
        raise AssertionError("O_DIRECT asked for on the portable path")

    monkeypatch.setattr(disk_io, "set_direct", no_direct)
    assert disk_io.O_DIRECT == 0
    content, chunk = os.urandom(3 << 20), 1 << 16  # (runs of 1 MiB: each on the page boundary)
    common = wire.file_headers("ab" * 16, "f.bin", len(content), chunk)
    meta = wire.decode(wire.end_headers(common, digest_of(content)), 1 << 30)
    path = tmp_path / "staged"
    a = Assembly(meta, 0, 0, os.open(path, os.O_RDWR | os.O_CREAT), path)
    a.expected_digest = meta.digest
    try:
        for index in range(meta.count):
            a.write(index, content[index * chunk:(index + 1) * chunk])
        assert a.verified() and path.read_bytes() == content
    finally:
        os.close(a.fd)
