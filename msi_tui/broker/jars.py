"""The jars of the local Kafka broker: pinned in `jars.lock`, fetched once from Maven Central, cached.

`jars.lock` lists the broker classpath (the runtime closure of `org.apache.kafka:kafka_2.13`
and the log4j binding, see `pom.xml`) with the size and SHA-256 of each jar;
`scripts/pin_broker_jars.py` regenerates it with Maven when the Kafka version moves. At run
time neither Maven nor Java is needed to fetch them: each missing jar is downloaded over HTTPS
with urllib into a temp file, checked against its SHA-256 and renamed into
`<cache>/kafka-<version>/libs`. A marker holding the digest of `jars.lock` is written last;
later starts compare only it and the jar sizes, so they need no network and no hashing.
`$MSI_TUI_MAVEN_REPO` names a Maven mirror to fetch from instead (the hashes still apply).
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import io
import os
import re
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from msi_tui import paths
from msi_tui.errors import OperatorError

MAVEN_CENTRAL = "https://repo1.maven.org/maven2/"
LOCK_PATH = Path(__file__).with_name("jars.lock")

_MARKER = ".msi-tui-complete"
_PART_PREFIX = ".part-"
_CHUNK = 256 * 1024
_TIMEOUT_S = 60.0
_ATTEMPTS = 3
_RETRY_PAUSE_S = 2.0
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Errors of the connection, worth a retry; other OSErrors come from the local disk.
_NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, ssl.SSLError,
                   http.client.HTTPException)


@dataclass(frozen=True)
class PinnedJar:
    """One line of `jars.lock`."""

    group: str
    artifact: str
    version: str
    size: int
    sha256: str

    @property
    def coordinates(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    @property
    def filename(self) -> str:
        """The name Maven's copy-dependencies gives it (so caches it filled stay valid)."""
        return f"{self.artifact}-{self.version}.jar"

    def url(self, repo: str = MAVEN_CENTRAL) -> str:
        group_path = self.group.replace(".", "/")
        return f"{repo.rstrip('/')}/{group_path}/{self.artifact}/{self.version}/{self.filename}"


def parse_lock(text: str) -> tuple[PinnedJar, ...]:
    """The jars of a lock file: "group:artifact:version bytes sha256" lines, '#' comments.

    Raises ValueError on a malformed line: the lock ships with the package, so that is a bug.
    """
    pins = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        parts = fields[0].split(":") if fields else []
        if (
            len(fields) != 3
            or len(parts) != 3
            or not all(_NAME.fullmatch(part) for part in parts)
            or not fields[1].isdigit()
            or int(fields[1]) <= 0
            or not _SHA256.fullmatch(fields[2])
        ):
            raise ValueError(f"jars.lock line {number} is not 'group:artifact:version bytes sha256': {line!r}")
        group, artifact, version = parts
        pins.append(PinnedJar(group, artifact, version, size=int(fields[1]), sha256=fields[2]))
    if not pins:
        raise ValueError("jars.lock lists no jars")
    return tuple(pins)


@functools.cache
def pinned_jars() -> tuple[PinnedJar, ...]:
    """The jars listed in the packaged `jars.lock`."""
    return parse_lock(LOCK_PATH.read_text(encoding="utf-8"))


def kafka_version() -> str:
    """The Kafka version pinned in `jars.lock` (that of `org.apache.kafka:kafka_2.13`)."""
    for pin in pinned_jars():
        if pin.group == "org.apache.kafka" and pin.artifact.startswith("kafka_"):
            return pin.version
    raise ValueError("jars.lock pins no org.apache.kafka:kafka_<scala> jar")


def lock_stamp() -> str:
    """Digest of `jars.lock`: the marker of a cache that holds exactly these jars."""
    return hashlib.sha256(LOCK_PATH.read_bytes()).hexdigest()


def maven_repo() -> str:
    """Where jars are fetched from: `$MSI_TUI_MAVEN_REPO` (a mirror) or Maven Central."""
    return os.environ.get("MSI_TUI_MAVEN_REPO") or MAVEN_CENTRAL


def libs_dir(cache_dir: Path | None = None) -> Path:
    """Where the broker jars live (complete or not): `<cache>/kafka-<version>/libs`."""
    base = cache_dir if cache_dir is not None else paths.cache_dir()
    return base / f"kafka-{kafka_version()}" / "libs"


def is_complete(libs: Path) -> bool:
    """True when `libs` holds every pinned jar at its size, marked as verified for this lock."""
    try:
        if (libs / _MARKER).read_text(encoding="ascii").strip() != lock_stamp():
            return False
        return all((libs / pin.filename).stat().st_size == pin.size for pin in pinned_jars())
    except OSError:
        return False


def ensure_jars(cache_dir: Path | None = None, progress: TextIO | None = None) -> Path:
    """Return a directory of jars forming the broker classpath, fetching what is missing.

    A complete cache is returned at once without touching the network. Otherwise jars on disk
    whose SHA-256 matches are kept, the rest are downloaded (progress on `progress`, default
    stderr), jars not in the lock are removed (the classpath is `libs/*`), and the marker is
    written. Raises `OperatorError` when a download fails or does not match its hash; jars
    fetched before stay cached for the next attempt.
    """
    libs = libs_dir(cache_dir)
    if is_complete(libs):
        return libs
    try:
        libs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OperatorError(f"cannot create the Kafka jar cache {libs}: {exc.strerror}") from exc
    _remove_strays(libs)
    missing = [pin for pin in pinned_jars() if not _is_intact(libs / pin.filename, pin)]
    if missing:
        stream = progress if progress is not None else (sys.stderr or io.StringIO())
        _fetch(missing, libs, maven_repo(), _Progress(stream, missing, libs))
    _write_atomically(libs / _MARKER, lock_stamp() + "\n")
    return libs


def _is_intact(path: Path, pin: PinnedJar) -> bool:
    try:
        if path.stat().st_size != pin.size:
            return False
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == pin.sha256
    except OSError:
        return False


def _remove_strays(libs: Path, max_part_age_s: float = 3600.0) -> None:
    """Drop jars the lock does not list (e.g. of an older pin) and long-dead partial downloads."""
    wanted = {pin.filename for pin in pinned_jars()}
    now = time.time()
    for entry in libs.iterdir():
        try:
            if entry.name.startswith(_PART_PREFIX):
                # A recent one may belong to another process fetching right now.
                if now - entry.stat().st_mtime > max_part_age_s:
                    entry.unlink()
            elif entry.suffix == ".jar" and entry.name not in wanted:
                entry.unlink()
        except OSError:
            pass


def _fetch(missing: list[PinnedJar], libs: Path, repo: str, progress: _Progress) -> None:
    progress.begin(repo)
    for pin in missing:
        _download(pin, pin.url(repo), libs, progress)
    progress.end()


def _download(pin: PinnedJar, url: str, libs: Path, progress: _Progress) -> None:
    """Fetch one jar, retrying connection failures; anything else fails at once."""
    error: BaseException | None = None
    for attempt in range(_ATTEMPTS):
        if attempt:
            time.sleep(_RETRY_PAUSE_S * attempt)
        try:
            _download_once(pin, url, libs, progress)
            return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                progress.abort()
                raise OperatorError(
                    f"{url} answered HTTP {exc.code} {exc.reason}: the Maven repository lacks "
                    f"{pin.coordinates} (is MSI_TUI_MAVEN_REPO a Maven mirror?)"
                ) from exc
            error = exc
        except _NETWORK_ERRORS as exc:
            error = exc
        except BaseException:
            progress.abort()
            raise
    progress.abort()
    reason = getattr(error, "reason", None) or error
    raise OperatorError(
        f"could not download {pin.filename} from {url}: {reason}. Check the network (a proxy "
        "is taken from https_proxy) or set MSI_TUI_MAVEN_REPO to a Maven mirror, then start "
        "again; the jars fetched so far are kept"
    ) from error


def _download_once(pin: PinnedJar, url: str, libs: Path, progress: _Progress) -> None:
    """Stream `url` into a temp file in `libs`, check size and SHA-256, rename into place."""
    tmp = _temp_file(libs)
    received = kept = 0
    try:
        digest = hashlib.sha256()
        request = urllib.request.Request(url, headers={"User-Agent": "msi-tui (urllib)"})
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response, open(tmp, "wb") as out:
            while chunk := response.read(_CHUNK):
                received += len(chunk)
                if received > pin.size:  # longer than pinned: cannot match, stop reading
                    break
                digest.update(chunk)
                _write(out, chunk, libs)
                kept += len(chunk)
                progress.advance(len(chunk), pin.filename)
            _sync(out, libs)
        got = digest.hexdigest()
        if received != pin.size or got != pin.sha256:
            size = f"{received} bytes" if received <= pin.size else f"over {pin.size} bytes"
            raise OperatorError(
                f"{pin.filename} from {url} does not match its pinned SHA-256 (expected "
                f"{pin.size} bytes, {pin.sha256[:16]}...; got {size}, {got[:16]}...): the "
                "download was deleted. Start again; if it repeats, a proxy or mirror alters "
                "the file"
            )
        os.replace(tmp, libs / pin.filename)
    except BaseException:
        progress.rewind(kept)
        tmp.unlink(missing_ok=True)
        raise


def _temp_file(libs: Path) -> Path:
    """A new temp file next to the jars, so the rename into place is atomic."""
    try:
        fd, name = tempfile.mkstemp(prefix=_PART_PREFIX, dir=libs)
    except OSError as exc:
        raise OperatorError(f"cannot write to the Kafka jar cache {libs}: {exc.strerror}") from exc
    os.close(fd)
    return Path(name)


def _write(out: BinaryIO, chunk: bytes, libs: Path) -> None:
    try:
        out.write(chunk)
    except OSError as exc:  # disk full, not a network error: no retry
        raise OperatorError(f"cannot write to the Kafka jar cache {libs}: {exc.strerror}") from exc


def _sync(out: BinaryIO, libs: Path) -> None:
    """Data on disk before the rename: a crash never leaves a short jar under its real name."""
    try:
        out.flush()
        os.fsync(out.fileno())
    except OSError as exc:
        raise OperatorError(f"cannot write to the Kafka jar cache {libs}: {exc.strerror}") from exc


def _write_atomically(path: Path, text: str) -> None:
    tmp = _temp_file(path.parent)
    try:
        tmp.write_text(text, encoding="ascii")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OperatorError(f"cannot write to the Kafka jar cache {path.parent}: {exc.strerror}") from exc


class _Progress:
    """Download progress: on a terminal a byte counter rewritten in place, otherwise (CI logs,
    pipes) one line before and one after."""

    def __init__(self, stream: TextIO, missing: list[PinnedJar], libs: Path) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.count = len(missing)
        self.total = sum(pin.size for pin in missing)
        self.libs = libs
        self.done = 0
        self.started = time.monotonic()
        self.shown = 0.0

    def begin(self, repo: str) -> None:
        self._say(
            f"fetching {self.count} Kafka broker jars ({_mb(self.total)}) from {repo} "
            f"into {self.libs} (once; later starts use the cache)\n"
        )

    def advance(self, n: int, name: str) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and (now - self.shown >= 0.1 or self.done == self.total):
            self.shown = now
            self._say(f"\r  {_mb(self.done):>8} of {_mb(self.total)}  {name[:48]:<48}")

    def rewind(self, n: int) -> None:
        self.done -= n

    def abort(self) -> None:
        if self.tty:
            self._say("\n")

    def end(self) -> None:
        elapsed = time.monotonic() - self.started
        if self.tty:
            self._say("\n")
        self._say(f"fetched {self.count} jars ({_mb(self.done)}) in {elapsed:.1f} s\n")

    def _say(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not stop the broker
            pass


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
