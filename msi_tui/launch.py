"""Builds the services for the full-screen app and runs it (kept apart so the headless
path never imports Textual)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from msi_tui.engine.config import ClusterConfig, load_config
from msi_tui.engine.reconstruct import Reconstructor
from msi_tui.engine.upload import Uploader
from msi_tui.options import reconstruct_settings, upload_settings

if TYPE_CHECKING:
    from msi_tui.tui.context import AppContext, PaneName

LOCAL_BOOTSTRAP = "127.0.0.1:9092"
DEMO_FILES = {
    "welcome.txt": b"msi-tui demo: files dropped in outbox/ arrive, verified, in inbox/.\n",
    "scope/C1--trace--00001.trc": bytes(range(256)) * 600,
}


def ensure_local_broker(config: ClusterConfig, say=print) -> None:
    """Start the embedded local broker when the config points at it and nothing answers."""
    if config.bootstrap != LOCAL_BOOTSTRAP:
        return
    from msi_tui.broker.local import LocalBroker

    broker = LocalBroker(port=9092)
    if not broker.status().answering:
        say("starting the local Kafka broker (the first start downloads its jars, about 45 MB)...")
        broker.start()


def prepare_demo(folder: Path) -> tuple[Path, Path]:
    """Create FOLDER/outbox and FOLDER/inbox, with a few files to send on a first run."""
    outbox, inbox = folder / "outbox", folder / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    if not outbox.exists():
        for rel, data in DEMO_FILES.items():
            path = outbox / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return outbox, inbox


def run_app_command(args: argparse.Namespace, log_path: Path) -> int:
    """`msi-tui`, `msi-tui demo`, and `msi-tui upload|reconstruct DIR` with a terminal."""
    from msi_tui.tui.app import run_app
    from msi_tui.tui.context import AppContext
    from msi_tui.tui.event_buffer import EventBuffer

    config = load_config(args.config, args.bootstrap)
    events = EventBuffer()
    uploader = reconstructor = None
    pane: PaneName | None = None
    command = args.command or "demo"
    if command == "demo":
        ensure_local_broker(config)
        # Absolute: the panes, the log and the exit summary name folders the operator can find.
        outbox, inbox = prepare_demo(getattr(args, "folder", Path("msi-tui-demo")).absolute())
        uploader = Uploader(config, upload_settings(args, outbox), events)
        reconstructor = Reconstructor(config, reconstruct_settings(args, inbox, group_id="msi-tui-demo"), events)
    elif command == "upload":
        uploader = Uploader(config, upload_settings(args, args.folder), events)
        pane = "upload"
    else:
        reconstructor = Reconstructor(config, reconstruct_settings(args, args.folder), events)
        pane = "reconstruct"
    context = AppContext(cluster_name=config.name, bootstrap=config.bootstrap, topic=args.topic,
                         uploader=uploader, reconstructor=reconstructor, events=events,
                         initial_pane=pane, log_path=log_path)
    return run_app(context)


def attached_context(names: list[str], log_path: Path | None, **knobs: object) -> tuple[AppContext, list]:
    """The app's context on running services (`names`, or every running one), through
    proxies of them (msi_tui.remote.proxies), and the proxies; events flow from now on."""
    from msi_tui.remote.discovery import open_for_attach
    from msi_tui.remote.proxies import RemoteReconstructor, RemoteUploader, proxy_for
    from msi_tui.tui.context import AppContext
    from msi_tui.tui.event_buffer import EventBuffer

    events = EventBuffer()
    services = [proxy_for(c) for c in open_for_attach(names, events)]
    for service in services:
        service.connection.start()
    uploader = next((s for s in services if isinstance(s, RemoteUploader)), None)
    reconstructor = next((s for s in services if isinstance(s, RemoteReconstructor)), None)
    infos = [s.info for s in services]
    joined = lambda values: " | ".join(dict.fromkeys(values))  # (one value when they agree)
    only: PaneName | None = None if len(services) > 1 else ("upload" if uploader is not None else "reconstruct")
    context = AppContext(cluster_name=joined(i.cluster_name for i in infos),
                         bootstrap=joined(i.bootstrap for i in infos), topic=joined(i.topic for i in infos),
                         uploader=uploader, reconstructor=reconstructor, events=events, initial_pane=only,
                         log_path=log_path, **knobs)  # type: ignore[arg-type]
    return context, services


def run_attach_command(args: argparse.Namespace, log_path: Path) -> int:
    """`msi-tui attach [NAME ...]`: the app on running services; detaching leaves them running."""
    from msi_tui.remote.app import run_attached

    context, services = attached_context(args.names, log_path)
    code, app = run_attached(context, services)
    for service in services:
        if service.gone:
            print(f"{service.name}: {service.gone}")
        elif app.detached:
            print(f"detached from {service.name}; it keeps running: `msi-tui attach {service.name}` comes back, "
                  f"`msi-tui stop {service.name}` stops it")
    return code
