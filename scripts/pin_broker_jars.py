"""Regenerate `msi_tui/broker/jars.lock` from `msi_tui/broker/pom.xml` with Maven.

The local broker's classpath is the runtime closure of `org.apache.kafka:kafka_2.13` plus the
log4j binding named in pom.xml. msi-tui does not run Maven: it fetches the jars listed in
jars.lock from Maven Central and checks each against its SHA-256. When the Kafka (or log4j)
version moves, edit pom.xml and run, from the repository root, with Maven 3 and Java on the PATH:

    python3 scripts/pin_broker_jars.py            # rewrite jars.lock
    python3 scripts/pin_broker_jars.py --check    # exit 1 if jars.lock differs from Maven's answer

Maven resolves the closure and copies the jars (`dependency:copy-dependencies`), lists their
coordinates (`dependency:list`), and this script writes one line per jar: coordinates, size
and SHA-256 of the file Maven fetched.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

BROKER_DIR = Path(__file__).resolve().parent.parent / "msi_tui" / "broker"
POM = BROKER_DIR / "pom.xml"
LOCK = BROKER_DIR / "jars.lock"
# A fixed plugin version: the resolved set must not depend on which Maven happens to be installed.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
KAFKA_CLASSES = ("kafka/Kafka.class", "kafka/tools/StorageTool.class")
# "group:artifact:type:version:scope", optionally followed by " -- module name (auto)".
_LISTED = re.compile(r"^\s*([^:\s]+):([^:\s]+):([^:\s]+):([^:\s]+):(?:[^:\s]+)(?:\s.*)?$")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with jars.lock, write nothing")
    args = parser.parse_args(argv)
    mvn = shutil.which("mvn")
    if mvn is None:
        print("error: Maven (mvn) is not on the PATH; it is needed only to regenerate jars.lock",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pin-broker-jars-") as tmp:
        work = Path(tmp)
        coordinates = resolve(mvn, work)
        lines = pin_lines(coordinates, work / "libs")
    text = render(kafka_version(POM), lines)
    if args.check:
        same = LOCK.is_file() and LOCK.read_text(encoding="utf-8") == text
        print(f"{LOCK} is {'up to date' if same else 'OUT OF DATE: run without --check'}")
        return 0 if same else 1
    LOCK.write_text(text, encoding="utf-8")
    print(f"wrote {LOCK} ({len(lines)} jars)")
    return 0


def resolve(mvn: str, work: Path) -> list[tuple[str, str, str]]:
    """Run Maven on a copy of pom.xml (it writes target/ next to it); (group, artifact, version)."""
    pom = work / "pom.xml"
    shutil.copyfile(POM, pom)
    listing = work / "dependencies.txt"
    cmd = [
        mvn, "-q", "-B", "-f", str(pom),
        f"{DEPENDENCY_PLUGIN}:copy-dependencies", f"{DEPENDENCY_PLUGIN}:list",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={work / 'libs'}",
        f"-DoutputFile={listing}",
    ]
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"mvn failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return parse_listing(listing.read_text(encoding="utf-8"))


def parse_listing(text: str) -> list[tuple[str, str, str]]:
    """Coordinates from `dependency:list` output; only plain jars are expected."""
    found = []
    for line in text.splitlines():
        match = _LISTED.match(line)
        if not match or line.strip().startswith("The following"):
            continue
        group, artifact, kind, version = match.groups()
        if kind != "jar":
            sys.exit(f"unexpected dependency type {kind!r} in {line.strip()!r}: jars.lock holds jars only")
        found.append((group, artifact, version))
    if not found:
        sys.exit(f"no dependencies in Maven's listing:\n{text}")
    return sorted(found)


def pin_lines(coordinates: list[tuple[str, str, str]], libs: Path) -> list[str]:
    """One "group:artifact:version size sha256" line per jar Maven copied into `libs`."""
    names = {f"{artifact}-{version}.jar": (group, artifact, version)
             for group, artifact, version in coordinates}
    copied = {path.name for path in libs.glob("*.jar")}
    if copied != set(names):
        sys.exit(f"Maven's listing and copied jars differ: {sorted(copied ^ set(names))}")
    lines = []
    for name, (group, artifact, version) in sorted(names.items(), key=lambda item: item[1]):
        data = (libs / name).read_bytes()
        if artifact.startswith("kafka_"):
            check_kafka_jar(libs / name)
        lines.append(f"{group}:{artifact}:{version} {len(data)} {hashlib.sha256(data).hexdigest()}")
    return lines


def check_kafka_jar(jar: Path) -> None:
    with zipfile.ZipFile(jar) as zf:
        missing = [cls for cls in KAFKA_CLASSES if cls not in set(zf.namelist())]
    if missing:
        sys.exit(f"{jar.name} lacks {', '.join(missing)}: not a Kafka broker jar")


def kafka_version(pom: Path) -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text(encoding="utf-8"))
    if not match:
        sys.exit(f"no <kafka.version> in {pom}")
    return match.group(1).strip()


def render(kafka: str, lines: list[str]) -> str:
    header = [
        f"# The classpath of the local Kafka broker: org.apache.kafka:kafka_2.13:{kafka}, its",
        "# runtime dependencies and the log4j binding (see pom.xml), as Maven resolves them.",
        "# Written by scripts/pin_broker_jars.py; do not edit by hand. msi-tui fetches each jar from",
        "# Maven Central and refuses any whose SHA-256 differs.",
        "# groupId:artifactId:version bytes sha256",
    ]
    return "\n".join([*header, *lines]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
