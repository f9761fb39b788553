"""Where msi-tui keeps its state, cache and user configs.

Each location can be moved with an environment variable, which the tests use to keep
every run inside a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "msi-tui"


def _dir(env_var: str, default: str) -> Path:
    value = os.environ.get(env_var)
    return Path(value).expanduser() if value else Path(default)


def state_dir() -> Path:
    """Broker data, logs, the upload registry: `$MSI_TUI_STATE_DIR` or the user state dir."""
    return _dir("MSI_TUI_STATE_DIR", platformdirs.user_state_dir(APP_NAME))


def cache_dir() -> Path:
    """Downloaded Kafka jars: `$MSI_TUI_CACHE_DIR` or the user cache dir."""
    return _dir("MSI_TUI_CACHE_DIR", platformdirs.user_cache_dir(APP_NAME))


def user_config_dir() -> Path:
    """Cluster config files the operator wrote: the user config dir."""
    return Path(platformdirs.user_config_dir(APP_NAME))
