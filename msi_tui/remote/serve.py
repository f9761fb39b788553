"""`msi-tui upload|reconstruct DIR --service`: the headless run, served on a socket.

The command line's headless path runs unchanged (console lines, check and quit on standard
input, SIGTERM drains); `--service` adds a `ServiceHost` around it. `--background` starts
that same command as a process of its own, in a session of its own (no terminal, so closing
the terminal or losing SSH does not end it), and returns once it answers on its socket.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from msi_tui import __version__
from msi_tui.engine.config import ClusterConfig
from msi_tui.errors import OperatorError
from msi_tui.remote.names import check_name, default_name, services_dir, socket_path
from msi_tui.remote.protocol import ServiceInfo
from msi_tui.remote.server import ServiceHost

BACKGROUND_START_S = 180.0  # a first start may wait for a broker for a while


def service_name(args: argparse.Namespace) -> str:
    name = getattr(args, "name", None)
    return check_name(name) if name else default_name(args.command, args.folder)


def open_host(args: argparse.Namespace, say: Callable[[str], None]) -> ServiceHost | None:
    """The service's socket, bound before anything starts; None without --service."""
    if not getattr(args, "service", False):
        return None
    return ServiceHost(service_name(args), args.command, say=say)


def start_served(service: Any, host: ServiceHost | None, args: argparse.Namespace, config: ClusterConfig) -> None:
    """`service.start()`; with --service, clients are answered from before it (they see it
    starting), and a start that fails is their last news before the socket goes."""
    if host is not None:
        folder = getattr(service, "folder", None) if args.command == "upload" else service.output_dir
        host.serve(service, ServiceInfo(
            name=host.name, kind=args.command, pid=os.getpid(), started_at=time.time(),
            cluster_name=config.name, bootstrap=config.bootstrap, topic=args.topic,
            folder=str(Path(folder).absolute()) if folder is not None else "",
            group_id=getattr(service, "group_id", ""), version=__version__))
    try:
        service.start()
    except BaseException as exc:
        if host is not None:
            host.close(died=f"could not start: {exc}")
        raise
    if host is None:
        return
    host.mark_started()
    host.say(f"serving as {host.name} on {host.path}: `msi-tui attach {host.name}` opens the app on it, "
        f"`msi-tui stop {host.name}` stops it")


def close_host(host: ServiceHost | None) -> None:
    if host is not None:
        host.close()


def start_in_background(args: argparse.Namespace) -> int:
    """Run this very command (less --background) as a detached process; return once its
    socket answers, or with its error when it could not start."""
    from msi_tui.remote.client import ServiceConnection

    name = service_name(args)
    path = socket_path(name)
    argv = [a for a in args.argv if a != "--background"]
    if "--service" not in argv:  # (--background implies it)
        argv.append("--service")
    if not getattr(args, "name", None):
        argv += ["--name", name]
    folder = services_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    out_path = folder / f"{name}.out"
    with open(out_path, "ab") as out:
        os.chmod(out_path, 0o600)
        process = subprocess.Popen([sys.executable, "-m", "msi_tui", *argv], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    deadline = time.monotonic() + BACKGROUND_START_S
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise OperatorError(f"service {name} did not start (exit status {code}):\n" + _tail(out_path))
        if path.exists():
            try:
                connection = ServiceConnection.open(path, events=False, snapshot_every=0, timeout=2.0,
                                                    client="msi-tui --background")
            except OperatorError:
                pass
            else:
                snap = connection.read_until_snapshot(2.0)
                connection.sock.close()
                if connection.info.pid == process.pid and snap is not None and snap.state != "starting":
                    commands = ((f"msi-tui attach {name}", "opens the app on it (F10 detaches, it keeps running)"),
                                ("msi-tui status", "lists the running services"),
                                (f"msi-tui stop {name}", "drains and stops it"))
                    width = max(len(command) for command, _ in commands) + 3
                    print(f"service {name} runs in the background (pid {process.pid}, output in {out_path})")
                    for command, what in commands:
                        print(f"  {command:<{width}}{what}")
                    return 0
        time.sleep(0.2)
    raise OperatorError(f"service {name} did not answer in {BACKGROUND_START_S:g} s (pid {process.pid}, "
                        f"output in {out_path}); it may still be starting: `msi-tui status`")


def _tail(path: Path, lines: int = 10) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("  " + line for line in text[-lines:])
