"""Where services listen and what they are called.

Each service has a name (`upload-outbox`, `reconstruct-inbox`, or `--name`) and, while it
runs, a Unix socket `<state dir>/services/<name>.sock` (mode 0600, in a folder of mode
0700) and a lock file `<name>.lock` it holds for its whole life.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from msi_tui.errors import OperatorError
from msi_tui.paths import state_dir

SOCKET_SUFFIX = ".sock"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL (Linux)


def services_dir() -> Path:
    return state_dir() / "services"


def check_name(name: str) -> str:
    """A service name: letters, digits, '.', '_' and '-', at most 64, not starting with a sign."""
    if not NAME_RE.fullmatch(name):
        raise OperatorError(f"service name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', "
                            "starting with a letter or digit")
    return name


def default_name(kind: str, folder: Path | None) -> str:
    """`<kind>-<folder's name>`, reduced to the characters a name may have."""
    base = Path(os.path.abspath(folder)).name if folder is not None else ""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "root"
    return f"{kind}-{base}"[:64].rstrip("-.")


def socket_path(name: str) -> Path:
    path = services_dir() / f"{check_name(name)}{SOCKET_SUFFIX}"
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise OperatorError(f"the socket path {path} is longer than a Unix socket allows ({MAX_SOCKET_PATH} "
                            "bytes): use a shorter --name or a shorter MSI_TUI_STATE_DIR")
    return path


def lock_path(name: str) -> Path:
    return services_dir() / f"{check_name(name)}.lock"


def resolve(name_or_path: str) -> Path:
    """A service's socket from its name, or a socket path given as is (with a '/')."""
    if "/" in name_or_path:
        return Path(name_or_path).expanduser()
    return socket_path(name_or_path)


def listed_sockets() -> list[Path]:
    """The sockets in the services folder, by name (running or left by a killed service)."""
    folder = services_dir()
    try:
        return sorted(p for p in folder.iterdir() if p.name.endswith(SOCKET_SUFFIX))
    except FileNotFoundError:
        return []
    except PermissionError:
        raise OperatorError(f"cannot list {folder}: permission denied (the services belong to "
                            "another user: run as that user)") from None
