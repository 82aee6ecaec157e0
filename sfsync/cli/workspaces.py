"""``sfsync workspaces`` and ``sfsync connections``: the workspace registry (docs/decisions/0009).

Two Typer sub-apps, registered by :mod:`sfsync.cli.main`::

    sfsync workspaces add ID --connection C [--mapping NAME] [--set NAME=VALUE]... [--paused] [--replace]
    sfsync workspaces list | show ID | pause ID [--reason TEXT] | resume ID | remove ID [--yes]
    sfsync connections add ID --flow F --client-id X [--login-url URL] [--username U] [--<secret>-file PATH|-]...
    sfsync connections list | show ID | test ID | remove ID [--yes] | reencrypt | keygen [--id K]

A secret is never a command-line argument (a command line lands in shell history and in every user's
``ps``): it is read from a file (``--client-secret-file PATH``), from stdin (``PATH`` = ``-``), or, when
neither is given, from a prompt that does not echo. ``list`` and ``show`` tell a secret as set or unset,
never its value. Settings come from the environment (``KAFKA_BOOTSTRAP_SERVERS``, ``SCHEMA_REGISTRY_URL``,
``SFSYNC_TOPIC_PREFIX``, ``SFSYNC_CONNECTION_KEYS``...). sfsync errors are one line and exit 2.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sfsync.cli.reporting import reported

if TYPE_CHECKING:
    from pydantic import SecretStr

    from sfsync.workspaces import (
        Connection,
        ConnectionKeys,
        Directory,
        RegistryWriter,
        Workspace,
        WorkspacesSettings,
    )


workspaces_app = typer.Typer(
    help="Customer workspaces: each one's org connection, mapping and state (topic sfsync.workspaces).",
    no_args_is_help=True,
)
connections_app = typer.Typer(
    help="Connections to Salesforce orgs, their secrets sealed with SFSYNC_CONNECTION_KEYS (topic sfsync.connections).",
    no_args_is_help=True,
)


class AddedFlow(StrEnum):
    """The flows ``connections add`` takes (the browser flow writes its own connections)."""

    JWT_BEARER = "jwt_bearer"
    CLIENT_CREDENTIALS = "client_credentials"
    REFRESH_TOKEN = "refresh_token"  # noqa: S105 (a flow's name, not a secret)


SECRET_OPTIONS = {
    "private_key": ("--private-key-file", "private key (PEM)"),
    "client_secret": ("--client-secret-file", "client secret"),
    "refresh_token": ("--refresh-token-file", "refresh token"),
}
"""Secret field -> (its option, what a prompt calls it)."""


# ---------------------------------------------------------------------- the registry, for one command
@dataclass
class RegistrySession:
    """What one command uses: the settings, the directory read to its end, the keys (None: not set), and a
    writer when the command writes."""

    settings: WorkspacesSettings
    directory: Directory
    keys: ConnectionKeys | None
    writer: RegistryWriter | None

    def write(self) -> RegistryWriter:
        assert self.writer is not None, "opened without write=True"
        return self.writer

    def sealing_keys(self) -> ConnectionKeys:
        """The keys; raises ConfigError when SFSYNC_CONNECTION_KEYS is not set."""
        return self.keys if self.keys is not None else self.settings.keys()


@contextmanager
def registry_session(*, write: bool = False, need_keys: bool = False) -> Iterator[RegistrySession]:
    """Open the registry for one command: settings from the environment (keys required with ``need_keys``,
    checked before Kafka is asked anything), the topics created when it ``write``s, the directory loaded."""
    from sfsync.kafka.admin import ensure_topics
    from sfsync.serde.registry import SchemaRegistry
    from sfsync.topics import REGISTRY_TOPICS
    from sfsync.workspaces import Directory, RegistryWriter, load_workspaces_settings

    settings = load_workspaces_settings()
    keys = settings.keys() if need_keys or settings.connection_keys is not None else None
    kafka = settings.kafka_client_config()
    if write:
        ensure_topics(kafka, REGISTRY_TOPICS, settings.topic_prefix)
    with SchemaRegistry.from_settings(settings, ride_out_outages=False) as schemas:
        directory = Directory.open(
            kafka, schemas, prefix=settings.topic_prefix, keys=keys, timeout_s=settings.load_timeout_s
        )
        writer = (
            RegistryWriter(kafka, schemas, prefix=settings.topic_prefix, delivery_timeout_s=settings.delivery_timeout_s)
            if write
            else None
        )
        try:
            yield RegistrySession(settings, directory, keys, writer)
        finally:
            if writer is not None:
                writer.close()
            directory.close()


def _when(connection_or_workspace: Connection | Workspace) -> str:
    return connection_or_workspace.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _variables(values: list[str], problems: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            problems.append(f"--set {item!r}: expected NAME=VALUE")
            continue
        out[name.strip()] = value
    return out


def _workspace(session: RegistrySession, workspace_id: str) -> Workspace:
    from sfsync.workspaces import WorkspaceNotFoundError

    found = session.directory.workspace(workspace_id)
    if found is None:
        raise WorkspaceNotFoundError(workspace_id)
    return found


def _connection(session: RegistrySession, connection_id: str) -> Connection:
    from sfsync.workspaces import ConnectionNotFoundError

    found = session.directory.connection(connection_id)
    if found is None:
        raise ConnectionNotFoundError(connection_id)
    return found


def _confirmed(yes: bool, question: str) -> None:
    if not yes:
        typer.confirm(question, abort=True)


# ---------------------------------------------------------------------- workspaces
@workspaces_app.command("add")
@reported
def workspaces_add(
    workspace_id: Annotated[str, typer.Argument(help="The workspace_id its product events carry.")],
    connection: Annotated[
        str, typer.Option("--connection", "-c", help="The connection of its org (`sfsync connections add`).")
    ],
    mapping: Annotated[
        str | None, typer.Option(help="A mapping file of the library (default: the shipped default mapping).")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="A variable of its mapping: NAME=VALUE (repeatable).")
    ] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Add it paused: its events wait until `resume`.")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Replace the workspace when it exists.")] = False,
) -> None:
    """Add a workspace: the org connection its events are synced to, its mapping, its state."""
    from sfsync.errors import ConfigError
    from sfsync.time import utcnow
    from sfsync.workspaces import Workspace, WorkspaceState
    from sfsync.workspaces.records import id_problems

    problems = id_problems(workspace_id, "workspace id")
    variables = _variables(set_ or [], problems)
    if mapping is not None and not mapping.strip():
        problems.append("--mapping: empty (leave it out for the shipped default mapping)")
    if problems:
        raise ConfigError("workspaces add", problems)
    with registry_session(write=True) as session:
        if session.directory.connection(connection) is None:
            problems.append(f"--connection: no connection {connection!r} (`sfsync connections list` lists them)")
        if session.directory.workspace(workspace_id) is not None and not replace:
            problems.append(f"workspace {workspace_id!r} exists (--replace replaces it)")
        if problems:
            raise ConfigError("workspaces add", problems)
        state = WorkspaceState.PAUSED if paused else WorkspaceState.ACTIVE
        added = Workspace(workspace_id, connection, state, utcnow(), mapping=mapping, variables=variables)
        session.write().put_workspace(added)
    typer.echo(
        f"{'replaced' if replace else 'added'} workspace {workspace_id} (connection {connection}, "
        f"mapping {mapping or 'default'}, {state})"
    )


@workspaces_app.command("list")
@reported
def workspaces_list() -> None:
    """List the workspaces: state, connection, mapping, last change."""
    with registry_session() as session:
        workspaces = session.directory.workspaces()
    if not workspaces:
        typer.echo("no workspaces; add one with `sfsync workspaces add`")
        return
    typer.echo(f"{'WORKSPACE':<28} {'STATE':<13} {'CONNECTION':<24} {'MAPPING':<20} UPDATED")
    for w in workspaces:
        typer.echo(f"{w.workspace_id:<28} {w.state:<13} {w.connection_id:<24} {w.mapping or 'default':<20} {_when(w)}")
    typer.echo(f"{len(workspaces)} workspace(s)")


@workspaces_app.command("show")
@reported
def workspaces_show(workspace_id: Annotated[str, typer.Argument(help="The workspace's id.")]) -> None:
    """Show one workspace: its state and why, its connection, its mapping and variables."""
    with registry_session() as session:
        w = _workspace(session, workspace_id)
        connection = session.directory.connection(w.connection_id)
    reached = (
        f"{connection.flow}, {connection.login_url}, org {connection.org_id or 'not known yet'}"
        if connection is not None
        else "MISSING: no such connection"
    )
    variables = ", ".join(f"{k}={v}" for k, v in sorted(w.variables.items())) or "-"
    typer.echo(f"workspace   {w.workspace_id}")
    typer.echo(f"state       {w.state}" + (f" ({w.reason})" if w.reason else ""))
    typer.echo(f"connection  {w.connection_id} ({reached})")
    typer.echo(f"mapping     {w.mapping or 'default (shipped)'}")
    typer.echo(f"variables   {variables}")
    typer.echo(f"updated     {_when(w)}")


def _set_state(workspace_id: str, paused: bool, reason: str | None) -> None:
    import dataclasses

    from sfsync.time import utcnow
    from sfsync.workspaces import WorkspaceState

    state = WorkspaceState.PAUSED if paused else WorkspaceState.ACTIVE
    with registry_session(write=True) as session:
        current = _workspace(session, workspace_id)
        if current.state is state and current.reason == reason:
            typer.echo(f"workspace {workspace_id} is {state} already")
            return
        session.write().put_workspace(dataclasses.replace(current, state=state, reason=reason, updated_at=utcnow()))
    typer.echo(f"workspace {workspace_id}: {current.state} -> {state}" + (f" ({reason})" if reason else ""))


@workspaces_app.command("pause")
@reported
def workspaces_pause(
    workspace_id: Annotated[str, typer.Argument(help="The workspace's id.")],
    reason: Annotated[str | None, typer.Option(help="Why (shown by `list` and `show`).")] = None,
) -> None:
    """Pause a workspace: its events wait (nothing is lost) until `resume`."""
    _set_state(workspace_id, True, reason)


@workspaces_app.command("resume")
@reported
def workspaces_resume(workspace_id: Annotated[str, typer.Argument(help="The workspace's id.")]) -> None:
    """Resume a paused (or disconnected) workspace: its events are synced again."""
    _set_state(workspace_id, False, None)


@workspaces_app.command("remove")
@reported
def workspaces_remove(
    workspace_id: Annotated[str, typer.Argument(help="The workspace's id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a workspace from the registry (a tombstone); its connection stays."""
    with registry_session(write=True) as session:
        _workspace(session, workspace_id)
        _confirmed(yes, f"remove workspace {workspace_id}?")
        session.write().remove_workspace(workspace_id)
    typer.echo(f"removed workspace {workspace_id}")


# ---------------------------------------------------------------------- connections
def read_secret(source: str | None, field: str, *, required: bool, stdin_used: list[str]) -> SecretStr | None:
    """A secret from the file ``source`` (``-``: stdin, once per command), else a prompt that does not echo
    when it is ``required`` (None when not required and not given). Surrounding whitespace is dropped.

    Raises:
        ConfigError: the file cannot be read, stdin is named twice, or the secret is empty.
    """
    from pydantic import SecretStr

    from sfsync.errors import ConfigError

    option, label = SECRET_OPTIONS[field]
    if source is None:
        if not required:
            return None
        text = typer.prompt(label, hide_input=True, prompt_suffix=": ")
    elif source == "-":
        if stdin_used:
            raise ConfigError("connections add", [f"{option} -: stdin is already read for {stdin_used[0]}"])
        stdin_used.append(option)
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigError("connections add", [f"{option}: cannot read {source}: {reason}"]) from None
    if not text.strip():
        raise ConfigError("connections add", [f"{option}: the {label} is empty"])
    return SecretStr(text.strip())


@connections_app.command("add")
@reported
def connections_add(
    connection_id: Annotated[str, typer.Argument(help="The connection's id (workspaces name it).")],
    flow: Annotated[AddedFlow, typer.Option(help="How sfsync logs in to the org.", case_sensitive=False)],
    client_id: Annotated[str, typer.Option(help="The connected app's consumer key.")],
    login_url: Annotated[
        str,
        typer.Option(help="The login host: https://login.salesforce.com, https://test.salesforce.com, a My Domain."),
    ] = "https://login.salesforce.com",
    instance_url: Annotated[str | None, typer.Option(help="The org's instance URL, when known.")] = None,
    api_version: Annotated[str, typer.Option(help="The REST API version.")] = "62.0",
    username: Annotated[str | None, typer.Option(help="The integration user's username (jwt_bearer).")] = None,
    private_key_file: Annotated[
        str | None, typer.Option(help="jwt_bearer: the PEM private key's file ('-': stdin).", show_default=False)
    ] = None,
    client_secret_file: Annotated[
        str | None,
        typer.Option(
            help="client_credentials (optional for refresh_token): a file holding the consumer secret "
            "('-': stdin; client_credentials without it: a prompt).",
            show_default=False,
        ),
    ] = None,
    refresh_token_file: Annotated[
        str | None,
        typer.Option(
            help="refresh_token: a file holding the refresh token ('-': stdin; without it: a prompt).",
            show_default=False,
        ),
    ] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace the connection when it exists.")] = False,
) -> None:
    """Add a connection to an org; its secrets are read from files, stdin or a prompt (never from the
    command line) and sealed with the first key of SFSYNC_CONNECTION_KEYS."""
    import dataclasses

    from sfsync.errors import ConfigError
    from sfsync.salesforce.auth import JwtBearerAuth, provider_from_settings
    from sfsync.time import utcnow
    from sfsync.workspaces import SECRET_FIELDS, Connection, ConnectionFlow, salesforce_settings
    from sfsync.workspaces.records import id_problems

    chosen = ConnectionFlow(flow.value)
    takes = SECRET_FIELDS[chosen]
    sources = {
        "private_key": private_key_file,
        "client_secret": client_secret_file,
        "refresh_token": refresh_token_file,
    }
    problems = id_problems(connection_id, "connection id")
    problems += [
        f"{SECRET_OPTIONS[name][0]}: the {chosen} flow takes no {SECRET_OPTIONS[name][1]}"
        for name, source in sources.items()
        if source is not None and name not in takes.all
    ]
    if chosen is ConnectionFlow.JWT_BEARER and not username:
        problems.append("--username: the jwt_bearer flow needs the integration user's username")
    if chosen is ConnectionFlow.JWT_BEARER and private_key_file is None:
        problems.append("--private-key-file: the jwt_bearer flow needs the private key's file ('-': stdin)")
    if problems:
        raise ConfigError("connections add", problems)
    with registry_session(write=True, need_keys=True) as session:
        keys = session.sealing_keys()
        if session.directory.connection(connection_id) is not None and not replace:
            raise ConfigError("connections add", [f"connection {connection_id!r} exists (--replace replaces it)"])
        stdin_used: list[str] = []
        secrets = {
            name: value
            for name in takes.all
            if (value := read_secret(sources[name], name, required=name in takes.required, stdin_used=stdin_used))
        }
        draft = Connection(
            connection_id,
            login_url=login_url,
            api_version=api_version,
            flow=chosen,
            client_id=client_id,
            secrets=keys.seal(connection_id, secrets),
            updated_at=utcnow(),
            instance_url=instance_url,
            username=username,
        )
        settings = salesforce_settings(draft, secrets)  # refuses what cannot log in (URLs, version...)
        auth = provider_from_settings(settings)
        if isinstance(auth, JwtBearerAuth):
            auth.assertion()  # refuses a key that is not an RSA PEM key, before it is stored
        normalized = dataclasses.replace(
            draft, login_url=settings.login_url, api_version=settings.api_version, instance_url=settings.instance_url
        )
        session.write().put_connection(normalized)
    typer.echo(
        f"{'replaced' if replace else 'added'} connection {connection_id} ({chosen}, {settings.login_url}; "
        f"secrets sealed with key {keys.sealing_key_id!r}); try it: sfsync connections test {connection_id}"
    )


def _secrets_shown(connection: Connection, keys: ConnectionKeys | None) -> str:
    """A connection's secret fields as set/unset (opened to tell, never shown)."""
    from sfsync.workspaces import SECRET_FIELDS, SealError

    if keys is None:
        return f"sealed with key {connection.secrets.key_id!r} (SFSYNC_CONNECTION_KEYS not set: not opened)"
    try:
        opened = keys.open(connection.connection_id, connection.secrets)
    except SealError as exc:
        return f"DO NOT OPEN: {exc}"
    shown = ", ".join(f"{name} {'set' if name in opened else 'unset'}" for name in SECRET_FIELDS[connection.flow].all)
    return f"{shown} (sealed with key {connection.secrets.key_id!r})"


@connections_app.command("list")
@reported
def connections_list() -> None:
    """List the connections: flow, login URL, org, workspaces using each, secrets set or unset."""
    with registry_session() as session:
        connections = session.directory.connections()
        using = {c.connection_id: len(session.directory.workspaces_of(c.connection_id)) for c in connections}
        keys = session.keys
    if not connections:
        typer.echo("no connections; add one with `sfsync connections add`")
        return
    typer.echo(f"{'CONNECTION':<24} {'FLOW':<19} {'LOGIN URL':<36} {'ORG':<19} {'WORKSPACES':<10} SECRETS")
    for c in connections:
        typer.echo(
            f"{c.connection_id:<24} {c.flow:<19} {c.login_url:<36} {c.org_id or '-':<19} "
            f"{using[c.connection_id]:<10} {_secrets_shown(c, keys)}"
        )
    typer.echo(f"{len(connections)} connection(s)")


@connections_app.command("show")
@reported
def connections_show(connection_id: Annotated[str, typer.Argument(help="The connection's id.")]) -> None:
    """Show one connection (its secrets as set or unset, never their values) and the workspaces using it."""
    with registry_session() as session:
        c = _connection(session, connection_id)
        using = [w.workspace_id for w in session.directory.workspaces_of(connection_id)]
        keys = session.keys
    typer.echo(f"connection    {c.connection_id}")
    typer.echo(f"flow          {c.flow}")
    typer.echo(f"login url     {c.login_url}")
    typer.echo(f"instance url  {c.instance_url or '-'}")
    typer.echo(f"api version   {c.api_version}")
    typer.echo(f"client id     {c.client_id}")
    typer.echo(f"username      {c.username or '-'}")
    typer.echo(f"org           {c.org_id or 'not known yet (`sfsync connections test`)'}")
    typer.echo(f"secrets       {_secrets_shown(c, keys)}")
    typer.echo(f"workspaces    {', '.join(using) or '-'}")
    typer.echo(f"updated       {_when(c)}")


@connections_app.command("test")
@reported
def connections_test(connection_id: Annotated[str, typer.Argument(help="The connection's id.")]) -> None:
    """Log in to the connection's org and say which org and user it reaches (never the token). The org id
    is recorded on the connection the first time; a login to another org than recorded fails (exit 1)."""
    import dataclasses

    from sfsync.salesforce import SalesforceClient
    from sfsync.time import utcnow
    from sfsync.workspaces import RefreshTokenWriteBack

    with registry_session(write=True, need_keys=True) as session:
        keys = session.sealing_keys()
        settings = session.directory.salesforce_settings(connection_id)
        write_back = RefreshTokenWriteBack(
            connection_id, connections=session.directory, keys=keys, store=session.write()
        )

        async def login() -> tuple[str | None, str, str, str]:
            async with SalesforceClient(settings, on_refresh_token=write_back) as client:
                logged_in = await client.session()
                who = await client.identity()
            return logged_in.org_id, logged_in.instance_url, who.username, who.user_id

        org_id, instance_url, username, user_id = asyncio.run(login())
        org_id = org_id or "?"
        typer.echo(f"connection {connection_id}: logged in to org {org_id} as {username} (user {user_id})")
        typer.echo(f"instance    {instance_url}")
        if write_back.written is not None:
            typer.echo("the org rotated the refresh token: the new one is sealed and stored")
        current = write_back.written or _connection(session, connection_id)
        if current.org_id is not None and current.org_id[:15] != org_id[:15]:
            typer.echo(
                f"error: connection {connection_id} was made for org {current.org_id}, but its credentials log in "
                f"to org {org_id}",
                err=True,
            )
            raise typer.Exit(1)
        if current.org_id is None or current.instance_url != instance_url:
            session.write().put_connection(
                dataclasses.replace(current, org_id=org_id, instance_url=instance_url, updated_at=utcnow())
            )
            typer.echo(f"recorded org {org_id} and instance {instance_url} on connection {connection_id}")


@connections_app.command("remove")
@reported
def connections_remove(
    connection_id: Annotated[str, typer.Argument(help="The connection's id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a connection (a tombstone); refused while a workspace uses it."""
    from sfsync.errors import FatalError

    with registry_session(write=True) as session:
        _connection(session, connection_id)
        using = [w.workspace_id for w in session.directory.workspaces_of(connection_id)]
        if using:
            raise FatalError(
                f"connection {connection_id!r} is used by workspace(s) {', '.join(using)}: remove them, or add them "
                "again with another connection (--replace), first"
            )
        _confirmed(yes, f"remove connection {connection_id}?")
        session.write().remove_connection(connection_id)
    typer.echo(f"removed connection {connection_id}")


@connections_app.command("reencrypt")
@reported
def connections_reencrypt() -> None:
    """Seal every connection's secrets again with the first key of SFSYNC_CONNECTION_KEYS (key rotation: put
    the new key first everywhere, run this, then drop the old key). Exit 1 when one could not be opened."""
    import dataclasses

    from sfsync.time import utcnow
    from sfsync.workspaces import SealError

    with registry_session(write=True, need_keys=True) as session:
        keys = session.sealing_keys()
        done = already = 0
        failed: list[str] = []
        for connection in session.directory.connections():
            if connection.secrets.key_id == keys.sealing_key_id:
                already += 1
                continue
            try:
                secrets = keys.open(connection.connection_id, connection.secrets)
            except SealError as exc:
                failed.append(str(exc))
                continue
            resealed = keys.seal(connection.connection_id, secrets)
            session.write().put_connection(dataclasses.replace(connection, secrets=resealed, updated_at=utcnow()))
            done += 1
    for reason in failed:
        typer.echo(f"not re-encrypted: {reason}", err=True)
    typer.echo(
        f"re-encrypted {done} connection(s) with key {keys.sealing_key_id!r}; {already} already were; "
        f"{len(failed)} could not be opened"
    )
    if failed:
        raise typer.Exit(1)
    others = [k for k in keys.key_ids if k != keys.sealing_key_id]
    if others:
        typer.echo(f"no connection is sealed with {', '.join(map(repr, others))} any more: they may be dropped")


@connections_app.command("keygen")
@reported
def connections_keygen(
    key_id: Annotated[str, typer.Option("--id", help="The new key's id (named by the connections it seals).")] = "",
) -> None:
    """Print a new random key as an item of SFSYNC_CONNECTION_KEYS (key_id:base64 of 32 bytes); keep it
    as a secret."""
    from sfsync.time import utcnow
    from sfsync.workspaces import new_key

    chosen = key_id or f"k{utcnow().strftime('%Y%m%d%H%M%S')}"
    typer.echo(new_key(chosen).get_secret_value())
    typer.echo(
        "put it first in SFSYNC_CONNECTION_KEYS (comma separated, the old keys after it), then run "
        "`sfsync connections reencrypt`",
        err=True,
    )
