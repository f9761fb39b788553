"""Secured clusters end to end: SCRAM-SHA-512 over SASL_PLAINTEXT and TLS with a PEM CA.

This module runs its own local broker with a SCRAM listener (user created at format time)
and a TLS listener (openssl-made CA and certificate). Configs take the secrets from the
environment (`$MSI_TEST_USER`, `${MSI_TEST_PASSWORD}`); the password must never show up in
the commands' output nor in `$MSI_TUI_STATE_DIR/msi-tui.log`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from msi_tui.broker.local import LocalBroker, free_port
from tests.helpers import Background, cli, digest, wait_until, write_random

pytestmark = pytest.mark.kafka

USER = "msi-operator"
PASSWORD = f"pw-{secrets.token_hex(12)}"  # unique: any occurrence in a log is a leak
WRONG_PASSWORD = f"wrong-{secrets.token_hex(12)}"
_outputs: list[str] = []  # every command output of this module, checked for the secrets


def _free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    return list(ports)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A broker with PLAINTEXT, SASL_PLAINTEXT (SCRAM-SHA-512) and SSL listeners."""
    home = tmp_path_factory.mktemp("kafka-secured")
    port, controller, scram, tls = _free_ports(4)
    broker = LocalBroker(home, port=port, controller_port=controller, heap_mb=256,
                         scram_port=scram, scram_users={USER: PASSWORD}, tls_port=tls)
    patch = pytest.MonkeyPatch()
    patch.setenv("MSI_TEST_USER", USER)
    patch.setenv("MSI_TEST_PASSWORD", PASSWORD)
    try:
        broker.start()
        yield broker
    finally:
        patch.undo()
        broker.stop()
        shutil.rmtree(home, ignore_errors=True)


def scram_config(path: Path, broker: LocalBroker, password_ref: str = "${MSI_TEST_PASSWORD}") -> Path:
    path.write_text(
        "[broker]\n"
        f"bootstrap.servers = {broker.scram_bootstrap}\n"
        "security.protocol = SASL_PLAINTEXT\n"
        "sasl.mechanism = SCRAM-SHA-512\n"
        "sasl.username = $MSI_TEST_USER\n"
        f"sasl.password = {password_ref}\n"
        "\n[producer]\n\n[consumer]\n",
        encoding="utf-8",
    )
    return path


def tls_config(path: Path, broker: LocalBroker) -> Path:
    path.write_text(
        "[broker]\n"
        f"bootstrap.servers = {broker.tls_bootstrap}\n"
        "security.protocol = SSL\n"
        f"ssl.ca.location = {broker.ca_path}\n"
        "\n[producer]\n\n[consumer]\n",
        encoding="utf-8",
    )
    return path


def assert_no_secret(text: str) -> None:
    assert PASSWORD not in text
    assert WRONG_PASSWORD not in text


def round_trip(config: Path, topic: str, tmp_path: Path) -> None:
    """upload-file, then reconstruct --headless: the file comes out byte-identical."""
    src = tmp_path / "src" / "scope trace.bin"
    write_random(src, 3_000_000 + 123, seed=7)
    sent = cli("upload-file", str(src), "--config", str(config), "--topic", topic,
               "--partitions", "2", "--chunk-size", "65536", timeout=120)
    _outputs.append(sent.stdout + sent.stderr)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    out = tmp_path / "out"
    with Background("reconstruct", str(out), "--headless", "--config", str(config), "--topic", topic,
                    "--partitions", "2", "--update-seconds", "-1", "--group-id", f"g-{topic}",
                    log=tmp_path / "reconstruct.log") as rec:
        target = out / src.name
        wait_until(lambda: target.is_file() and digest(target) == digest(src), "the file rebuilt", timeout=90)
        rec.type("check")  # the status report must not show the secret either
        wait_until(lambda: "files completed 1" in rec.output(), "check to report the file", timeout=30)
        assert rec.quit(timeout=60) == 0
        _outputs.append(rec.output())
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [src.name]
    for text in _outputs:
        assert "Traceback" not in text
        assert_no_secret(text)


def test_scram_round_trip_with_secrets_from_environment(secured: LocalBroker, topic: str, tmp_path: Path) -> None:
    round_trip(scram_config(tmp_path / "scram.config", secured), topic, tmp_path)


def test_tls_round_trip_with_pem_ca(secured: LocalBroker, topic: str, tmp_path: Path) -> None:
    assert secured.ca_path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    round_trip(tls_config(tmp_path / "tls.config", secured), topic, tmp_path)


@pytest.mark.parametrize("command", ["upload-file", "reconstruct"])
def test_wrong_password_is_one_clear_line(secured: LocalBroker, topic: str, tmp_path: Path, command: str) -> None:
    config = scram_config(tmp_path / "wrong.config", secured, "$MSI_TEST_WRONG_PASSWORD")
    src = tmp_path / "a.bin"
    write_random(src, 1000)
    target = str(src) if command == "upload-file" else str(tmp_path / "out")
    extra = ["--headless", "--update-seconds", "-1"] if command == "reconstruct" else []
    env = {**os.environ, "MSI_TEST_WRONG_PASSWORD": WRONG_PASSWORD}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "msi_tui", command, target, "--config", str(config), "--topic", topic, *extra],
        capture_output=True, text=True, timeout=60, input="", env=env,
    )
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    _outputs.append(output)
    assert proc.returncode != 0, output
    assert elapsed < 15, f"took {elapsed:.1f} s: {output}"
    assert "Traceback" not in output
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "authentication failed" in lines[0], output
    assert USER in lines[0] and secured.scram_bootstrap in lines[0]
    assert_no_secret(output)


def test_untrusted_tls_certificate_is_one_clear_line(secured: LocalBroker, topic: str, tmp_path: Path) -> None:
    config = tmp_path / "noca.config"
    config.write_text(f"[broker]\nbootstrap.servers = {secured.tls_bootstrap}\nsecurity.protocol = SSL\n")
    src = tmp_path / "a.bin"
    write_random(src, 1000)
    started = time.monotonic()
    proc = cli("upload-file", str(src), "--config", str(config), "--topic", topic, timeout=60)
    assert proc.returncode != 0
    assert time.monotonic() - started < 15
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "TLS connection" in proc.stderr and "certificate verify failed" in proc.stderr, proc.stderr


def test_secrets_never_reach_the_log_file(secured: LocalBroker) -> None:
    """Runs last in this module: every command above logged to the session's state dir."""
    assert _outputs, "the tests above produced no output to check"
    for text in _outputs:
        assert_no_secret(text)
    log = Path(os.environ["MSI_TUI_STATE_DIR"]) / "msi-tui.log"
    assert log.is_file()
    text = log.read_text(encoding="utf-8", errors="replace")
    assert text.strip(), "the log file is empty: nothing was checked"
    assert_no_secret(text)
