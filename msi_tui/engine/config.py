"""Cluster config files: [broker], [producer] and [consumer] sections of librdkafka keys.

A config is named (`tutorial_cluster`) or given as a path. Values may name environment
variables (`$KAFKA_PASSWORD` or `${KAFKA_PASSWORD}`), so secrets stay out of the file.
Files written for OpenMSIStream work unchanged: its serializer keys are not librdkafka's
and are dropped.
"""

from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from msi_tui.errors import OperatorError
from msi_tui.paths import user_config_dir

DEFAULT_CONFIG = "tutorial_cluster"
SECTIONS = ("broker", "producer", "consumer")
# Keys OpenMSIStream configs carry for its own (de)serializers; librdkafka would reject them.
_FOREIGN_KEYS = frozenset(
    ("key.serializer", "value.serializer", "key.deserializer", "value.deserializer")
)
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class ClusterConfig:
    """A resolved cluster config: where it came from and its three sections."""

    name: str
    source: str
    broker: dict[str, str] = field(default_factory=dict)
    producer: dict[str, str] = field(default_factory=dict)
    consumer: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return self.broker.get("bootstrap.servers", "")

    def with_bootstrap(self, servers: str) -> ClusterConfig:
        broker = dict(self.broker, **{"bootstrap.servers": servers})
        return ClusterConfig(self.name, self.source, broker, self.producer, self.consumer)


def _search_dirs() -> list[Path]:
    dirs = []
    if env_dir := os.environ.get("MSI_TUI_CONFIG_DIR"):
        dirs.append(Path(env_dir).expanduser())
    dirs.append(user_config_dir())
    return dirs


def find_config(name_or_path: str) -> tuple[str, str]:
    """Return (source description, file text) for a config name or path.

    Lookup order: an existing path; NAME or NAME.config in $MSI_TUI_CONFIG_DIR, then in the
    user config dir; then the configs shipped in the package.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return str(path), _read(path)
    if "/" in name_or_path or os.sep in name_or_path:
        raise OperatorError(f"config file not found: {name_or_path}")
    for folder in _search_dirs():
        for candidate in (folder / name_or_path, folder / f"{name_or_path}.config"):
            if candidate.is_file():
                return str(candidate), _read(candidate)
    shipped = resources.files("msi_tui") / "configs" / f"{Path(name_or_path).stem}.config"
    if shipped.is_file():
        return f"built-in {shipped.name}", shipped.read_text(encoding="utf-8")
    searched = ", ".join(str(d) for d in _search_dirs())
    raise OperatorError(
        f"no cluster config named {name_or_path!r} (looked for a file, then in {searched}, "
        "then the built-in configs)"
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OperatorError(f"cannot read config file {path}: {exc.strerror}") from None


def expand_env(value: str, where: str) -> str:
    """Replace $NAME / ${NAME} with the environment's value; unset names are an error."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in os.environ:
            raise OperatorError(f"environment variable ${name} is not set (needed by {where})")
        return os.environ[name]

    return _VAR.sub(sub, value)


def _normalise(value: str) -> str:
    # Python-style booleans are common in hand-written configs; librdkafka wants lowercase.
    return value.lower() if value in ("True", "False") else value


class _CaseKeeping(configparser.ConfigParser):
    """Keys as written: librdkafka keys are case sensitive."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def parse_config(text: str, name: str, source: str) -> ClusterConfig:
    """Parse config text; raises OperatorError naming the file and problem."""
    parser = _CaseKeeping(interpolation=None, inline_comment_prefixes=(" #", " ;"))
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        raise OperatorError(f"config {source} is not a valid config file: {exc.message}") from None
    unknown = [s for s in parser.sections() if s not in SECTIONS and s != "cluster"]
    if unknown:
        raise OperatorError(
            f"config {source} has unknown section [{unknown[0]}] (known: broker, producer, consumer)"
        )
    sections: dict[str, dict[str, str]] = {s: {} for s in SECTIONS}
    for section in SECTIONS:
        if not parser.has_section(section):
            continue
        for key, raw in parser.items(section):
            if key in _FOREIGN_KEYS:
                continue
            sections[section][key] = _normalise(expand_env(raw.strip(), f"[{section}] {key} in {source}"))
    return ClusterConfig(name, source, **sections)


def load_config(name_or_path: str = DEFAULT_CONFIG, bootstrap: str | None = None) -> ClusterConfig:
    """Find, parse and resolve a cluster config; `bootstrap` overrides its servers."""
    source, text = find_config(name_or_path)
    config = parse_config(text, Path(name_or_path).stem, source)
    if bootstrap:
        config = config.with_bootstrap(bootstrap)
    if not config.bootstrap:
        raise OperatorError(f"config {source} has no bootstrap.servers in [broker] (or give --bootstrap)")
    return config
