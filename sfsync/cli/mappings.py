"""``sfsync mappings``: print the mapping file's JSON Schema, show the default mapping, and validate
a mapping file against an org's describe (reporting every problem at once) with the same rules
every process runs at start (:func:`sfsync.mapping.validate_mappings`).

``validate`` checks what the processes run: the mapping setting (``SFSYNC_MAPPING_FILE``,
``SFSYNC_MAPPING_VARS``; :mod:`sfsync.mapping.settings`), with a FILE argument instead of its file and
each ``--set`` over its variables.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from sfsync.errors import ConfigError, SfsyncError
from sfsync.mapping import (
    DEFAULT_MAPPING_FILE,
    MappingError,
    MappingFile,
    gather_describes,
    json_schema,
    load_configured_mappings,
    load_mapping_settings,
    validate_mappings,
)

API_VERSION = "v59.0"

mappings_app = typer.Typer(
    help="Mapping files: JSON Schema, the default mapping, validation against an org.", no_args_is_help=True
)


def emulator_describes(org_file: Path | None = None) -> dict[str, dict[str, Any]]:
    """Object name -> describe body of an emulated org (None: the emulator's default org), built in-process."""
    from sfsync.emulator.describe import describe_sobject
    from sfsync.emulator.org import OrgFileError
    from sfsync.emulator.store import OrgStore

    try:
        store = OrgStore.from_org_file(org_file)
    except OrgFileError as exc:
        raise ConfigError(f"org file {org_file}", [str(exc)]) from None
    except OSError as exc:
        raise ConfigError(f"org file {org_file}", [f"cannot read: {exc.strerror or exc}"]) from None
    return {obj.name: describe_sobject(obj, API_VERSION) for obj in store.schema}


async def live_describes(mappings: MappingFile) -> dict[str, Any]:
    """Object name -> describe body, from the org the ``SALESFORCE_*`` settings point at.

    What the processes that talk to the org describe at start (:func:`~sfsync.mapping.gather_describes`):
    one call per object the enabled mappings write, and per parent their relationship paths read back
    (``Account.Name``); an object the org does not have is left out, so the check reports it as
    unknown like any other problem. A one-off command: nothing is retried (the client makes one
    attempt per call), a transient fault is reported (exit 2) for the person to run it again.
    """
    from sfsync.salesforce import SalesforceClient, load_settings
    from sfsync.salesforce.errors import MetadataError

    async with SalesforceClient(load_settings()) as client:

        async def describe(sobject: str) -> dict[str, Any] | None:
            try:
                return await client.describe_body(sobject)
            except MetadataError:
                return None

        return dict(await gather_describes(mappings, describe))


def _variables(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    problems = []
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            problems.append(f"--set {item!r}: expected NAME=VALUE")
            continue
        out[name.strip()] = value
    if problems:
        raise ConfigError("command line", problems)
    return out


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


@mappings_app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema of mapping files (for editors and CI linters)."""
    typer.echo(json.dumps(json_schema(), indent=2))


@mappings_app.command("default")
def default_command() -> None:
    """Print the shipped default mapping (a starting point for your own)."""
    typer.echo(DEFAULT_MAPPING_FILE.read_text(encoding="utf-8"), nl=False)


@mappings_app.command("validate")
def validate_command(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="Mapping file (default: SFSYNC_MAPPING_FILE, else the shipped default mapping).", show_default=False
        ),
    ] = None,
    org: Annotated[
        Path | None,
        typer.Option("--org", help="Emulator org file to validate against (default: the emulator's default org)."),
    ] = None,
    live: Annotated[
        bool, typer.Option("--live", help="Validate against the org the SALESFORCE_* settings point at.")
    ] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a variable (over SFSYNC_MAPPING_VARS): NAME=VALUE (repeatable)."),
    ] = None,
) -> None:
    """Check a mapping file against an org's describe; exit 1 listing every problem, 0 when valid."""
    if live and org is not None:
        raise _fail("error: give --org or --live, not both")
    try:
        settings = load_mapping_settings().with_overrides(file, _variables(set_ or []))
        mappings = load_configured_mappings(settings)
        describes = asyncio.run(live_describes(mappings)) if live else emulator_describes(org)
    except SfsyncError as exc:
        raise _fail(f"error: {exc}", 1 if isinstance(exc, MappingError) else 2) from None
    problems = validate_mappings(mappings, describes)  # the rules every process runs at start
    if not mappings.enabled():
        problems.append(f"{mappings.source}: no enabled mapping: nothing would be synced")
    enabled = ", ".join(m.name for m in mappings.enabled()) or "none"
    if problems:
        for problem in problems:
            typer.echo(problem, err=True)
        raise _fail(f"{len(problems)} problem(s) in {mappings.source}", 1)
    typer.echo(f"{mappings.source}: valid ({len(mappings.enabled())} enabled mapping(s): {enabled})")
