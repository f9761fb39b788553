"""TLS material for the local broker's SSL listener, made with openssl (no keytool, no JKS).

Kafka reads a PEM "keystore": one file holding the unencrypted PKCS#8 private key and the
certificate chain (`ssl.keystore.type=PEM`). Clients verify the broker with the CA certificate
(`ssl.ca.location`); since they connect by IP, the certificate's SAN holds `IP:127.0.0.1`
(and `DNS:localhost`). Files, made once per directory and reused::

    <dir>/ca.pem        the local CA's certificate: give it to clients
    <dir>/server.pem    broker key + certificate + CA certificate (the PEM keystore)
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from msi_tui.errors import OperatorError

DAYS = 825  # within what strict TLS clients accept for a leaf certificate


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA certificate and the broker's PEM keystore are."""

    ca: Path
    keystore: Path


def ensure_tls_files(directory: Path) -> TlsFiles:
    """Return the TLS files in `directory`, creating a CA and a broker certificate if missing."""
    files = TlsFiles(ca=directory / "ca.pem", keystore=directory / "server.pem")
    if files.ca.is_file() and files.keystore.is_file():
        return files
    openssl = shutil.which("openssl")
    if openssl is None:
        raise OperatorError(
            "openssl is needed to make the TLS certificate of the local broker: "
            "install it (apt-get install openssl)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tls-", dir=directory) as tmp:
        work = Path(tmp)
        ext = work / "san.ext"
        ext.write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n",
            encoding="ascii",
        )
        ca_key, ca_pem = work / "ca.key", work / "ca.pem"
        key, csr, crt = work / "server.key", work / "server.csr", work / "server.crt"
        _openssl(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
                 "-days", str(DAYS + 1), "-subj", "/CN=msi-tui local Kafka CA",
                 "-keyout", str(ca_key), "-out", str(ca_pem))
        # -nodes writes an unencrypted PKCS#8 key ("BEGIN PRIVATE KEY"), what Kafka's PEM reader wants.
        _openssl(openssl, "req", "-newkey", "rsa:2048", "-nodes", "-sha256",
                 "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(csr))
        _openssl(openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-sha256", "-days", str(DAYS), "-extfile", str(ext), "-out", str(crt))
        keystore = work / "server.pem"
        keystore.write_bytes(key.read_bytes() + crt.read_bytes() + ca_pem.read_bytes())
        keystore.chmod(0o600)
        # The keystore last: its presence (with ca.pem) marks a complete set.
        ca_pem.replace(files.ca)
        keystore.replace(files.keystore)
    return files


def _openssl(openssl: str, *args: str) -> None:
    try:
        proc = subprocess.run([openssl, *args], capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OperatorError("openssl timed out making the local broker's TLS certificate") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        detail = lines[-1] if lines else f"exit code {proc.returncode}"
        raise OperatorError(f"openssl could not make the local broker's TLS certificate: {detail}")
