"""Command line: parses options (msi_tui.options), then runs the app or the headless console.

Every option takes the hyphen spelling and the seed programs' underscore spelling
(`--n-threads` / `--n_threads`), so existing scripts keep working.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from msi_tui.engine.config import ClusterConfig, load_config
from msi_tui.engine.reconstruct import Reconstructor
from msi_tui.engine.upload import Uploader
from msi_tui.engine.upload_settings import UploadSettings
from msi_tui.errors import OperatorError
from msi_tui.launch import run_app_command
from msi_tui.logfile import log_to_file
from msi_tui.options import build_parser, check_chunk_size, reconstruct_settings, upload_settings
from msi_tui.paths import state_dir
from msi_tui.remote.serve import close_host, open_host, start_served


def _log_to_file() -> Path:
    return log_to_file(state_dir() / "msi-tui.log")


def _cluster(args: argparse.Namespace) -> ClusterConfig:
    return load_config(args.config, args.bootstrap)


def _wants_app(args: argparse.Namespace) -> bool:
    """The app needs a terminal; in CI or with redirected output we run headless instead."""
    if getattr(args, "headless", False) or getattr(args, "service", False):
        return False
    if os.environ.get("CI") or not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("msi-tui: no terminal here, running headless", file=sys.stderr)
        return False
    return True


def run(args: argparse.Namespace) -> int:
    from msi_tui.console import Console

    if args.command == "broker":
        from msi_tui.broker.command import run_broker_command

        return run_broker_command(args.action, args.port, nodes=args.nodes)
    if args.command in ("attach", "status", "stop"):  # on running services (msi_tui.remote)
        from msi_tui.remote.control import run_control

        return run_control(args, _log_to_file)
    if args.command != "reconstruct":  # every other command sends files
        check_chunk_size(getattr(args, "chunk_size", UploadSettings.chunk_size), _cluster(args))
    log_path = _log_to_file()
    if args.command in (None, "demo"):
        return run_app_command(args, log_path)
    if args.command == "upload" and not args.folder.is_dir():
        if args.folder.is_file():  # the two commands are easily swapped
            raise OperatorError(f"{args.folder} is a file, not a folder to watch: "
                                f"`msi-tui upload-file {args.folder}` sends it")
        raise OperatorError(f"folder to watch does not exist: {args.folder}")
    if args.command == "upload-file" and not args.file.is_file():
        if args.file.is_dir():
            raise OperatorError(f"{args.file} is a folder: `msi-tui upload {args.file}` sends the files in it")
        raise OperatorError(f"no such file: {args.file}")
    if getattr(args, "background", False):
        from msi_tui.remote.serve import start_in_background

        return start_in_background(args)
    if args.command in ("upload", "reconstruct") and _wants_app(args):
        return run_app_command(args, log_path)

    console = Console()
    config = _cluster(args)
    host = open_host(args, console.say)  # --service: its socket, taken before anything starts
    sink = host.wrap(console.sink) if host else console.sink
    if args.command == "reconstruct":
        service = Reconstructor(config, reconstruct_settings(args, args.folder), sink)
        start_served(service, host, args, config)
        console.say(f"reconstructing files from topic {args.topic} at {config.bootstrap} into {args.folder} "
                    f"({args.n_threads} threads, group {args.group_id}); type check or quit")
        console.run(service, args.update_seconds)
        close_host(host)
        return 0
    folder = args.folder if args.command == "upload" else None
    uploader = Uploader(config, upload_settings(args, folder), sink)
    start_served(uploader, host, args, config)
    if folder is not None:
        console.say(f"watching {folder} for files to send to topic {args.topic} at {config.bootstrap}; "
                    "type check or quit")
        console.run(uploader, args.update_seconds)
    else:
        uploader.enqueue_file(args.file)
        console.run(uploader, -1, until_idle=True)
    close_host(host)
    snap = uploader.snapshot()
    if uploader.died is not None:  # (said as an error when it happened)
        return 1
    return 0 if snap.files_failed == 0 and snap.files_queued == 0 and snap.pending_deliveries == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # (--background runs them again)
    try:
        return run(args)
    except OperatorError as exc:
        print(f"msi-tui: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("msi-tui: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
