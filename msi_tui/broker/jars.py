"""The jars of the local Kafka broker: fetched once from Maven Central, then cached.

The Apache download site is not reachable from every machine, Maven Central is: the broker
classpath is the runtime closure of `org.apache.kafka:kafka_2.13` (see `pom.xml` here), copied
into `<cache>/kafka-<version>/libs` by Maven. A marker file written last makes a complete
cache recognisable, so later starts need neither Maven nor the network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

from msi_tui import paths
from msi_tui.errors import OperatorError

KAFKA_VERSION = "4.2.1"
SCALA_VERSION = "2.13"
MIN_JAVA = 17

_POM = Path(__file__).with_name("pom.xml")
_MARKER = ".msi-tui-complete"
_FETCH_PREFIX = ".fetch-"
_REQUIRED_CLASSES = ("kafka/Kafka.class", "kafka/tools/StorageTool.class")
_MVN_TIMEOUT_S = 30 * 60


def libs_dir(cache_dir: Path | None = None) -> Path:
    """Where the broker jars live (complete or not): `<cache>/kafka-<version>/libs`."""
    base = cache_dir if cache_dir is not None else paths.cache_dir()
    return base / f"kafka-{KAFKA_VERSION}" / "libs"


def is_complete(libs: Path) -> bool:
    """True when `libs` holds a finished, verified download."""
    return (libs / _MARKER).is_file()


def ensure_jars(cache_dir: Path | None = None) -> Path:
    """Return a directory of jars forming the broker classpath, fetching it on first use.

    A cached, complete directory is returned at once without touching the network. Otherwise
    Maven copies the runtime dependencies of `pom.xml` into a temporary directory next to the
    cache, the Kafka jar is checked, and the directory is renamed into place: an interrupted
    download never leaves a half cache behind. Raises `OperatorError` when Java or Maven is
    missing or the download fails.
    """
    libs = libs_dir(cache_dir)
    if is_complete(libs):
        return libs

    require_java()
    mvn = _require_tool(
        "mvn",
        "Maven is needed once to download the Kafka broker jars from Maven Central: "
        "install it (apt-get install maven)",
    )
    parent = libs.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_fetches(parent)

    # Same parent as the final directory, so the rename below is atomic.
    work = Path(tempfile.mkdtemp(prefix=_FETCH_PREFIX, dir=parent))
    try:
        # Maven writes target/ next to the pom: copy it, the package dir may be read-only.
        pom = work / "pom.xml"
        shutil.copyfile(_POM, pom)
        out = work / "libs"
        _run_maven(mvn, pom, out)
        _verify(out)
        (out / _MARKER).write_text(f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}\n", encoding="utf-8")
        if libs.exists():
            if is_complete(libs):  # another process finished first: use its copy
                return libs
            shutil.rmtree(libs)  # leftover without a marker, e.g. from an older layout
        try:
            os.rename(out, libs)
        except OSError:
            if not is_complete(libs):
                raise
        return libs
    finally:
        shutil.rmtree(work, ignore_errors=True)


def require_java() -> str:
    """Return the `java` executable, or raise `OperatorError` if none (or one older than 17)."""
    java = find_java()
    hint = (
        f"Java {MIN_JAVA}+ is needed to run the local Kafka broker: "
        "install a JDK (apt-get install openjdk-17-jre-headless)"
    )
    if java is None:
        raise OperatorError(hint)
    major = _java_major(java)
    if major is not None and major < MIN_JAVA:
        raise OperatorError(f"{hint}; found Java {major} at {java}")
    return java


def find_java() -> str | None:
    """The `java` of `$JAVA_HOME` if set, else the one on PATH, else None."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


def _java_major(java: str) -> int | None:
    """Major version from `java -version` ("1.8.0_x" is 8, "17.0.15" is 17); None if unknown."""
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if not match:
        return None
    first = int(match.group(1))
    if first == 1 and match.group(2):
        return int(match.group(2))
    return first


def _require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise OperatorError(hint)
    return path


def _run_maven(mvn: str, pom: Path, out: Path) -> None:
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={out}",
    ]
    try:
        proc = subprocess.run(
            cmd,
            cwd=pom.parent,
            capture_output=True,
            text=True,
            timeout=_MVN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise OperatorError(
            f"downloading the Kafka jars from Maven Central took over {_MVN_TIMEOUT_S // 60} "
            "minutes: check the network and try again"
        ) from exc
    if proc.returncode != 0:
        # With -q Maven prints only errors; the first [ERROR] line names the cause.
        lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("[ERROR]")] or lines
        detail = errors[0] if errors else f"exit code {proc.returncode}"
        raise OperatorError(
            f"could not download the Kafka jars from Maven Central (mvn failed): {detail}"
        )


def _verify(out: Path) -> None:
    jar = out / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar"
    if not jar.is_file():
        raise OperatorError(f"Maven did not deliver {jar.name}: the Kafka download is incomplete")
    try:
        with zipfile.ZipFile(jar) as zf:
            names = set(zf.namelist())
    except zipfile.BadZipFile as exc:
        raise OperatorError(f"{jar.name} from Maven Central is not a valid jar") from exc
    missing = [cls for cls in _REQUIRED_CLASSES if cls not in names]
    if missing:
        raise OperatorError(f"{jar.name} lacks {', '.join(missing)}: not a Kafka broker jar")


def _remove_stale_fetches(parent: Path, max_age_s: float = 3600.0) -> None:
    """Drop temp dirs of downloads killed long ago (recent ones may still be running)."""
    now = time.time()
    for entry in parent.glob(_FETCH_PREFIX + "*"):
        try:
            if now - entry.stat().st_mtime > max_age_s:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass
