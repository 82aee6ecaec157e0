"""Run the emulated org: from the command line (``sfsync emulator``) or in-process (tests, benches).

``--tls`` serves HTTPS with a self-signed certificate generated at start for 127.0.0.1 and
localhost (some clients insist on https); :attr:`RunningEmulator.ca_file` is the certificate to
trust.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sfsync.emulator.app import Emulator
from sfsync.emulator.faults import Faults
from sfsync.emulator.oauth import AuthServer, default_config
from sfsync.emulator.store import OrgStore


@dataclass
class RunningEmulator:
    """An emulator serving in a background thread of this process."""

    emulator: Emulator
    base_url: str
    ca_file: Path | None
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def instance_url(self) -> str:
        return self.base_url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A fresh key and self-signed certificate for 127.0.0.1 / localhost (valid 30 days)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sfsync emulator")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_file, cert_file = directory / "emulator-key.pem", directory / "emulator-cert.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


def build(
    org_file: Path | None = None,
    faults: str | None = None,
    base_url: str = "",
    clock: Callable[[], dt.datetime] | None = None,
    client_secret: str | None = None,
) -> Emulator:
    """An :class:`Emulator` for ``org_file`` (None: the default community org). ``client_secret``: the
    connected app's consumer secret (None: a fresh random one, known only to the returned emulator)."""
    store = OrgStore.from_org_file(org_file, clock=clock)
    config = default_config(store=store, instance_url=base_url)
    if client_secret is not None:
        config.connected_apps = [dataclasses.replace(config.connected_apps[0], client_secret=client_secret)]
    return Emulator(store, AuthServer(config), faults=Faults.parse(faults))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_in_thread(
    org_file: Path | None = None,
    *,
    tls: bool = False,
    faults: str | None = None,
    port: int | None = None,
    log_level: str = "warning",
    clock: Callable[[], dt.datetime] | None = None,
) -> RunningEmulator:
    """Start an emulator on loopback in a daemon thread; returns once it accepts connections.
    ``clock``: the org's time for record timestamps (tests pin it to give many records one SystemModstamp)."""
    port = port or free_port()
    scheme = "https" if tls else "http"
    base_url = f"{scheme}://127.0.0.1:{port}"
    emulator = build(org_file, faults, base_url, clock)
    ssl_args: dict[str, Any] = {}
    ca_file = None
    if tls:
        folder = Path(tempfile.mkdtemp(prefix="sfsync-emulator-"))
        key_file, ca_file = self_signed_certificate(folder)
        ssl_args = {"ssl_keyfile": str(key_file), "ssl_certfile": str(ca_file)}
    config = uvicorn.Config(
        emulator.asgi(), host="127.0.0.1", port=port, log_level=log_level, access_log=False, lifespan="off", **ssl_args
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), name="sfsync-emulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the emulator did not start on port {port}")
        time.sleep(0.02)
    return RunningEmulator(emulator, base_url, ca_file, server, thread)


def run_forever(
    port: int, *, tls: bool, org_file: Path | None, faults: str | None, client_secret: str | None = None
) -> None:
    """``sfsync emulator``: serve in the foreground until Ctrl-C (``client_secret``: see :func:`build`)."""
    scheme = "https" if tls else "http"
    base_url = f"{scheme}://127.0.0.1:{port}"
    emulator = build(org_file, faults, base_url, client_secret=client_secret)
    ssl_args: dict[str, Any] = {}
    if tls:
        folder = Path(tempfile.mkdtemp(prefix="sfsync-emulator-"))
        key_file, cert_file = self_signed_certificate(folder)
        ssl_args = {"ssl_keyfile": str(key_file), "ssl_certfile": str(cert_file)}
        print(f"certificate to trust: {cert_file}", flush=True)
    print(f"emulated Salesforce org at {base_url} (admin API at {base_url}/__admin)", flush=True)
    uvicorn.run(
        emulator.asgi(), host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off", **ssl_args
    )
