"""Run emulated orgs: from the command line (``sfsync emulator``, ``--orgs N``) or in-process (tests, benches).

One process serves one org (:func:`serve_in_thread`) or several (:func:`serve_orgs_in_thread`, each org
its own Salesforce org: :mod:`sfsync.emulator.orgs`) with ONE uvicorn server -- one thread, one event
loop -- and one listening socket per org on 127.0.0.1: a request is served by the org whose port it
arrived on (:class:`PortDispatch`). An org's URL, ``http(s)://127.0.0.1:<port>``, is both its instance URL
and its login URL (like a My Domain URL). An org can go down and come back up
(:mod:`sfsync.emulator.availability`): in ``refuse`` mode its socket is closed, then opened again on the
same port.

``--tls`` serves HTTPS with a self-signed certificate generated at start for 127.0.0.1 and
localhost (some clients insist on https), one for every org; :attr:`RunningOrg.ca_file` is the
certificate to trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import ipaddress
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from sfsync.emulator.app import Emulator
from sfsync.emulator.availability import Availability
from sfsync.emulator.faults import Faults
from sfsync.emulator.oauth import AuthServer, default_config
from sfsync.emulator.orgs import OrgBuilder, OrgSpec, org_identity
from sfsync.emulator.store import OrgStore

_START_TIMEOUT_S = 60.0


@dataclass
class RunningOrg:
    """One emulated org served on its own port of this process: its URL, the :class:`Emulator` behind it
    (data, usage, faults, sessions: ``emulator.admin_stats()``...), and what a client logs in with."""

    emulator: Emulator
    base_url: str
    ca_file: Path | None
    name: str = "org"
    _private_key: str | None = field(default=None, init=False, repr=False)

    @property
    def instance_url(self) -> str:
        return self.base_url

    @property
    def login_url(self) -> str:
        """Where to log in: the org's own URL (a My Domain login URL)."""
        return self.base_url

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/services/oauth2/token"

    @property
    def org_id(self) -> str:
        """The 18-character Organization id."""
        return self.emulator.auth.config.org_id

    @property
    def client_id(self) -> str:
        """The consumer key of the org's connected app."""
        return self.emulator.auth.config.connected_apps[0].client_id

    @property
    def client_secret(self) -> str:
        """The consumer secret of the org's connected app (never in a repr)."""
        return self.emulator.auth.config.connected_apps[0].client_secret

    @property
    def username(self) -> str:
        """The integration user's username: the client-credentials Run-As user, and the JWT ``sub`` to use."""
        config = self.emulator.auth.config
        return config.client_credentials_user or config.users[0].username

    @property
    def usernames(self) -> list[str]:
        """Every user who can log in."""
        return [user.username for user in self.emulator.auth.config.users]

    def private_key_pem(self) -> str:
        """The PEM RSA private key of the JWT bearer flow (``iss`` = :attr:`client_id`, ``sub`` = a username,
        ``aud`` = :attr:`login_url`): made on first use, when its public key is set on the org's connected
        app as its certificate, so that orgs that never use it do not pay for it."""
        if self._private_key is None:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            self.emulator.auth.change_app(self.client_id, certificate_pem=public.decode("ascii"))
            self._private_key = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode("ascii")
        return self._private_key

    def refresh_token(self, username: str | None = None) -> str:
        """A refresh token of the connected app for ``username`` (default: the first user), as a completed
        web-server flow leaves one."""
        return self.emulator.auth.issue_refresh_token(username=username)

    def down(self, mode: str = "503", *, for_s: float | None = None) -> None:
        """The org goes down: ``"503"`` (every call answered 503) or ``"refuse"`` (its port refuses
        connections), for ``for_s`` seconds if given; returns once it is so."""
        self.emulator.availability.set(mode, for_s=for_s)

    def up(self) -> None:
        """The org serves again; returns once its port listens."""
        self.emulator.availability.set(None)


@dataclass(kw_only=True)
class RunningEmulator(RunningOrg):
    """An emulator serving one org in a background thread of this process."""

    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.emulator.availability.cancel_return()
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class RunningOrgs:
    """Several emulated orgs served by one server in a background thread of this process (``stop()`` it,
    or use ``with``); ``orgs[i]`` is the org of spec ``i``."""

    orgs: list[RunningOrg]
    ca_file: Path | None
    server: uvicorn.Server
    thread: threading.Thread

    def __len__(self) -> int:
        return len(self.orgs)

    def __iter__(self) -> Iterator[RunningOrg]:
        return iter(self.orgs)

    def __getitem__(self, index: int) -> RunningOrg:
        return self.orgs[index]

    def named(self, name: str) -> RunningOrg:
        """The org called ``name``; KeyError when none is."""
        for org in self.orgs:
            if org.name == name:
                return org
        raise KeyError(name)

    def stop(self) -> None:
        for org in self.orgs:
            org.emulator.availability.cancel_return()
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


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
    config = default_config(store=store, instance_url=base_url, client_secret=client_secret)
    return Emulator(store, AuthServer(config), faults=Faults.parse(faults))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bound_socket(port: int = 0) -> socket.socket:
    """A TCP socket bound to 127.0.0.1:``port`` (0: any free port), not yet listening. Made with its protocol
    named, as asyncio needs to see it to give each connection TCP_NODELAY (without it, an answer written in
    two parts waits out the client's delayed ACK: some 40 ms a call)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


class PortDispatch:
    """The ASGI app of the server: each request goes to the app of the org whose port it arrived on
    (``scope["server"]``); a port with no org answers 404."""

    def __init__(self) -> None:
        self.apps: dict[int, ASGIApp] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        app = self.apps.get(server[1]) if server else None
        if app is None:
            if scope["type"] == "http":
                await PlainTextResponse("no emulated org on this port", status_code=404)(scope, receive, send)
            return
        await app(scope, receive, send)


class _Host:
    """One uvicorn server for the orgs :meth:`mount` ed on it, one socket each (see the module docstring)."""

    def __init__(self, *, tls: bool, log_level: str) -> None:
        self.dispatch = PortDispatch()
        self.sockets: list[socket.socket] = []
        self.ca_file: Path | None = None
        ssl_args: dict[str, Any] = {}
        if tls:
            folder = Path(tempfile.mkdtemp(prefix="sfsync-emulator-"))
            key_file, self.ca_file = self_signed_certificate(folder)
            ssl_args = {"ssl_keyfile": str(key_file), "ssl_certfile": str(self.ca_file)}
        config = uvicorn.Config(
            self.dispatch, log_level=log_level, access_log=False, lifespan="off", date_header=False, **ssl_args
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def scheme(self) -> str:
        return "https" if self.ca_file is not None else "http"

    def add_socket(self, port: int = 0) -> int:
        """Bind one more socket (``port`` 0: any free one); its port."""
        sock = _bound_socket(port)
        self.sockets.append(sock)
        return int(sock.getsockname()[1])

    def mount(self, port: int, emulator: Emulator) -> None:
        """Serve ``emulator`` on ``port`` (a socket :meth:`add_socket` bound); its availability closes and
        opens that port."""
        self.dispatch.apps[port] = emulator.asgi()
        emulator.availability.listener = _PortListener(self, port)

    def close_sockets(self) -> None:
        for sock in self.sockets:
            sock.close()

    async def serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve(sockets=self.sockets)

    def start_thread(self) -> None:
        """Serve in a daemon thread; returns once every socket accepts connections."""
        self.thread = threading.Thread(target=lambda: asyncio.run(self.serve()), name="sfsync-emulator", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.server.should_exit = True
                ports = ", ".join(str(s.getsockname()[1]) for s in self.sockets[:3] if s.fileno() >= 0)
                self.close_sockets()
                raise RuntimeError(f"the emulator did not start (port {ports or '?'}...)")
            time.sleep(0.01)

    def run(self, callback: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``callback()`` on the server's loop: at once from the loop's own thread (scheduled), else
        waiting until it is done. Nothing when the server is not running."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is loop:
            task = loop.create_task(callback())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        try:
            asyncio.run_coroutine_threadsafe(callback(), loop).result(timeout=10)
        except RuntimeError:  # the loop closed meanwhile
            return

    async def follow(self, port: int, availability: Availability) -> None:
        """Make ``port`` listen, or not, as ``availability`` says now (on the server's loop)."""
        listening = self._listening_server(port)
        if availability.mode == "refuse":
            if listening is not None:
                listening.close()
            return
        if listening is not None:
            return
        sock = await self._rebind(port)
        config = self.server.config
        new = await asyncio.get_running_loop().create_server(
            self._protocol, sock=sock, ssl=config.ssl, backlog=config.backlog
        )
        self.server.servers.append(new)  # uvicorn closes it at shutdown with the others

    def _listening_server(self, port: int) -> asyncio.AbstractServer | None:
        for server in self.server.servers:
            if server.is_serving() and any(s.getsockname()[1] == port for s in server.sockets):
                return server
        return None

    @staticmethod
    async def _rebind(port: int) -> socket.socket:
        """The port again (it may take a moment to be free of the closed socket)."""
        for _ in range(50):
            try:
                return _bound_socket(port)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                await asyncio.sleep(0.1)
        return _bound_socket(port)

    def _protocol(self) -> asyncio.Protocol:
        """A connection's protocol, made as uvicorn makes those of the sockets it was given."""
        config = self.server.config
        return config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=self.server.server_state, app_state=self.server.lifespan.state
        )


@dataclass
class _PortListener:
    """An org's port as its :class:`Availability` closes and opens it."""

    host: _Host
    port: int

    def follow(self, availability: Availability) -> None:
        self.host.run(lambda: self.host.follow(self.port, availability))


def serve_in_thread(
    org_file: Path | None = None,
    *,
    tls: bool = False,
    faults: str | None = None,
    port: int | None = None,
    log_level: str = "warning",
    clock: Callable[[], dt.datetime] | None = None,
) -> RunningEmulator:
    """Start an emulator of one org on loopback in a daemon thread; returns once it accepts connections.
    ``clock``: the org's time for record timestamps (tests pin it to give many records one SystemModstamp)."""
    host = _Host(tls=tls, log_level=log_level)
    try:
        port = host.add_socket(port or 0)
        base_url = f"{host.scheme}://127.0.0.1:{port}"
        emulator = build(org_file, faults, base_url, clock)
        host.mount(port, emulator)
        host.start_thread()
    except BaseException:
        host.close_sockets()
        raise
    assert host.thread is not None
    return RunningEmulator(
        emulator=emulator, base_url=base_url, ca_file=host.ca_file, server=host.server, thread=host.thread
    )


def serve_orgs_in_thread(
    orgs: int | Sequence[OrgSpec],
    *,
    tls: bool = False,
    seed: int = 0,
    log_level: str = "warning",
) -> RunningOrgs:
    """Serve several orgs (``orgs``: how many alike, or one :class:`OrgSpec` each) from one server in a
    daemon thread, each on its own port of 127.0.0.1; returns once every one accepts connections. ``seed``
    and an org's index make its identity (:func:`sfsync.emulator.orgs.org_identity`)."""
    specs = [OrgSpec() for _ in range(orgs)] if isinstance(orgs, int) else list(orgs)
    host = _Host(tls=tls, log_level=log_level)
    running = _mount_orgs(host, specs, seed, ports=None)
    try:
        host.start_thread()
    except BaseException:
        host.close_sockets()
        raise
    assert host.thread is not None
    return RunningOrgs(orgs=running, ca_file=host.ca_file, server=host.server, thread=host.thread)


def _mount_orgs(host: _Host, specs: Sequence[OrgSpec], seed: int, ports: Sequence[int] | None) -> list[RunningOrg]:
    """Build and mount the org of each spec (on ``ports`` when given, else on free ports)."""
    if not specs:
        raise ValueError("at least one org")
    builder = OrgBuilder()
    running: list[RunningOrg] = []
    names: set[str] = set()
    try:
        for index, spec in enumerate(specs):
            identity = org_identity(spec, index, seed)
            if identity.name in names:
                raise ValueError(f"two orgs named {identity.name}")
            names.add(identity.name)
            port = host.add_socket(ports[index] if ports is not None else 0)
            base_url = f"{host.scheme}://127.0.0.1:{port}"
            emulator = builder.build(spec, identity, base_url)
            host.mount(port, emulator)
            running.append(RunningOrg(emulator, base_url, host.ca_file, identity.name))
    except BaseException:
        host.close_sockets()
        raise
    return running


def run_forever(
    port: int, *, tls: bool, org_file: Path | None, faults: str | None, client_secret: str | None = None
) -> None:
    """``sfsync emulator``: serve one org in the foreground until Ctrl-C (``client_secret``: see :func:`build`)."""
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


def run_orgs_forever(
    count: int,
    first_port: int,
    *,
    tls: bool,
    org_file: Path | None,
    faults: str | None,
    client_secret: str | None = None,
    rotate_refresh_tokens: bool = False,
    seed: int = 0,
    credentials_file: Path | None = None,
) -> None:
    """``sfsync emulator --orgs N``: serve ``count`` orgs on ports ``first_port``, ``first_port + 1``... (0: any
    free ports) in the foreground until Ctrl-C; OSError when a port is taken. Prints each org's URL, org
    id, consumer key and integration username (never a secret); ``credentials_file``: also writes them,
    consumer secrets included, as JSON readable by the owner only. ``client_secret``: every org's
    consumer secret (default: a random one per org)."""
    spec = OrgSpec(
        org_file=org_file, faults=faults, client_secret=client_secret, rotate_refresh_tokens=rotate_refresh_tokens
    )
    host = _Host(tls=tls, log_level="warning")
    ports = [first_port + i for i in range(count)] if first_port else None
    running = _mount_orgs(host, [spec] * count, seed, ports=ports)
    if host.ca_file is not None:
        print(f"certificate to trust: {host.ca_file}", flush=True)
    for org in running:
        print(
            f"emulated Salesforce org {org.name} at {org.base_url} (admin API at {org.base_url}/__admin): "
            f"org id {org.org_id}, client id {org.client_id}, user {org.username}",
            flush=True,
        )
    if credentials_file is not None:
        write_credentials(credentials_file, running)
        print(f"credentials of every org (consumer secrets included) in {credentials_file}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled
        asyncio.run(host.serve())


def write_credentials(path: Path, orgs: Sequence[RunningOrg]) -> None:
    """Write what a client needs to log in to each org, as a JSON list, to a new file only its owner may
    read (``0600``); an existing file is replaced."""
    entries = [
        {
            "name": org.name,
            "instance_url": org.instance_url,
            "login_url": org.login_url,
            "org_id": org.org_id,
            "client_id": org.client_id,
            "client_secret": org.client_secret,
            "username": org.username,
        }
        for org in orgs
    ]
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(entries, out, indent=2)
