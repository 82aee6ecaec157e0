"""``sfsync dlq`` and ``sfsync errors``: look at and act on what the sink could not write.

Two Typer sub-apps, registered by :mod:`sfsync.cli.main`::

    sfsync dlq list [--limit N]
    sfsync dlq replay [--mapping M] [--code C] [--as-parked] [--yes]
    sfsync errors tail [--follow] [--category C] [--last N]

Connection settings come from the environment like every other command (``KAFKA_BOOTSTRAP_SERVERS``,
``SCHEMA_REGISTRY_URL``, ``SFSYNC_TOPIC_PREFIX``...). sfsync errors are one line and exit 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from sfsync import settings as cfg
from sfsync.cli.reporting import reported

if TYPE_CHECKING:
    from sfsync.ops.dlq import ParkedRecord
    from sfsync.serde.registry import SchemaRegistry


dlq_app = typer.Typer(help="The dead letter queue: records Salesforce refused, parked with their reason.")
errors_app = typer.Typer(help="The error log: connection, sync and rate-limit entries.", no_args_is_help=True)


def _kafka() -> tuple[dict[str, object], str]:
    conn = cfg.load(cfg.KafkaConnection, "kafka")
    return conn.kafka_client_config(), conn.topic_prefix


def _registry() -> SchemaRegistry:
    from sfsync.serde.registry import SchemaRegistry

    return SchemaRegistry.from_settings(cfg.load(cfg.RegistryConnection, "registry"), ride_out_outages=False)


def _short(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def parked_line(r: ParkedRecord) -> str:
    """One line of ``sfsync dlq list``: where the record sits, when and why it was parked, where it came from."""
    c = r.context
    when = c.parked_at.strftime("%Y-%m-%dT%H:%M:%SZ") if c.parked_at else "?"
    key = r.key.decode("utf-8", "replace") if r.key is not None else "-"
    state = "replayed" if r.replayed else "parked"
    return (
        f"{r.dlq_partition}:{r.dlq_offset:<6} {when} {state:<8} {c.category:<10} {c.code:<28} "
        f"mapping={c.mapping or '-'} field={c.field or '-'} key={key} "
        f"from={c.topic}[{c.partition}]@{c.offset}{f' planned_from={c.source}' if c.source else ''} "
        f"{_short(c.message, 100)}"
    )


@dlq_app.command("list")
@reported
def dlq_list(
    limit: Annotated[int, typer.Option(min=1, help="Show the N most recently parked records.")] = 20,
) -> None:
    """Show parked records: where they came from, why they were parked, whether they were replayed."""
    from sfsync.ops.dlq import DeadLetterQueue

    kafka, prefix = _kafka()
    records = DeadLetterQueue(kafka, prefix=prefix).list_parked(last=limit)
    if not records:
        typer.echo("the DLQ is empty")
        return
    for r in records:
        typer.echo(parked_line(r))
    typer.echo(f"{len(records)} record(s); replay with `sfsync dlq replay [--mapping M] [--code C]`")


@dlq_app.command("replay")
@reported
def dlq_replay(
    mapping: Annotated[str | None, typer.Option(help="Only records parked by this mapping.")] = None,
    code: Annotated[str | None, typer.Option(help="Only records with this error code.")] = None,
    as_parked: Annotated[
        bool,
        typer.Option(
            "--as-parked",
            help="Send the parked writes themselves (the org was fixed), not their source events "
            "(the mapping was fixed: the processor plans them again).",
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Send parked records (not replayed yet) back: by default a parked write's source product event
    is re-published, so the processor plans it again with the current mapping; records parked by the
    processor go back to their topic byte for byte."""
    from sfsync.ops.dlq import DeadLetterQueue, ReplayFilter, ReplayTarget

    kafka, prefix = _kafka()
    dlq = DeadLetterQueue(kafka, prefix=prefix)
    where = ReplayFilter(mapping=mapping, code=code)
    target = ReplayTarget.AS_PARKED if as_parked else ReplayTarget.SOURCE
    pending = dlq.replay(where, target=target, dry_run=True)
    if not pending.settled:
        typer.echo("nothing to replay")
        return
    what = f"{pending.settled} parked record(s)"
    if pending.republished:
        what += (
            f" ({pending.republished} source event(s) to re-publish, {pending.sent - pending.republished} as parked)"
        )
    if not yes:
        typer.confirm(f"replay {what}?", abort=True)
    report = dlq.replay(where, target=target)
    dlq.close()
    for missing in report.missing:
        typer.echo(f"not replayed: source event {missing}", err=True)
    typer.echo(
        f"replayed {report.settled} record(s): sent {report.sent}, of which {report.republished} source event(s) "
        "re-published"
    )
    if report.missing:
        typer.echo(
            f"{len(report.missing)} source event(s) could not be read; their parked writes stay in the DLQ "
            "(`sfsync dlq replay --as-parked` sends them as they are)",
            err=True,
        )
        raise typer.Exit(1)


@errors_app.command("tail")
@reported
def errors_tail(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Wait for new entries (Ctrl-C stops).")] = False,
    category: Annotated[
        str | None, typer.Option(help="Only CONNECTION, SYNC or RATE_LIMIT entries.", case_sensitive=False)
    ] = None,
    last: Annotated[int, typer.Option(min=0, help="Start this many entries before the end.")] = 20,
) -> None:
    """Print the newest error-log entries, one line each."""
    from sfsync.errors import Category, ConfigError
    from sfsync.ops.errorlog import tail

    wanted = None
    if category is not None:
        try:
            wanted = Category(category.upper())
        except ValueError:
            raise ConfigError("errors tail", [f"--category: expected one of {', '.join(Category)}"]) from None
    kafka, prefix = _kafka()
    with _registry() as registry:
        entries = tail(
            kafka,
            registry,
            prefix=prefix,
            last=last,
            follow=follow,
            category=wanted,
            on_unreadable=lambda where: typer.echo(f"skipped, not an error-log entry: {where}", err=True),
        )
        for entry in entries:
            typer.echo(entry.one_line())
