"""The command line: options, their checks and defaults, and the settings they make.

Every option keeps the seed programs' spelling with underscores as an alias, and a value out
of range is refused by argparse with the option named, the range, and the value given.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from msi_tui import __version__
from msi_tui.engine import digest
from msi_tui.engine.config import DEFAULT_CONFIG, ClusterConfig
from msi_tui.engine.followup import Cleanup
from msi_tui.engine.kafka_clients import RECORD_ALLOWANCE, chunk_size_limit
from msi_tui.engine.output import CONFLICT_POLICIES
from msi_tui.engine.reconstruct import ReconstructSettings
from msi_tui.engine.upload_settings import UploadSettings
from msi_tui.engine.watch import FileFilter
from msi_tui.engine.wire import WireError, check_source, is_power_of_two
from msi_tui.errors import OperatorError

# One place for every default: the settings classes (the seed programs' defaults).
_UP = UploadSettings()
_RE = ReconstructSettings(output_dir=Path())  # (the folder has no default: the command line names it)
MAX_THREADS = 64  # thousands of threads ran out of file descriptors and went on with dead workers


class _Parser(argparse.ArgumentParser):
    """An option refused at start is one line on stderr (no usage block), exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# Option value checks: argparse names the option, the message says the range and the value.
def _whole_number(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number{what} (got {text!r})") from None


def _power_of_two(text: str) -> int:
    value = _whole_number(text, " of bytes")
    if not is_power_of_two(value):
        raise argparse.ArgumentTypeError(f"must be a nonzero power of two such as 16384 (got {value})")
    return value


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number from low to high (no upper bound when high is None)."""
    def check(text: str) -> int:
        value = _whole_number(text, "")
        if value < low or (high is not None and value > high):
            wanted = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {value})")
        return value
    return check


_positive = _whole(1)


def _seconds_check(ok: Callable[[float], bool], wanted: str) -> Callable[[str], float]:
    """A finite number of seconds that `ok` accepts; `wanted` says what is accepted."""
    def check(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and ok(value)):
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text if math.isfinite(value) else repr(text)})")
        return value
    return check


_seconds = _seconds_check(lambda v: v > 0 or v == -1, "a positive number of seconds, or -1 to turn it off")
_quiet_seconds = _seconds_check(lambda v: v >= 0, "a number of seconds, 0 or more")
_positive_seconds = _seconds_check(lambda v: v > 0, "a positive number of seconds")


def _group_id(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"must name a consumer group, not be empty or only spaces (got {text!r})")
    return text


def _source(text: str) -> str:
    try:
        return check_source(text)
    except WireError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (got {text!r})") from None


def _largest_chunk(config: ClusterConfig) -> int:
    """The largest power of two one record carries with these settings (0: none does)."""
    limit = chunk_size_limit(config)[0]
    return 1 << (limit.bit_length() - 1) if limit > 0 else 0


def check_chunk_size(chunk_size: int, config: ClusterConfig) -> None:
    """Refuse, before any connection, a chunk that one Kafka record cannot carry with its headers."""
    limit, setting = chunk_size_limit(config)
    if chunk_size > limit:
        raise OperatorError(f"--chunk-size {chunk_size} is more than one Kafka record carries: at most {limit} "
                            f"bytes ({setting}, less {RECORD_ALLOWANCE} for headers), so {_largest_chunk(config)} "
                            f"or less")


def _opt(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """Add --some-name with its seed spelling --some_name as an alias."""
    flags = [f"--{name}"] + ([f"--{name.replace('-', '_')}"] if "-" in name else [])
    parser.add_argument(*flags, dest=name.replace("-", "_"), **kwargs)


def _common(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """Options every command takes. The top-level parser holds the defaults; a command's
    parser only records what was typed after it, so `msi-tui --topic T upload D` works too."""
    default = (lambda value: value) if top else (lambda _value: argparse.SUPPRESS)
    _opt(parser, "config", default=default(DEFAULT_CONFIG), metavar="NAME|PATH",
         help=f"cluster config: a file, or a name looked up in $MSI_TUI_CONFIG_DIR, the user config dir, "
              f"then the built-in configs (default: {DEFAULT_CONFIG}, the local broker)")
    _opt(parser, "bootstrap", default=default(None), metavar="HOST:PORT",
         help="bootstrap servers, overriding the config's")
    parser.add_argument("--topic", "--topic-name", "--topic_name", dest="topic", default=default(_UP.topic),
                        help=f"Kafka topic the files travel through (default: {_UP.topic})")
    _opt(parser, "n-threads", type=_whole(1, MAX_THREADS), default=default(_UP.n_threads), metavar="N",
         help=f"parallel threads, 1 to {MAX_THREADS}: files sent at once, or files rebuilt at once "
              f"(default: {_UP.n_threads})")
    _opt(parser, "partitions", type=_positive, default=default(_UP.partitions), metavar="N",
         help="partitions when the topic has to be created, at least 1 (default: 5)")


def _upload_options(parser: argparse.ArgumentParser) -> None:
    _opt(parser, "chunk-size", type=_power_of_two, default=_UP.chunk_size, metavar="BYTES",
         help=f"chunk size in bytes, a nonzero power of two that one Kafka record carries with its headers: "
              f"at most {_largest_chunk(ClusterConfig('', ''))} with the default producer settings, less when the "
              f"cluster config lowers message.max.bytes (default: %(default)s)")
    _opt(parser, "queue-max-size", type=_positive, default=_UP.queue_max_size, metavar="N",
         help="chunks allowed to wait for delivery at once, at least 1; backpressure beyond (default: %(default)s)")
    _opt(parser, "source", type=_source, default=_UP.source, metavar="NAME",
         help="the name this uploader's files carry, shown at the destination and used by reconstruct "
              "--by-source (default: this host's name, %(default)s)")
    parser.add_argument("--digest", choices=digest.ALGORITHMS, default=_UP.digest,
                        help="whole-file digest the reconstructor verifies: xxh128 (XXH3-128, the fastest; check a "
                             "file by hand with xxhsum -H2) or sha256 (sha256sum) (default: %(default)s)")


def _update_seconds(parser: argparse.ArgumentParser) -> None:
    _opt(parser, "update-seconds", type=_seconds, default=30.0, metavar="S",
         help="print a '.' still-alive mark every S seconds (positive), -1 for never (default: %(default)g)")


def _headless(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--headless", action="store_true",
                        help="print lines instead of opening the full-screen app (services, scripts)")


def _service_options(parser: argparse.ArgumentParser) -> None:
    """--service and its companions (docs/services.md)."""
    parser.add_argument("--service", action="store_true",
                        help="run headless and serve the app on a Unix socket in the state dir: `msi-tui attach` "
                             "opens the app on it (and leaves it running), `msi-tui status` lists it, "
                             "`msi-tui stop NAME` stops it")
    parser.add_argument("--name", type=_service_name, metavar="NAME",
                        help="with --service: the service's name (default: the command and the folder's name, "
                             "e.g. upload-outbox)")
    parser.add_argument("--background", action="store_true",
                        help="with --service: start it as a process of its own that outlives this terminal "
                             "and the SSH session, and return once it answers")


def _service_name(text: str) -> str:
    from msi_tui.remote.names import check_name

    try:
        return check_name(text)
    except OperatorError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _remote_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("attach", allow_abbrev=False,
                            help="open the app on running services (--service); F10 detaches and leaves them running")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="services by name (or socket path): one upload and/or one reconstruct service "
                        "(default: every running service)")
    p = commands.add_parser("status", allow_abbrev=False,
                            help="list the running services: kind, folder, topic, state, counts, socket")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    p = commands.add_parser("stop", allow_abbrev=False, help="drain and stop a running service")
    p.add_argument("name", metavar="NAME", help="the service's name (`msi-tui status` lists them) or socket path")
    p.add_argument("--force", action="store_true", help="stop now, giving up chunks not yet delivered")


def _watch_options(parser: argparse.ArgumentParser) -> None:
    _opt(parser, "use-polling", action="store_true",
         help="judge files complete by a quiet period instead of close events (network shares)")
    _opt(parser, "quiet-seconds", type=_quiet_seconds, default=_UP.quiet_seconds, metavar="S",
         help="with polling, how long size and mtime must stay unchanged, 0 or more (default: %(default)g)")
    _opt(parser, "settle-seconds", type=_quiet_seconds, default=_UP.settle_seconds, metavar="S",
         help="a file is sent once its writer closed it and left it alone this long, 0 or more; a writer that "
              "opens it again sooner (another pass) is waited for (default: %(default)g)")
    _opt(parser, "after-verified", nargs="+", default=["keep"], metavar="ACTION",
         help="keep | move DIR | delete: once a reconstructor's receipt says a file was published and verified, "
              "keep it here, move it under DIR, or delete it; only that very version, once unchanged for a "
              "minute (default: keep)")
    _opt(parser, "receipt-timeout", type=_positive_seconds, default=_UP.receipt_timeout_s, metavar="S",
         help="warn when files delivered over S seconds ago have no receipt from a reconstructor "
              "(default: %(default)g)")
    _opt(parser, "include", action="append", default=[], metavar="GLOB",
         help="upload only files matching GLOB (repeatable; default: every file)")
    _opt(parser, "exclude", action="append", default=[], metavar="GLOB",
         help="skip files matching GLOB (repeatable); dot files and ~$*, *.tmp, *.part are always skipped")
    _opt(parser, "resend", action="store_true",
         help="send every file again, even those the registry says were sent")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="msi-tui",
        allow_abbrev=False,  # a typo must be an error, not silently another option
        description="Move instrument data files through Apache Kafka, byte for byte. "
                    "Without a command, opens the full-screen app with both panes.",
    )
    parser.add_argument("--version", action="version", version=f"msi-tui {__version__}")
    _common(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = commands.add_parser("upload-file", allow_abbrev=False,
                            help="send one file and wait until every chunk is delivered")
    p.add_argument("file", type=Path, help="the file to send")
    _common(p)
    _upload_options(p)

    p = commands.add_parser("upload", allow_abbrev=False,
                            help="send every file in a folder tree, and every file added later")
    p.add_argument("folder", type=Path, help="the folder to watch (recursively)")
    _common(p)
    _upload_options(p)
    _update_seconds(p)
    _watch_options(p)
    _headless(p)
    _service_options(p)

    p = commands.add_parser("reconstruct", allow_abbrev=False, help="rebuild files from the topic into a folder")
    p.add_argument("folder", type=Path, help="output folder (created when missing)")
    _common(p)
    _update_seconds(p)
    _opt(p, "group-id", type=_group_id, default=_RE.group_id, metavar="ID",
         help="consumer group; the same id on several machines shares the work (default: %(default)s)")
    _opt(p, "on-conflict", choices=CONFLICT_POLICIES, default=_RE.on_conflict,
         help="when a different file already has the name: keep-both saves the new one as 'name (2).ext', "
              "rename-old moves the older one there instead; neither ever deletes (default: %(default)s)")
    _opt(p, "buffered-writes", action="store_true",
         help="write rebuilt files through the page cache instead of directly (O_DIRECT): faster on disks "
              "that direct writes, one at a time per thread, do not keep busy (some virtual disks)")
    _opt(p, "abandon-after", type=_positive_seconds, default=_RE.abandon_after_s, metavar="S",
         help="end an upload whose records stopped while its partition moved on for S seconds of record "
              "time (its uploader is gone); its staged file goes and its offset is released (default: %(default)g)")
    _opt(p, "by-source", action="store_true",
         help="lay files out per source, as FOLDER/<source>/<path> (see upload --source)")
    _headless(p)
    _service_options(p)

    p = commands.add_parser("demo", allow_abbrev=False, help="start the local broker and open the app on demo folders")
    p.add_argument("folder", type=Path, nargs="?", default=Path("msi-tui-demo"),
                   help="demo folder: files dropped in FOLDER/outbox arrive in FOLDER/inbox (default: %(default)s)")
    _common(p)
    _opt(p, "source", type=_source, default=_UP.source, metavar="NAME",
         help="the name the demo's files carry (default: this host's name, %(default)s)")
    _watch_options(p)

    p = commands.add_parser("broker", allow_abbrev=False,
                            help="run the local Apache Kafka broker (or a local cluster with --nodes 3)")
    p.add_argument("action", choices=("start", "stop", "status"))
    _opt(p, "port", type=_positive, default=9092,
         help="listener port; with --nodes N the brokers use PORT..PORT+N-1 and the controller the next "
              "(default: %(default)s)")
    _opt(p, "nodes", type=_positive, default=None, metavar="N",
         help="start N brokers plus a dedicated controller, replication min(3, N) (default: 1); "
              "stop and status without it act on whichever is running")
    _remote_commands(commands)
    return parser


def upload_settings(args: argparse.Namespace, folder: Path | None) -> UploadSettings:
    """UploadSettings from parsed options (watch options only exist for `upload`)."""
    given = lambda name: getattr(args, name, getattr(_UP, name))
    return UploadSettings(
        topic=args.topic, n_threads=args.n_threads, chunk_size=given("chunk_size"),
        queue_max_size=given("queue_max_size"), partitions=args.partitions, folder=folder,
        file_filter=FileFilter(tuple(getattr(args, "include", ())), tuple(getattr(args, "exclude", ()))),
        use_polling=given("use_polling"), quiet_seconds=given("quiet_seconds"),
        use_registry=not getattr(args, "resend", False), digest=given("digest"), source=given("source"),
        settle_seconds=given("settle_seconds"), cleanup=_cleanup(getattr(args, "after_verified", ["keep"])),
        receipt_timeout_s=getattr(args, "receipt_timeout", _UP.receipt_timeout_s),
    )


def _cleanup(words: list[str]) -> Cleanup:
    """--after-verified keep | move DIR | delete."""
    match words:
        case ["keep"]:
            return Cleanup()
        case ["delete"]:
            return Cleanup("delete")
        case ["move", folder]:
            return Cleanup("move", Path(folder))
    raise OperatorError(f"--after-verified takes keep, move DIR or delete (got {' '.join(words)!r})")


def reconstruct_settings(args: argparse.Namespace, output_dir: Path,
                         group_id: str | None = None) -> ReconstructSettings:
    """ReconstructSettings from parsed options."""
    return ReconstructSettings(
        output_dir=output_dir, topic=args.topic, n_threads=args.n_threads,
        group_id=group_id or args.group_id, partitions=args.partitions,
        on_conflict=getattr(args, "on_conflict", _RE.on_conflict),
        direct_writes=not getattr(args, "buffered_writes", False),
        abandon_after_s=getattr(args, "abandon_after", _RE.abandon_after_s),
        by_source=getattr(args, "by_source", False),
    )
